"""Recorded member histories replay on today's code: running members survive a deploy."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker.main import WORKFLOW_RUNNER
from workflows.member import MemberWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*/*.json"))


def test_every_released_version_has_recorded_histories():
    versions = {p.parent.name for p in HISTORIES}
    assert "v1-first-release" in versions and len(versions) >= 2
    assert all(len(list((Path(__file__).parent / "histories" / v).glob("*.json"))) >= 3 for v in versions)


@pytest.mark.parametrize("path", HISTORIES, ids=[f"{p.parent.name}/{p.stem}" for p in HISTORIES])
async def test_a_recorded_history_replays_without_nondeterminism(path: Path):
    history = WorkflowHistory.from_json(f"member-{path.stem}", path.read_text())
    replayer = Replayer(
        workflows=[MemberWorkflow], data_converter=pydantic_data_converter, workflow_runner=WORKFLOW_RUNNER
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
