"""The twelve scenarios through the real MemberWorkflow on the time-skipping test server.

Each test asserts the local date and hour of the scenario's touches, as a shop's CRM
team would read them off the timeline, and that its exit cancels what is pending.
Times are Tokyo; every test starts at a local noon.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from workflows.policy import PolicyConfig
from tests.factories import days, event, order, registered, sample, shipped
from tests.workflows.helpers import (
    at_local,
    member_not_held_out,
    next_local_noon,
    running_worker,
    send,
    touches_in_db,
    touches_of,
)

# "At once" is after the grace period in which the rest of a burst folds in (SPEC §4).
GRACE = PolicyConfig().grace

CROSS_LINE = {"sku": "NYUSAN-30", "role": "cross", "quantity": 1, "days_supply": 30, "unit_price": 2980}


@pytest.fixture
async def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    return time_skipping_env


def ten(t0, n: int) -> str:
    """Day n after t0 at the 10:00 send hour."""
    return f"{t0.date() + timedelta(days=n)} 10:00"


def summary(touches: dict) -> dict[str, tuple[str, str]]:
    return {step: (t.outcome.value, at_local(t.due_at)) for step, t in touches.items()}


async def test_s01_sample_to_main(env, pool, task_queue):
    m = member_not_held_out("S01")
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        handle = await send(env.client, task_queue, registered(m, t0), sample(m, t0, "s1", days_supply=7))
        await env.sleep(days(1))
        await send(env.client, task_queue, shipped(m, t0 + days(1), "s1"))  # run-out: day 1 + 7
        await env.sleep(days(6.5))
        await send(env.client, task_queue, order(m, t0 + days(7.5), "o1"))  # converts the day before the last call
        await env.sleep(days(3))
        s01 = await touches_of(handle, "S01")
        assert summary(s01) == {
            "welcome_offer": ("sent", at_local(t0 + GRACE)),
            "sample_insert": ("sent", at_local(t0 + GRACE)),
            "run_out_offer": ("sent", ten(t0, 6)),
            "last_call": ("cancelled", ten(t0, 8)),
        }
        assert s01["sample_insert"].channel == "insert" and s01["welcome_offer"].channel == "line"
        assert s01["last_call"].reason == "exit:order_placed"


async def test_s02_trial_to_main(env, pool, task_queue):
    m = member_not_held_out("S02")
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        handle = await send(env.client, task_queue, registered(m, t0), order(m, t0, "t1", role="trial", days_supply=30))
        await env.sleep(days(29))
        await send(env.client, task_queue, order(m, t0 + days(29), "o1"))
        await env.sleep(days(3))
        assert summary(await touches_of(handle, "S02")) == {
            "welcome": ("sent", at_local(t0 + GRACE)),
            "bulk_offer": ("sent", ten(t0, 27)),  # run-out (day 30) − 3
            "last_call": ("cancelled", ten(t0, 30)),
        }


async def test_s03_f1_to_f2(env, pool, task_queue):
    m = member_not_held_out("S03")
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        handle = await send(env.client, task_queue, registered(m, t0), order(m, t0, "o1"))
        await env.sleep(days(2))
        await send(env.client, task_queue, shipped(m, t0 + days(2), "o1"))  # anchor day 2, run-out day 32
        await env.sleep(days(20))
        await send(env.client, task_queue, order(m, t0 + days(22), "o2"))
        await env.sleep(days(1))
        s03 = await touches_of(handle, "S03")
        assert summary(s03) == {
            "thanks_insert": ("sent", at_local(t0 + GRACE)),
            "testimonial": ("sent", ten(t0, 17)),  # anchor + half the supply
            "survey": ("cancelled", ten(t0, 27)),  # run-out − 5, cancelled by the 2nd purchase
        }
        assert s03["testimonial"].upsell is True  # no subscription: the upsell block is in


async def test_s04_f2_to_f3(env, pool, task_queue):
    m = member_not_held_out("S04")
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        handle = await send(env.client, task_queue, registered(m, t0), order(m, t0, "o1"))
        await env.sleep(days(30))
        await send(env.client, task_queue, order(m, t0 + days(30), "o2"))
        await env.sleep(days(1))
        await send(env.client, task_queue, shipped(m, t0 + days(31), "o2"))  # anchor day 31, run-out day 61
        await env.sleep(days(19))
        await send(env.client, task_queue, order(m, t0 + days(50), "o3"))
        await env.sleep(days(8))
        assert summary(await touches_of(handle, "S04")) == {
            "usage_tips": ("sent", ten(t0, 38)),
            "testimonial": ("sent", ten(t0, 46)),
            "reminder": ("cancelled", ten(t0, 56)),
        }


async def test_s05_onboarding_only_for_members_registered_within_180_days(env, pool, task_queue):
    m = member_not_held_out("S05")
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        handle = await send(env.client, task_queue, registered(m, t0), order(m, t0, "o1"))
        for n, at in ((2, 30), (3, 60)):
            await env.sleep(days(30))
            await send(env.client, task_queue, order(m, t0 + days(at), f"o{n}"))
        await send(env.client, task_queue, shipped(m, t0 + days(61), "o3"))  # anchor: shipment
        await env.sleep(days(62))
        assert summary(await touches_of(handle, "S05")) == {
            "member_benefits": ("sent", ten(t0, 91)),  # anchor + 1 × supply
            "survey": ("sent", ten(t0, 121)),  # anchor + 2 × supply
        }


async def test_s05_skips_members_registered_long_before_their_third_purchase(env, pool, task_queue):
    m = member_not_held_out("S05")
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        handle = await send(env.client, task_queue, registered(m, t0 - days(200)), order(m, t0 - days(60), "o1"),
                            order(m, t0 - days(30), "o2"), order(m, t0, "o3"))
        await env.sleep(days(65))
        assert await touches_of(handle, "S05") == {}


async def test_s06_subscription_upsell_on_day_28_and_its_exit(env, pool, task_queue):
    m = member_not_held_out("S06")
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        handle = await send(env.client, task_queue, registered(m, t0 - days(70)), order(m, t0 - days(60), "o1"),
                            order(m, t0 - days(30), "o2"), order(m, t0, "o3"))
        await env.sleep(days(29))
        await send(env.client, task_queue, order(m, t0 + days(29), "o4", days_supply=60))
        await env.sleep(days(1))
        sub = {"subscription_id": "sub1"}
        await send(env.client, task_queue,
                   event("subscription_started", m, t0 + days(30), sku="KOSO-30", interval_days=30, **sub))
        await env.sleep(days(60))
        s06 = [t for t in (await _timeline(handle)) if t.scenario == "S06" and t.occurrence in ("o3", "o4")]
        assert [(t.occurrence, t.outcome.value, at_local(t.due_at), t.reason) for t in s06] == [
            ("o3", "sent", ten(t0, 28), "route:line"),
            ("o4", "cancelled", ten(t0, 29 + 58), "exit:subscription_started"),
        ]


async def test_s07_resume_on_day_60_of_a_pause_online_and_offline(env, pool, task_queue):
    online, offline = member_not_held_out("S07"), member_not_held_out("S07")
    sub = {"subscription_id": "sub1"}
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        handles = {}
        for m, channel in ((online, "online"), (offline, "offline")):
            handles[m] = await send(
                env.client, task_queue, registered(m, t0, sales_channel=channel),
                event("subscription_started", m, t0, sku="KOSO-30", interval_days=30, **sub),
                event("subscription_paused", m, t0 + timedelta(hours=1), **sub))
        await env.sleep(days(61))
        assert summary(await touches_of(handles[online], "S07")) == {"resume_link": ("sent", ten(t0, 60))}
        offline_touches = await touches_of(handles[offline], "S07")
        assert summary(offline_touches) == {"resume_link": ("sent", ten(t0, 60)), "resume_call": ("sent", ten(t0, 60))}
        assert (offline_touches["resume_link"].channel, offline_touches["resume_call"].channel) == ("dm", "call_center")


async def test_s07_resuming_cancels_the_pending_reminder(env, pool, task_queue):
    m = member_not_held_out("S07")
    sub = {"subscription_id": "sub1"}
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        handle = await send(env.client, task_queue, registered(m, t0),
                            event("subscription_started", m, t0, sku="KOSO-30", interval_days=30, **sub),
                            event("subscription_paused", m, t0 + timedelta(hours=1), **sub))
        await env.sleep(days(20))
        await send(env.client, task_queue, event("subscription_resumed", m, t0 + days(20), **sub))
        await env.sleep(days(1))
        s07 = await touches_of(handle, "S07")
        assert summary(s07) == {"resume_link": ("cancelled", ten(t0, 60))}
        assert s07["resume_link"].reason == "exit:subscription_resumed"


async def test_s08_loyalty_30_days_after_shipment_once_per_180_days(env, pool, task_queue):
    m = member_not_held_out("S08")
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        handle = await send(env.client, task_queue, registered(m, t0 - days(120)), order(m, t0 - days(90), "o1"),
                            order(m, t0 - days(60), "o2"), order(m, t0 - days(30), "o3"), order(m, t0, "o4"))
        await env.sleep(days(2))
        await send(env.client, task_queue, shipped(m, t0 + days(2), "o4"))
        await env.sleep(days(28))
        await send(env.client, task_queue, order(m, t0 + days(30), "o5"))  # F5 within 180 days: no new entry
        await env.sleep(days(3))
        await send(env.client, task_queue, shipped(m, t0 + days(33), "o5"))
        await env.sleep(days(40))
        s08 = [t for t in await _timeline(handle) if t.scenario == "S08"]
        assert [(t.occurrence, t.outcome.value, at_local(t.due_at)) for t in s08] == [("o4", "sent", ten(t0, 32))]
        assert s08[0].variant in ("gift", "secret_sale")


async def test_s09_cross_sell_right_after_the_third_purchase_not_again_within_90_days(env, pool, task_queue):
    m = member_not_held_out("S09")
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        handle = await send(env.client, task_queue, registered(m, t0 - days(70)), order(m, t0 - days(60), "o1"),
                            order(m, t0 - days(30), "o2"))
        await env.sleep(timedelta(hours=1))
        await send(env.client, task_queue, order(m, t0 + timedelta(hours=1), "o3"))
        await env.sleep(days(30))
        await send(env.client, task_queue, order(m, t0 + days(30), "o4"))
        await env.sleep(days(1))
        s09 = [t for t in await _timeline(handle) if t.scenario == "S09"]
        assert [(t.occurrence, t.outcome.value, at_local(t.due_at)) for t in s09] == [
            ("o3", "sent", at_local(t0 + timedelta(hours=1) + GRACE))]


async def test_s10_cross_sell_revival_when_the_cross_product_stops(env, pool, task_queue):
    m = member_not_held_out("S10")
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        handle = await send(env.client, task_queue, registered(m, t0), order(m, t0, "o1", extra_lines=[CROSS_LINE]))
        await env.sleep(days(35))
        await send(env.client, task_queue, order(m, t0 + days(35), "o2"))  # main only: the cross product stopped
        await env.sleep(days(1))
        assert summary(await touches_of(handle, "S10")) == {"cross_follow_up": ("sent", at_local(t0 + days(35) + GRACE))}


async def test_s11_reactivation_on_day_90_and_120_and_its_exit(env, pool, task_queue):
    m = member_not_held_out("S11")
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        handle = await send(env.client, task_queue, registered(m, t0), order(m, t0, "o1"))
        await env.sleep(days(100))
        await send(env.client, task_queue, order(m, t0 + days(100), "o2"))
        await env.sleep(days(25))
        s11 = [t for t in await _timeline(handle) if t.scenario == "S11" and t.occurrence == "o1"]
        assert [(t.step, t.outcome.value, at_local(t.due_at), t.reason) for t in s11] == [
            ("comeback_offer", "sent", ten(t0, 90), "route:line"),
            ("new_product", "cancelled", ten(t0, 120), "exit:main_purchase"),
        ]


async def test_s12_churn_prevention_call_centre_at_once_follow_up_next_day(env, pool, task_queue):
    m = member_not_held_out("S12")
    sub = {"subscription_id": "sub1"}
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        handle = await send(env.client, task_queue, registered(m, t0),
                            event("subscription_started", m, t0, sku="KOSO-30", interval_days=30, **sub),
                            event("churn_signal", m, t0 + timedelta(hours=2), signal="cancel_page_viewed"))
        await env.sleep(days(10))
        # A second sign within 30 days: S12 already reached the member.
        await send(env.client, task_queue, event("subscription_interval_changed", m, t0 + days(10),
                                                 interval_days=60, **sub))
        await env.sleep(days(30))
        s12 = [t for t in await _timeline(handle) if t.scenario == "S12"]
        assert [(t.step, t.outcome.value, at_local(t.due_at), t.channel) for t in s12] == [
            ("call_center_task", "sent", at_local(t0 + timedelta(hours=2) + GRACE), "call_center"),
            ("follow_up_faq", "sent", ten(t0, 1), "line"),
        ]
        rows = [r for r in await touches_in_db(pool, m) if r["scenario"] == "S12"]
        assert [(r["step"], r["outcome"]) for r in rows] == [("call_center_task", "sent"), ("follow_up_faq", "sent")]


async def test_quiet_hours_hold_a_23h_line_touch_until_9h(env, pool, task_queue):
    m = member_not_held_out("S01")
    async with running_worker(env.client, pool, task_queue):
        noon = await next_local_noon(env)
        await env.sleep(timedelta(hours=11))
        late = noon + timedelta(hours=11)
        handle = await send(env.client, task_queue, registered(m, late), sample(m, late, "s1"))
        await env.sleep(days(1))
        s01 = await touches_of(handle, "S01")
        assert (s01["welcome_offer"].channel, at_local(s01["welcome_offer"].decided_at)) == (
            "line", f"{date.fromisoformat(str(noon.date())) + timedelta(days=1)} 09:00")
        assert at_local(s01["sample_insert"].decided_at) == at_local(late + GRACE)  # inserts know no quiet hours


async def _timeline(handle):
    from tests.workflows.helpers import timeline_of

    return (await timeline_of(handle)).touches
