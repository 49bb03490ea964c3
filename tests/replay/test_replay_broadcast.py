"""A recorded BroadcastWorkflow run replays on today's code: a run under way survives a deploy.

The history is one run of the newsletter to six members, two a page at one member a second
(its pages, the timers between them, the end's forwarding and the close), recorded on the
time-skipping test server with the real worker and PostgreSQL. Re-record (under a new tag,
never over an old one) with ``python -m tests.replay.record_histories TAG --broadcast``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from worker.converter import DATA_CONVERTER
from worker.main import WORKFLOW_RUNNER
from workflows.broadcast import BroadcastWorkflow

HISTORIES = sorted((Path(__file__).parent / "broadcast_histories").glob("*/*.json"))


async def _replay(history: WorkflowHistory):
    replayer = Replayer(workflows=[BroadcastWorkflow], data_converter=DATA_CONVERTER,
                        workflow_runner=WORKFLOW_RUNNER)
    return await replayer.replay_workflow(history, raise_on_replay_failure=False)


def test_a_broadcast_run_is_recorded():
    assert HISTORIES, "tests/replay/broadcast_histories/<tag>/*.json"


@pytest.mark.parametrize("path", HISTORIES, ids=[f"{p.parent.name}/{p.stem}" for p in HISTORIES])
async def test_a_recorded_broadcast_run_replays_without_nondeterminism(path: Path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    result = await _replay(history)
    assert result.replay_failure is None, result.replay_failure


@pytest.mark.parametrize("path", HISTORIES, ids=[f"{p.parent.name}/{p.stem}" for p in HISTORIES])
async def test_a_run_started_otherwise_than_recorded_does_not_replay(path: Path):
    """The check bites: the same history, its input's page one member longer, would have
    ended its requests at the first page (fewer members than asked) where the run slept."""
    recorded = json.loads(path.read_text())
    payload = recorded["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
    started = json.loads(base64.b64decode(payload["data"]))
    payload["data"] = base64.b64encode(json.dumps({**started, "page_size": started["page_size"] + 1}).encode()).decode()
    result = await _replay(WorkflowHistory.from_json(path.stem, json.dumps(recorded)))
    assert result.replay_failure is not None
