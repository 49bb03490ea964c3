"""The same events in any arrival order give the same touches (SPEC §2, §4 "at once").

Order systems deliver at least once and not always in order. Each member below lives
twice on the time-skipping test server, under two member ids outside every holdout,
in one shared timeline:

- *in order*: every event delivered once, at its own ``occurred_at``;
- *shuffled*: the events of each burst (events a few minutes apart, well within the
  10-minute grace period) delivered together at the burst's last moment in reverse
  order, and every event delivered twice.

Each delivery waits until the workflow has processed it, so what the workflow decides
between two deliveries is the same on every run. After ~120 days the ``touches`` rows of
the two copies — scenario, step, occurrence, channel, outcome, reason, planned_at — and
the member's stage, F and subscription status must be identical.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from tests.factories import cancelled, days, event, minutes, order, registered, sample, shipped, subscription
from tests.workflows.helpers import member_not_held_out, next_local_noon, running_worker, send, state_of, touches_in_db
from workflows.events import MemberEvent

RUN_DAYS = 120
ALL_SCENARIOS = tuple(f"S{n:02}" for n in range(1, 13))

Bursts = list[list[MemberEvent]]  # each burst: events minutes apart, oldest first


def sample_converter(m: str, t0: datetime) -> Bursts:
    """Registers and asks for a sample in the same minute; converts before the last call."""
    return [
        [registered(m, t0), sample(m, t0 + minutes(1), "s1", days_supply=7)],
        [shipped(m, t0 + days(1), "s1")],
        [order(m, t0 + days(7.5), "o1")],
        [shipped(m, t0 + days(9), "o1")],
    ]


def subscriber_with_churn_signs(m: str, t0: datetime) -> Bursts:
    """定期 from day 0; views the cancel page and lengthens the interval minutes later; a skip
    request; lengthens the interval again."""
    return [
        [registered(m, t0), subscription("subscription_started", m, t0 + minutes(1), sku="KOSO-30", interval_days=30),
         order(m, t0 + minutes(2), "o1", subscription_id="sub-1")],
        [shipped(m, t0 + days(2), "o1")],
        [event("churn_signal", m, t0 + days(10), signal="cancel_page_viewed"),
         subscription("subscription_interval_changed", m, t0 + days(10) + minutes(3), interval_days=45)],
        [order(m, t0 + days(40), "o2", subscription_id="sub-1")],
        [shipped(m, t0 + days(42), "o2")],
        [event("churn_signal", m, t0 + days(50), signal="skip_requested")],
        [subscription("subscription_interval_changed", m, t0 + days(75), interval_days=60)],
        [order(m, t0 + days(85), "o3", subscription_id="sub-1")],
    ]


def order_cancelled_at_once(m: str, t0: datetime) -> Bursts:
    """Registers, orders, and cancels the order three minutes later; a real order on day 20."""
    return [
        [registered(m, t0), order(m, t0 + minutes(1), "o1"), cancelled(m, t0 + minutes(4), "o1")],
        [order(m, t0 + days(20), "o2")],
        [shipped(m, t0 + days(22), "o2")],
    ]


def registers_after_first_order(m: str, t0: datetime) -> Bursts:
    """The first order (a trial, 初回お試し) reaches the engine two minutes before the member's
    registration with its LINE consent; the main product follows on day 14."""
    return [
        [order(m, t0, "t1", role="trial", days_supply=14), registered(m, t0 + minutes(2))],
        [shipped(m, t0 + days(1), "t1")],
        [order(m, t0 + days(14), "o1")],
        [shipped(m, t0 + days(16), "o1")],
    ]


def normal_buyer_to_f3(m: str, t0: datetime) -> Bursts:
    """Three monthly orders; the second one's shipment follows its order by five minutes."""
    return [
        [registered(m, t0), order(m, t0 + minutes(1), "o1")],
        [shipped(m, t0 + days(2), "o1")],
        [order(m, t0 + days(30), "o2"), shipped(m, t0 + days(30) + minutes(5), "o2")],
        [order(m, t0 + days(60), "o3")],
        [shipped(m, t0 + days(62), "o3")],
    ]


MEMBERS: dict[str, Callable[[str, datetime], Bursts]] = {
    "sample_converter": sample_converter,
    "subscriber_with_churn_signs": subscriber_with_churn_signs,
    "order_cancelled_at_once": order_cancelled_at_once,
    "registers_after_first_order": registers_after_first_order,
    "normal_buyer_to_f3": normal_buyer_to_f3,
}


@dataclass(frozen=True)
class Delivery:
    at: datetime  # on the test server's clock
    copy: str  # "in_order" or "shuffled"
    event: MemberEvent


def deliveries(copy: str, bursts: Bursts) -> list[Delivery]:
    if copy == "in_order":
        return [Delivery(e.occurred_at, copy, e) for burst in bursts for e in burst]
    result = []
    for burst in bursts:
        assert max(e.occurred_at for e in burst) - min(e.occurred_at for e in burst) < minutes(10)
        last = max(e.occurred_at for e in burst)
        reversed_burst = list(reversed(burst))
        result += [Delivery(last, copy, e) for e in reversed_burst + reversed_burst]
    return result


async def processed(handle: WorkflowHandle, timeout: float = 10.0) -> None:
    """Wait until the workflow has completed a task after the newest signal arrived."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        events = (await handle.fetch_history()).events
        signals = [e.event_id for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
        completed = [e.event_id for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
        if completed and signals and signals[-1] < completed[-1]:
            return
        if completed and not signals and events[0].workflow_execution_started_event_attributes.continued_execution_run_id:
            return  # the signal went to the run before, which continued as new: its first task folded it in
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{handle.id}: the last signal was not processed within {timeout} s")
        await asyncio.sleep(0.05)


@dataclass(frozen=True)
class Outcome:
    member_ids: dict[str, str]  # copy → member id
    touches: dict[str, list[tuple]]
    states: dict[str, tuple]


@pytest.fixture(scope="module")
async def arrivals(time_skipping_env: WorkflowEnvironment, pool) -> dict[str, Outcome]:
    """Both copies of every member through one timeline of ~120 days."""
    env = time_skipping_env
    task_queue = "arrival-order"
    ids = {name: {copy: member_not_held_out(*ALL_SCENARIOS) for copy in ("in_order", "shuffled")} for name in MEMBERS}
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        plan: list[Delivery] = []
        for name, bursts_of in MEMBERS.items():
            for copy, member in ids[name].items():
                plan += deliveries(copy, bursts_of(member, t0))
        plan.sort(key=lambda d: d.at)  # stable: a burst keeps its delivery order
        handles: dict[str, WorkflowHandle] = {}
        for delivery in plan:
            now = await env.get_current_time()
            if delivery.at > now:
                await env.sleep(delivery.at - now)
            handle = await send(env.client, task_queue, delivery.event)
            handles[delivery.event.member_id] = handle
            await processed(handle)
        now = await env.get_current_time()
        await env.sleep(t0 + days(RUN_DAYS) - now)
        outcomes = {}
        for name, copies in ids.items():
            touches, states = {}, {}
            for copy, member in copies.items():
                touches[copy] = [_normalised(row, member) for row in await touches_in_db(pool, member)]
                view = await state_of(handles[member])
                states[copy] = (view.stage.value, view.purchase_count, view.subscription_status.value)
            outcomes[name] = Outcome(copies, touches, states)
    return outcomes


def _normalised(row, member: str) -> tuple:
    return (row["planned_at"], row["scenario"], row["step"], row["occurrence"].replace(member, "<member>"),
            row["channel"], row["outcome"], row["reason"])


def _difference(name: str, outcome: Outcome, in_order: list[tuple], shuffled: list[tuple]) -> str:
    def show(rows: list[tuple]) -> str:
        return "".join(f"\n    {at.isoformat()} {' '.join(str(v) for v in rest)}" for at, *rest in rows) or "\n    —"

    return (f"{name} {outcome.member_ids}: touches differ between in-order and shuffled delivery"
            f"\n  only in order:{show([r for r in in_order if r not in shuffled])}"
            f"\n  only shuffled:{show([r for r in shuffled if r not in in_order])}")


def _sorted(rows: list[tuple]) -> list[tuple]:
    return sorted(rows, key=lambda row: tuple("" if v is None else str(v) for v in row))


@pytest.mark.parametrize("name", list(MEMBERS))
async def test_touches_do_not_depend_on_the_arrival_order(arrivals: dict[str, Outcome], name: str):
    outcome = arrivals[name]
    assert outcome.touches["in_order"], f"{name}: no touch at all, the comparison would prove nothing"
    in_order, shuffled = _sorted(outcome.touches["in_order"]), _sorted(outcome.touches["shuffled"])
    if shuffled != in_order:
        pytest.fail(_difference(name, outcome, in_order, shuffled), pytrace=False)


@pytest.mark.parametrize("name", list(MEMBERS))
async def test_state_does_not_depend_on_the_arrival_order(arrivals: dict[str, Outcome], name: str):
    outcome = arrivals[name]
    assert outcome.states["shuffled"] == outcome.states["in_order"], f"{name} {outcome.member_ids}: (stage, F, 定期)"
