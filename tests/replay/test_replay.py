"""Recorded member histories replay on today's code: running members survive a deploy.

A tag recorded while the shop changed its configuration keeps the versions in force
then (``_book.json``); its histories replay under them, and under them plus any
version applied since — the configuration of today does not change what a history did.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from worker.converter import DATA_CONVERTER
from temporalio.worker import Replayer

from tests.replay.record_histories import BOOK, load_book
from worker.main import WORKFLOW_RUNNER
from workflows import versions
from workflows.member import MemberWorkflow
from workflows.rules import PolicyConfig, Rules, ScenarioRules
from workflows.versions import Version, VersionBook

HISTORIES = sorted(p for p in (Path(__file__).parent / "histories").glob("*/*.json") if not p.name.startswith("_"))
CHANGED = sorted(p for p in HISTORIES if (p.parent / BOOK).exists() and "configuration" in p.stem)
# A configuration applied today: every scenario off but S12, another send time, no holdout.
TODAY = Rules(policy=PolicyConfig(send_hour=7, holdout_percent=0),
              scenarios={f"S{n:02d}": ScenarioRules(enabled=False) for n in range(1, 12)})


def test_every_released_version_has_recorded_histories():
    versions_ = {p.parent.name for p in HISTORIES}
    assert "v1-first-release" in versions_ and len(versions_) >= 2
    assert all(len([p for p in HISTORIES if p.parent.name == v]) >= 3 for v in versions_)
    assert CHANGED, "a tag recorded while the shop changed its configuration"


async def _replay(path: Path, book: VersionBook):
    history = WorkflowHistory.from_json(f"member-{path.stem}", path.read_text())
    replayer = Replayer(
        workflows=[MemberWorkflow], data_converter=DATA_CONVERTER, workflow_runner=WORKFLOW_RUNNER
    )
    # A Replayer runs the history under a task queue of its own, not the recorded one.
    versions.install(versions.ANY_QUEUE, book)
    try:
        return await replayer.replay_workflow(history, raise_on_replay_failure=False)
    finally:
        versions.uninstall(versions.ANY_QUEUE)


def _with_today(book: VersionBook, path: Path) -> VersionBook:
    """The book plus a version applied after the history's last event (its workflow tasks
    ran on the test server's skipped clock, which may be years ahead of the wall clock)."""
    history = WorkflowHistory.from_json("h", path.read_text())
    ended = history.events[-1].event_time.ToDatetime(tzinfo=timezone.utc)
    number = max(v.number for v in book.versions) + 1
    today = Version(number, max(ended, datetime.now(timezone.utc)), TODAY.model_copy(update={"version": number}))
    return VersionBook([*book.versions, today])


@pytest.mark.parametrize("path", HISTORIES, ids=[f"{p.parent.name}/{p.stem}" for p in HISTORIES])
async def test_a_recorded_history_replays_without_nondeterminism(path: Path):
    result = await _replay(path, load_book(path.parent / BOOK))
    assert result.replay_failure is None, result.replay_failure


@pytest.mark.parametrize("path", HISTORIES, ids=[f"{p.parent.name}/{p.stem}" for p in HISTORIES])
async def test_a_recorded_history_replays_whatever_the_configuration_is_today(path: Path):
    result = await _replay(path, _with_today(load_book(path.parent / BOOK), path))
    assert result.replay_failure is None, result.replay_failure


@pytest.mark.parametrize("path", CHANGED, ids=[f"{p.parent.name}/{p.stem}" for p in CHANGED])
async def test_the_versions_a_history_ran_under_are_what_it_replays_with(path: Path):
    """Without the versions in force when it ran, the history's decisions differ: the check bites."""
    result = await _replay(path, VersionBook())
    assert result.replay_failure is not None


async def test_a_history_altered_behind_its_back_does_not_replay(tmp_path: Path):
    """The check bites on what a broadcast's run asked of a member: its newsletter run
    altered to hold out no one would have been sent (deliver_touch) where the history
    recorded it held out (record_outcomes). The altered copy lives in tmp_path only."""
    recorded = Path(__file__).parent / "histories" / "v7-broadcasts" / "newsletter_holdout.json"
    history = json.loads(recorded.read_text())
    altered = 0
    for e in history["events"]:
        signal = e.get("workflowExecutionSignaledEventAttributes")
        payload = signal and signal["input"]["payloads"][0]
        event = payload and json.loads(base64.b64decode(payload["data"]))
        if event and event["type"] == "broadcast_requested" and event["holdout_percent"] and not altered:
            payload["data"] = base64.b64encode(json.dumps({**event, "holdout_percent": 0}).encode()).decode()
            altered += 1
    assert altered == 1
    copy = tmp_path / recorded.name
    copy.write_text(json.dumps(history))
    book = load_book(recorded.parent / BOOK)
    assert (await _replay(recorded, book)).replay_failure is None
    assert (await _replay(copy, book)).replay_failure is not None
