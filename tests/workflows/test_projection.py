"""The event log (written by the ingress) and the members read model (written by real member
workflows); and the rebuild."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.projection import SNAPSHOT_COLUMNS
from starter.rebuild import rebuild
from tests.factories import days, event, order, registered, sample, shipped
from tests.workflows.helpers import next_local_noon, running_worker, send, state_of


@pytest.fixture
async def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    return time_skipping_env


async def members_rows(pool, ids):
    rows = await pool.fetch(f"SELECT member_id, {', '.join(SNAPSHOT_COLUMNS)} FROM members"
                            " WHERE member_id = ANY($1::text[]) ORDER BY member_id", ids)
    return [dict(r) for r in rows]


async def test_the_ingress_logs_each_event_once_and_workflows_a_snapshot_the_rebuild_reproduces(env, pool, task_queue):
    sub = {"subscription_id": "sub1"}
    ids = [f"proj-{n}-{task_queue}" for n in ("sample", "normal", "paused")]
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        sampler, normal, paused = ids
        first = order(normal, t0, "o1")
        handles = [
            await send(env.client, task_queue, registered(sampler, t0), sample(sampler, t0, "s1"),
                       order(sampler, t0 + timedelta(hours=1), "o1")),
            await send(env.client, task_queue, registered(normal, t0), first, shipped(normal, t0, "o1"),
                       first),  # a duplicate of the first order
            await send(env.client, task_queue, registered(paused, t0),
                       event("subscription_started", paused, t0, sku="KOSO-30", interval_days=30, **sub),
                       order(paused, t0, "o1", subscription_id="sub1"),
                       event("subscription_paused", paused, t0 + days(1), **sub)),
        ]
        await env.sleep(days(35))
        await send(env.client, task_queue, order(normal, t0 + days(35), "o2"))
        await env.sleep(days(65))  # day 100: the sample converter and the subscriber are 90+ days past their order

        logged = await pool.fetch("SELECT member_id, seq, type FROM member_events WHERE member_id = $1 ORDER BY seq",
                                  normal)
        assert [r["type"] for r in logged] == ["member_registered", "order_placed", "order_shipped", "order_placed"]
        assert [r["seq"] for r in logged] == [1, 2, 3, 4]  # the duplicate was recognised at the door

        written = await members_rows(pool, ids)
        views = {h.id.removeprefix("member-"): await state_of(h) for h in handles}
        for row in written:
            view = views[row["member_id"]]
            assert (row["stage"], row["purchase_count"], row["subscription_status"]) == (
                view.stage.value, view.purchase_count, view.subscription_status.value)
            assert row["next_touch_at"] == view.next_touch_at
        assert [(r["member_id"], r["stage"]) for r in written] == [
            (normal, "f2"), (paused, "dormant"), (sampler, "dormant")]

        result = await rebuild(pool, now=await env.get_current_time())
        assert result.members >= 3
        assert await members_rows(pool, ids) == written


async def test_an_older_snapshot_never_overwrites_a_newer_one(pool, member_id):
    from activities.projection import project
    from workflows.projection import MemberSnapshot, ProjectionRequest

    def request(version: int, stage: str) -> ProjectionRequest:
        snap = MemberSnapshot(member_id=member_id, stage=stage, purchase_count=version, subscription_status="none",
                              sales_channel="online", registered_at=None, first_purchase_at=None,
                              last_purchase_at=None, next_touch_at=None, revenue=0)
        return ProjectionRequest(member_id=member_id, version=version, snapshot=snap)

    async with pool.acquire() as conn:
        assert (await project(conn, request(2, "f2"))).snapshot_written
        assert not (await project(conn, request(1, "f1"))).snapshot_written  # late retry of an older write
        assert not (await project(conn, request(2, "f2"))).snapshot_written  # the same write again
    assert await pool.fetchval("SELECT stage FROM members WHERE member_id = $1", member_id) == "f2"
