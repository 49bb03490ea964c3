"""The benchmarks (bench/) run, tiny, and report sane figures: nothing here is timed against a target."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from activities import db
from bench import cost, ingest, memory, preview, replay
from bench.actions import KINDS
from bench.common import start_time_skipping
from bench.personas import BY_NAME, PERSONAS


class FixtureStack:
    """The benchmarks' Stack on the test session's servers: a fresh database each, the shared dev server."""

    def __init__(self, server_url: str, dev: WorkflowEnvironment) -> None:
        self._server_url, self._dev = server_url, dev
        self._pools: list[asyncpg.Pool] = []

    async def database(self, label: str) -> asyncpg.Pool:
        from urllib.parse import urlsplit, urlunsplit

        name = f"bench_{label}_{uuid.uuid4().hex[:6]}"
        admin = await asyncpg.connect(self._server_url)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        pool = await db.create_pool(urlunsplit(urlsplit(self._server_url)._replace(path=f"/{name}")), max_size=4)
        await db.migrate(pool)
        self._pools.append(pool)
        return pool

    async def dev_server(self) -> WorkflowEnvironment:
        return self._dev

    async def time_skipping(self) -> WorkflowEnvironment:
        return await start_time_skipping()  # the benchmark shuts it down

    async def close(self) -> None:
        for pool in self._pools:
            await pool.close()


@pytest.fixture(scope="module")
async def stack(database_server_url: str, dev_server_env: WorkflowEnvironment):
    stack = FixtureStack(database_server_url, dev_server_env)
    yield stack
    await stack.close()


@pytest.fixture(scope="module")
async def costs(stack) -> cost.CostResult:
    return await cost.measure(stack, personas=[BY_NAME["f1_dropout"], BY_NAME["loyal_buyer"]])


def test_every_persona_builds_a_year_of_valid_events():
    from bench.personas import local_midnight_after
    from datetime import datetime, timezone

    t0 = local_midnight_after(datetime.now(timezone.utc))
    for persona in PERSONAS:
        events = persona.events(t0)
        assert events and events[0].type == "member_registered"
        assert all(t0 <= e.occurred_at < t0 + cost.YEAR for e in events)
        assert len({e.event_id for e in events}) == len(events)


async def test_cost_counts_actions_above_a_positive_floor(costs: cost.CostResult):
    for persona in costs.personas:
        actions = persona.actions
        assert set(KINDS) <= set(actions.by_kind)
        assert actions.by_kind["signals"] == persona.events  # one signal per event
        # Each continue-as-new is a start; the first run's start is its signal-with-start's one action.
        assert actions.by_kind["workflow started"] == actions.runs - 1 >= 0
        assert actions.touches_sent > 0 and actions.history_bytes > 0
        assert actions.total > persona.floor > 0
        assert sum(persona.above_floor.values()) == actions.total - persona.floor
    assert costs.by_name("loyal_buyer").actions.by_kind["timers"] > 0
    text = cost.report(costs)
    assert "loyal_buyer" in text and "floor" in text
    targets = costs.targets()
    assert [t.benchmark for t in targets] == ["cost"] * 4
    assert [t.met is None for t in targets] == [False, True, False, True]  # the total and the mean are judged


async def test_cost_prices_each_member_year_in_dollars(costs: cost.CostResult):
    for persona in costs.personas:
        dollars = persona.dollars
        assert dollars.actions == persona.actions.total
        assert dollars.actions_usd == pytest.approx(persona.actions.total * 50 / 1e6)
        # The open history's time-weighted size: more than nothing, less than its size at the year's end.
        assert 0 < dollars.mean_active_bytes < persona.actions.history_bytes
        assert dollars.retained_usd >= 0 and dollars.carried_bytes > 0
        assert dollars.total_usd == pytest.approx(dollars.actions_usd + dollars.active_usd + dollars.retained_usd)
    mean = costs.dollars.per_member()
    assert mean.actions == round(sum(p.actions.total for p in costs.personas) / len(costs.personas))
    text = cost.report(costs)
    assert "Dollars per member-year" in text and "mean of 2" in text


def test_active_storage_integrates_each_event_until_its_run_closes_and_closed_runs_are_retained():
    from datetime import datetime, timedelta, timezone

    from temporalio.api.enums.v1 import EventType
    from temporalio.api.history.v1 import History, HistoryEvent
    from temporalio.client import WorkflowHistory

    from bench import pricing

    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def event(event_id: int, kind: EventType.ValueType, hours: float) -> HistoryEvent:
        e = HistoryEvent(event_id=event_id, event_type=kind)
        e.event_time.FromDatetime((t0 + timedelta(hours=hours)).replace(tzinfo=None))
        return e

    started, signaled = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    first = [event(1, started, 0), event(2, signaled, 4),
             event(3, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW, 10)]
    second = [event(1, started, 10), event(2, signaled, 15)]
    size = lambda e: History(events=[e]).ByteSize()  # noqa: E731
    dollars = pricing.member_year([WorkflowHistory("w", first), WorkflowHistory("w", second)], actions=5,
                                  year_end=t0 + timedelta(hours=20))
    byte_hours = size(first[0]) * 10 + size(first[1]) * 6 + size(second[0]) * 10 + size(second[1]) * 5
    assert dollars.active_gb_hours == pytest.approx(byte_hours / 1e9)
    retained = sum(map(size, first)) * 30 * 24  # the closed run, for the 30-day retention period
    assert dollars.retained_gb_hours == pytest.approx(retained / 1e9)
    assert dollars.carried_bytes == sum(map(size, second))  # the open run, into the next year
    assert dollars.actions_usd == pytest.approx(5 * 50e-6)


async def test_replay_times_a_member_year_and_a_trivial_workflow(stack, costs: cost.CostResult):
    result = await replay.measure(stack, member_histories=costs.by_name("loyal_buyer").histories, runs=2)
    assert result.member_ms > 0 and result.trivial_ms > 0
    assert result.member_tasks > result.trivial_tasks >= 1
    assert "median" in replay.report(result)


async def test_ingest_measures_the_engine_and_the_baseline(stack):
    result = await ingest.measure(stack, members=3, rounds=1)
    for phase in (result.engine, result.baseline, result.http):
        assert phase.events == 3 * 8 and phase.members == 3
        assert phase.events_per_second > 0 and phase.accepted_per_second > 0
    engine, baseline = result.engine.per_event, result.baseline.per_event
    assert engine["activities"] + engine["local activity markers"] > 0  # records and sends
    assert baseline["activities"] == baseline["local activity markers"] == 0
    assert result.ratio > 0 and result.http_ratio > 0 and "processed ev/s" in ingest.report(result)
    http, direct = result.targets()  # the figure through the HTTP ingress is the judged one
    assert http.figure.startswith("HTTP") and http.met is not None and direct.met is None


async def test_memory_reads_the_worker_rss_with_members_cached(stack):
    result = await memory.measure(stack, sizes=(4, 8), warm_up=2, budget=120, noop_instances=3)
    assert result.baseline_rss > 0
    assert result.noop is not None and result.noop.rss > 0 and result.noop.instances == 3
    assert [p.members for p in result.points] == [4, 8], result.notes
    for point in result.points:
        assert point.rss > 0
        assert point.cache_size in (None, point.members)
    assert "KiB/member" in memory.report(result)
    kib, gc = result.targets()
    assert kib.met is not None and gc.met is None  # the GC pause is judged at 10,000 cached only


async def test_preview_times_the_cli_and_a_bare_server(stack):
    result = await preview.measure(stack, runs=1)
    assert result.preview > 0 and result.baseline > 0 and result.touches > 0
    assert "preview" in preview.report(result)


def test_state_size_measures_each_persona_against_its_first_year():
    from bench import state_size

    result = state_size.measure_sync(quick=True)
    assert {(p, y) for p, y, *_ in result.rows} == {(p, y) for p in ("monthly_buyer", "subscriber") for y in (1, 5)}
    assert all(size > 1000 for _, _, size, _, _ in result.rows)
    assert [t.benchmark for t in result.targets()] == ["state", "state"]
