"""The four lifecycle timers through the real workflow on the time-skipping test server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.factories import JST, days, event, order, registered, sample
from tests.workflows.helpers import local, member_not_held_out, running_worker, send, state_of, timeline_of, touches_in_db
from workflows.lifecycle import Stage
from workflows.search import LIFECYCLE_STAGE


@pytest.fixture
async def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    return time_skipping_env


async def now_jst(env: WorkflowEnvironment):
    return (await env.get_current_time()).astimezone(JST)


async def test_a_normal_30_day_purchase_fires_its_upsell_on_day_28_and_nothing_earlier(env, pool, task_queue):
    # The 3rd purchase: S03/S04, which carry the upsell for the 1st and 2nd, do not cover it.
    member_id = member_not_held_out("S06")
    async with running_worker(env.client, pool, task_queue):
        t0 = await now_jst(env)
        handle = await send(env.client, task_queue, registered(member_id, t0 - days(70)),
                            order(member_id, t0 - days(60), "o1"), order(member_id, t0 - days(30), "o2"),
                            order(member_id, t0, "o3"))
        await env.sleep(days(27))
        assert [t for t in (await timeline_of(handle)).touches if t.scenario == "S06" and t.occurrence == "o3"] == []
        view = await state_of(handle)
        assert [local(t.due_at) for t in view.planned if t.scenario == "S06"] == [
            local((t0 + days(28)).replace(hour=10, minute=0))]
        await env.sleep(days(2))
        s06 = [t for t in (await timeline_of(handle)).touches if t.scenario == "S06" and t.occurrence == "o3"]
        assert [(t.step, t.outcome, t.channel) for t in s06] == [("upsell", "sent", "line")]
        assert local(s06[0].due_at) == ((t0.date() + timedelta(days=28)).isoformat(), 10, 0)
        rows = [r for r in await touches_in_db(pool, member_id) if (r["scenario"], r["occurrence"]) == ("S06", "o3")]
        assert [(r["outcome"], r["channel"]) for r in rows] == [("sent", "line")]
        assert rows[0]["delivered_at"] is not None


async def test_a_sample_runs_out_and_gets_its_offer_two_days_before_and_a_last_call(env, pool, task_queue):
    member_id = member_not_held_out("S01")
    async with running_worker(env.client, pool, task_queue):
        t0 = await now_jst(env)
        handle = await send(env.client, task_queue, registered(member_id, t0),
                            sample(member_id, t0, "s1", days_supply=7))
        await env.sleep(days(8))
        touches = {t.step: t for t in (await timeline_of(handle)).touches if t.scenario == "S01"}
        assert touches["welcome_offer"].outcome == "sent"
        assert touches["sample_insert"].channel == "insert"
        assert local(touches["run_out_offer"].due_at) == ((t0.date() + timedelta(days=5)).isoformat(), 10, 0)
        assert local(touches["last_call"].due_at) == ((t0.date() + timedelta(days=7)).isoformat(), 10, 0)
        assert (await state_of(handle)).stage is Stage.SAMPLE


async def test_ordering_after_a_sample_cancels_its_pending_steps(env, pool, task_queue):
    member_id = member_not_held_out("S01")
    async with running_worker(env.client, pool, task_queue):
        t0 = await now_jst(env)
        handle = await send(env.client, task_queue, registered(member_id, t0),
                            sample(member_id, t0, "s1", days_supply=7))
        await env.sleep(days(1))
        await send(env.client, task_queue, order(member_id, t0 + days(1), "o1"))
        await env.sleep(days(8))
        s01 = {t.step: (t.outcome, t.reason) for t in (await timeline_of(handle)).touches if t.scenario == "S01"}
        assert s01["welcome_offer"][0] == "sent"
        assert s01["run_out_offer"] == ("cancelled", "exit:order_placed")
        assert s01["last_call"] == ("cancelled", "exit:order_placed")


async def test_day_60_of_a_pause_sends_the_resume_link(env, pool, task_queue):
    member_id = member_not_held_out("S07")
    async with running_worker(env.client, pool, task_queue):
        t0 = await now_jst(env)
        sub = {"subscription_id": "sub1"}
        handle = await send(
            env.client, task_queue, registered(member_id, t0),
            event("subscription_started", member_id, t0, sku="KOSO-30", interval_days=30, **sub),
            event("subscription_paused", member_id, t0 + timedelta(minutes=1), **sub),
        )
        await env.sleep(days(59))
        assert not [t for t in (await timeline_of(handle)).touches if t.scenario == "S07"]
        await env.sleep(days(2))
        s07 = [t for t in (await timeline_of(handle)).touches if t.scenario == "S07"]
        assert [(t.step, t.outcome) for t in s07] == [("resume_link", "sent")]
        assert local(s07[0].due_at) == ((t0.date() + timedelta(days=60)).isoformat(), 10, 0)


async def test_90_days_without_a_purchase_makes_the_member_dormant(env, pool, task_queue):
    member_id = member_not_held_out("S11")
    async with running_worker(env.client, pool, task_queue):
        t0 = await now_jst(env)
        handle = await send(env.client, task_queue, registered(member_id, t0), order(member_id, t0, "o1"))
        await env.sleep(days(89))
        assert (await state_of(handle)).stage is Stage.F1
        await env.sleep(days(1.5))
        assert (await state_of(handle)).stage is Stage.DORMANT
        described = await handle.describe()
        assert described.typed_search_attributes.get(LIFECYCLE_STAGE) == "dormant"
        s11 = [t for t in (await timeline_of(handle)).touches if t.scenario == "S11"]
        assert [(t.step, t.outcome) for t in s11] == [("comeback_offer", "sent")]
        assert local(s11[0].due_at) == ((t0.date() + timedelta(days=90)).isoformat(), 10, 0)


async def test_an_event_during_the_sleep_replans_the_wait(env, pool, member_id, task_queue):
    async with running_worker(env.client, pool, task_queue):
        t0 = await now_jst(env)
        handle = await send(env.client, task_queue, registered(member_id, t0), order(member_id, t0, "o1"))
        await env.sleep(days(10))
        # A 60-day supply bought on day 10 moves the upsell to day 10 + 58 and cancels day 28's.
        await send(env.client, task_queue, order(member_id, t0 + days(10), "o2", days_supply=60))
        await env.sleep(days(1))
        view = await state_of(handle)
        assert view.purchase_count == 2
        assert [local(t.due_at) for t in view.planned if t.scenario == "S06"] == [
            ((t0.date() + timedelta(days=68)).isoformat(), 10, 0)]
        s06 = [(t.occurrence, t.outcome, t.reason) for t in (await timeline_of(handle)).touches if t.scenario == "S06"]
        assert s06 == [("o1", "cancelled", "replaced:newer_purchase")]
