"""Running the real MemberWorkflow with the real activities for a test."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import datetime
from typing import AsyncIterator

import asyncpg
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.worker import Worker

from starter.ingress.forwarder import Forwarder
from starter.ingress.log import accept
from worker.main import build_worker
from worker.settings import Settings
from workflows.events import MemberEvent
from workflows.member import MemberWorkflow, workflow_id
from workflows.messages import MemberStateView, Timeline
from workflows.touches import TouchRecord


# Workflows a test started; terminated when its worker stops, so that they do not
# hold up the time-skipping server's clock for the tests after it.
_started: set[str] = set()
# The running worker's database, where `send` stores contacts as the ingress does.
_pool: list[asyncpg.Pool] = []


@asynccontextmanager
async def running_worker(client: Client, pool: asyncpg.Pool, task_queue: str) -> AsyncIterator[Worker]:
    worker = build_worker(client, pool, Settings(task_queue=task_queue, max_cached_workflows=100))
    _pool.append(pool)
    try:
        async with worker:
            yield worker
    finally:
        _pool.remove(pool)
        for started in list(_started):
            try:
                await client.get_workflow_handle(started).terminate("test finished")
            except RPCError:
                pass  # already closed
        _started.clear()


async def send(client: Client, task_queue: str, *events: MemberEvent) -> WorkflowHandle:
    """Through the ingress: accepted into the event log (contacts stored in PostgreSQL), then
    forwarded to the members' workflows, one signal-with-start per event, in order."""
    pool = _pool[-1]
    await accept(pool, list(enumerate(events, start=1)))
    await Forwarder(pool, client, task_queue).forward_pending(sorted({e.member_id for e in events}))
    _started.update(workflow_id(e.member_id) for e in events)
    return client.get_workflow_handle_for(MemberWorkflow.run, workflow_id(events[0].member_id))


async def state_of(handle: WorkflowHandle) -> MemberStateView:
    return await handle.query(MemberWorkflow.state)


async def timeline_of(handle: WorkflowHandle) -> Timeline:
    return await handle.query(MemberWorkflow.timeline)


async def touches_in_db(pool: asyncpg.Pool, member_id: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT scenario, step, occurrence, channel, outcome, reason, planned_at, delivered_at"
        " FROM touches WHERE member_id = $1 ORDER BY planned_at, step", member_id
    )


def local(moment: datetime) -> tuple[str, int, int]:
    """(date, hour, minute) in Tokyo: what the shop's CRM team reads off a touch."""
    from tests.factories import JST

    at = moment.astimezone(JST)
    return at.date().isoformat(), at.hour, at.minute


def member_not_held_out(*scenarios: str) -> str:
    """A fresh member id outside the 10 % holdout of these scenarios, so the test sees real sends."""
    import uuid

    from workflows.policy import PolicyConfig, in_holdout

    while True:
        member_id = f"m-{uuid.uuid4().hex[:10]}"
        if not any(in_holdout(member_id, s, PolicyConfig()) for s in scenarios):
            return member_id


async def next_local_noon(env) -> datetime:
    """Let the test server's clock run to the next 12:00 in Tokyo, so 'at once' is never in quiet hours."""
    from datetime import time as clock, timedelta

    from tests.factories import JST

    now = (await env.get_current_time()).astimezone(JST)
    noon = datetime.combine(now.date(), clock(12), tzinfo=JST)
    if noon <= now:
        noon += timedelta(days=1)
    await env.sleep(noon - now)
    return noon


async def touches_of(handle: WorkflowHandle, scenario: str) -> dict[str, TouchRecord]:
    """The scenario's touches by step (the newest outcome per step name)."""
    return {t.step: t for t in (await timeline_of(handle)).touches if t.scenario == scenario}


def at_local(moment: datetime) -> str:
    """'YYYY-MM-DD HH:MM' in Tokyo."""
    from tests.factories import JST

    return moment.astimezone(JST).strftime("%Y-%m-%d %H:%M")


async def eventually(check, timeout: float = 15.0):
    """Await ``check()`` until it stops raising AssertionError, at most ``timeout`` seconds."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)
