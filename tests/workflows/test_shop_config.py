"""The shop's configuration through the real MemberWorkflow on the time-skipping server.

A member who goes through all twelve scenarios, under a configuration that differs
from the SPEC's defaults (11:30 send time, S06 switched off, S08 from the 3rd
purchase every 120 days, S11's second step on day 110), and a member whose shop
changes its configuration while the member is mid-journey.
"""

from __future__ import annotations

from datetime import datetime, time

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.factories import JST, days, event, order, registered, sample, shipped, subscription
from tests.workflows.helpers import next_local_noon, running_worker, send, touches_in_db
from workflows import versions
from workflows.rules import PolicyConfig, Rules, ScenarioRules, StepRules
from workflows.versions import EPOCH, Version, VersionBook

CROSS_LINE = {"sku": "NYUSAN-30", "role": "cross", "quantity": 1, "days_supply": 30, "unit_price": 2980}
AT_ONCE = {"welcome_offer", "sample_insert", "welcome", "thanks_insert", "cross_offer", "cross_follow_up",
           "call_center_task"}
SHOP = Rules(
    version=1,
    policy=PolicyConfig(send_hour=11, send_minute=30, holdout_percent=0, cap_touches=10),
    scenarios={
        "S06": ScenarioRules(enabled=False),
        "S08": ScenarioRules(from_purchase=3, every_days=120),
        "S11": ScenarioRules(steps={"new_product": StepRules(days=110)}),
    },
)


@pytest.fixture
async def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    return time_skipping_env


@pytest.fixture
def configured(task_queue: str):
    """Install a book for the test's task queue (what a worker does from PostgreSQL)."""
    installed: list[str] = []

    def install(book: VersionBook) -> None:
        versions.install(task_queue, book)
        installed.append(task_queue)

    yield install
    for queue in installed:
        versions.uninstall(queue)


def journey(m: str, t0: datetime) -> list[tuple[int, list]]:
    """(day, events): a sample, a trial, six main purchases, a cross line, a pause, a churn sign."""
    at = lambda d: t0 + days(d)  # noqa: E731
    return [
        (0, [registered(m, at(0)), sample(m, at(0), "s1", days_supply=7)]),
        (8, [order(m, at(8), "t1", role="trial")]),
        (20, [order(m, at(20), "o1")]),
        (50, [order(m, at(50), "o2")]),
        (80, [order(m, at(80), "o3")]),
        (81, [shipped(m, at(81), "o3")]),
        (112, [order(m, at(112), "o4", extra_lines=(CROSS_LINE,))]),
        (160, [order(m, at(160), "o5")]),
        (161, [shipped(m, at(161), "o5"),
               subscription("subscription_started", m, at(161), "sub1", sku="KOSO-30", interval_days=30)]),
        (162, [subscription("subscription_paused", m, at(162), "sub1")]),
        (170, [event("churn_signal", m, at(170), signal="cancel_page_viewed")]),
        (210, [order(m, at(210), "o6")]),
        (211, [shipped(m, at(211), "o6")]),
    ]


async def run_journey(env, task_queue, m, t0, end_day: int) -> None:
    for day, events in journey(m, t0):
        await env.sleep(t0 + days(day) - await env.get_current_time())
        await send(env.client, task_queue, *events)
    await env.sleep(t0 + days(end_day) - await env.get_current_time())


def local(moment: datetime) -> str:
    return moment.astimezone(JST).strftime("%H:%M")


async def test_every_scenario_follows_the_shops_configuration(env, pool, task_queue, configured):
    configured(VersionBook.fixed(SHOP))
    m = "m-shop-config"
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        await run_journey(env, task_queue, m, t0, 325)
        rows = await touches_in_db(pool, m)
    sent = [r for r in rows if r["outcome"] == "sent"]
    assert {r["scenario"] for r in sent} == {f"S{n:02d}" for n in range(1, 13)} - {"S06"}
    assert not [r for r in rows if r["scenario"] == "S06"]  # switched off: never planned
    timed = [r for r in sent if r["step"] not in AT_ONCE]
    assert timed and {local(r["planned_at"]) for r in timed} == {"11:30"}
    assert [r["occurrence"] for r in rows if r["scenario"] == "S08"] == ["o3", "o6"]  # F=3, then 130 days on
    new_product = next(r for r in rows if r["step"] == "new_product" and r["occurrence"] == "o6")
    assert new_product["outcome"] == "sent"
    assert (new_product["planned_at"].astimezone(JST).date() - t0.date()).days == 320  # o6 + 110 days
    assert "expired" not in {r["outcome"] for r in rows}


async def test_a_change_mid_journey_reaches_the_member_at_its_next_decision(env, pool, task_queue, configured):
    """Version 2 (S06 off, send time 11:30) takes effect on day 20 of a first purchase. The
    testimonial of day 15 went out at 10:00 under version 1; the member's next decision is the
    survey on day 25 (it wakes at 10:00 on the timer version 1 set): S06's pending day-28
    upsell ends cancelled with the change named, and the survey goes out at 11:30 — nothing
    is sent twice, nothing signalled to the member."""
    m = "m-shop-change"
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        v2 = Rules(version=2, policy=PolicyConfig(send_hour=11, send_minute=30, holdout_percent=0),
                   scenarios={"S06": ScenarioRules(enabled=False)})
        configured(VersionBook([Version(1, EPOCH, Rules(version=1, policy=PolicyConfig(holdout_percent=0))),
                                Version(2, t0 + days(20), v2)]))
        await send(env.client, task_queue, registered(m, t0), order(m, t0, "o1"))
        await env.sleep(days(40))
        rows = {r["step"]: r for r in await pool.fetch(
            "SELECT step, outcome, reason, planned_at, decided_at FROM touches"
            " WHERE member_id = $1 AND scenario IN ('S03', 'S06')", m)}
    assert (rows["testimonial"]["outcome"], local(rows["testimonial"]["planned_at"])) == ("sent", "10:00")
    assert (rows["survey"]["outcome"], local(rows["survey"]["planned_at"])) == ("sent", "11:30")
    assert (rows["upsell"]["outcome"], rows["upsell"]["reason"]) == ("cancelled", "config:v2:S06_off")
    # Decided when the member woke for the survey on the timer version 1 had set: day 25, 10:00.
    decided = rows["upsell"]["decided_at"].astimezone(JST)
    assert ((decided.date() - t0.date()).days, decided.time().replace(microsecond=0)) == (25, time(10))
