"""Continue-as-new on history growth (issue 14): a member's open history stays small all year,
and continuing changes nothing a member receives.

A run continues once it has grown by HISTORY_GROWTH bytes, or from MIN_GROWTH when a long
sleep lies ahead (workflows.member).

A year of the cost benchmark's loyal buyer (25 events, about 20 touches sent) through the
ingress path, on the time-skipping server with the production activities on PostgreSQL: once
with both thresholds out of reach (one run all year), once as shipped. The same member id both
times (holdout buckets and variants hash it), each in a database of its own.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History
from temporalio.testing import WorkflowEnvironment

from activities import db
from bench.cost import run_personas
from bench.personas import PERSONAS
from tests.conftest import new_database
from tests.workflows.helpers import touches_in_db
from workflows import member

LOYAL = next(p for p in PERSONAS if p.name == "loyal_buyer")
# One workflow task's own events (a wake-up with a send, a record and a timer) may pass the budget.
ONE_TASK = 4_000


@pytest.fixture
async def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    return time_skipping_env


@contextlib.asynccontextmanager
async def _own_database(server_url: str):
    pool = await db.create_pool(await new_database(server_url, "goldenroute_growth"))
    try:
        yield pool
    finally:
        await pool.close()


def _received(rows, t0: datetime) -> list[tuple]:
    """What the member was sent or spared, each at its offset from the first event."""
    return [(r["scenario"], r["step"], r["occurrence"], r["channel"], r["outcome"], r["reason"], r["planned_at"] - t0)
            for r in rows]


async def test_a_year_in_several_short_runs_sends_what_one_long_run_sends(env, database_server_url, monkeypatch):
    suffix = "-growth"  # fixed: the same holdout buckets at every run of the test
    async with _own_database(database_server_url) as pool:
        monkeypatch.setattr(member, "HISTORY_GROWTH", 10**9)
        monkeypatch.setattr(member, "MIN_GROWTH", 10**9)
        monkeypatch.setattr(member, "NEW_RUN_BYTES", 10**9)  # nor to publish the search attributes
        ((_, whole, whole_events, whole_runs, _),) = await run_personas(env, pool, [LOYAL], member_suffix=suffix)
        monkeypatch.undo()
        whole_rows = await touches_in_db(pool, whole)
    async with _own_database(database_server_url) as pool:
        ((_, split, split_events, split_runs, _),) = await run_personas(env, pool, [LOYAL], member_suffix=suffix)
        split_rows = await touches_in_db(pool, split)

    assert len(whole_runs) == 1
    assert len(split_runs) >= 4, [len(h.events) for h in split_runs]
    for run in split_runs[:-1]:
        closing = run.events[-1]
        assert closing.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        grown = History(events=run.events[1:-1]).ByteSize()  # between the carried input and the one carried on
        assert grown <= member.HISTORY_GROWTH + ONE_TASK, (grown, len(run.events))
    biggest_split = max(History(events=h.events).ByteSize() for h in split_runs)
    assert biggest_split < History(events=whole_runs[0].events).ByteSize() / 3

    assert whole == split
    sent = _received(whole_rows, whole_events[0].occurred_at)
    assert len([t for t in sent if t[4] == "sent"]) >= 15
    assert _received(split_rows, split_events[0].occurred_at) == sent
