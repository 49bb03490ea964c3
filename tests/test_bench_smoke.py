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
        assert actions.by_kind["workflow started"] == actions.runs >= 1
        assert actions.touches_sent > 0 and actions.history_bytes > 0
        assert actions.total > persona.floor > 0
        assert sum(persona.above_floor.values()) == actions.total - persona.floor
    assert costs.by_name("loyal_buyer").actions.by_kind["timers"] > 0
    text = cost.report(costs)
    assert "loyal_buyer" in text and "floor" in text
    assert [t.benchmark for t in costs.targets()] == ["cost", "cost"]


async def test_replay_times_a_member_year_and_a_trivial_workflow(stack, costs: cost.CostResult):
    result = await replay.measure(stack, member_histories=costs.by_name("loyal_buyer").histories, runs=2)
    assert result.member_ms > 0 and result.trivial_ms > 0
    assert result.member_tasks > result.trivial_tasks >= 1
    assert "median" in replay.report(result)


async def test_ingest_measures_the_engine_and_the_baseline(stack):
    result = await ingest.measure(stack, members=3, rounds=1)
    for phase in (result.engine, result.baseline):
        assert phase.events == 3 * 8 and phase.members == 3
        assert phase.events_per_second > 0 and phase.accepted_per_second > 0
    assert result.engine.per_event["activities"] > 0 == result.baseline.per_event["activities"]
    assert result.ratio > 0 and "processed ev/s" in ingest.report(result)


async def test_memory_reads_the_worker_rss_with_members_cached(stack):
    result = await memory.measure(stack, sizes=(4, 8), warm_up=2, budget=120, noop_instances=3)
    assert result.baseline_rss > 0
    assert result.noop is not None and result.noop.rss > 0 and result.noop.instances == 3
    assert [p.members for p in result.points] == [4, 8], result.notes
    for point in result.points:
        assert point.rss > 0
        assert point.cache_size in (None, point.members)
    assert "KiB/member" in memory.report(result)


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
