"""The ledger over many years and any arrival order (issue: exact for members of many years).

Journeys of up to ten simulated years and hundreds of events — orders with and
without cross lines, shipments, cancellations in the same burst, churn signals,
interval lengthenings, pauses and partial registrations — driven through the
pure core the way the workflow drives it (tests/simulate.py).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import JST, days, event, jst, order, registered, shipped
from tests.simulate import simulate, simulate_arrivals
from workflows.lifecycle import MAX_HELD, MAX_ORDERS
from workflows.policy import PolicyConfig
from workflows.ledger import MAX_LEDGER
from workflows.touches import Outcome

M = "m-long"
T0 = jst(2020, 1, 6, 12)
CROSS = {"sku": "NYUSAN-30", "role": "cross", "quantity": 1, "days_supply": 30, "unit_price": 2980}
SUB = {"subscription_id": "sub1"}
BURST = timedelta(minutes=5)  # events of one burst happen within this; the grace period is 10 min
STATE_BOUND = 48_000  # bytes of the carried state, whatever the member's age
LONG = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def long_journeys(draw, max_years: int = 10):
    """A member's events over up to ``max_years``: bursts of related events, days apart."""
    end = T0 + days(365 * draw(st.integers(min_value=2, max_value=max_years)))
    events = [registered(M, T0)]
    at, n = T0, 0
    subscribed = False
    while True:
        at += days(draw(st.integers(min_value=7, max_value=75))) + timedelta(minutes=draw(st.integers(0, 600)))
        if at > end:
            return events
        n += 1
        oid = f"o{n}"
        extra = [CROSS] if draw(st.integers(0, 9)) == 0 else []
        events.append(order(M, at, oid, extra_lines=extra,
                            role="trial" if draw(st.integers(0, 29)) == 0 else "main"))
        roll = draw(st.integers(0, 19))
        if roll == 0:  # cancelled in the same burst
            events.append(event("order_cancelled", M, at + timedelta(minutes=2), order_id=oid))
        elif roll == 1:  # a profile update in the same burst: a new address only
            events.append(event("member_registered", M, at + timedelta(minutes=1),
                                contact={"postal_address": "大阪府大阪市北区1-1"}))
        if draw(st.integers(0, 9)) > 0:
            events.append(shipped(M, at + days(draw(st.integers(1, 3))), oid))
        roll = draw(st.integers(0, 11))
        if roll == 0:
            events.append(event("churn_signal", M, at + days(draw(st.integers(1, 20))),
                                signal=draw(st.sampled_from(["cancel_page_viewed", "skip_requested"]))))
        elif roll == 1 and not subscribed:
            events.append(event("subscription_started", M, at + timedelta(minutes=3), sku="KOSO-30",
                                interval_days=30, **SUB))
            subscribed = True
        elif roll == 2 and subscribed:
            events.append(event("subscription_interval_changed", M, at + days(draw(st.integers(1, 20))),
                                interval_days=draw(st.sampled_from([30, 45, 60, 90])), **SUB))
        elif roll == 3 and subscribed:
            kind = draw(st.sampled_from(["subscription_paused", "subscription_resumed"]))
            events.append(event(kind, M, at + days(draw(st.integers(1, 20))), **SUB))


def _bursts(events):
    """Events grouped into bursts: each within BURST of the burst's first event."""
    groups: list[list] = []
    for e in sorted(events, key=lambda e: (e.occurred_at, e.event_id)):
        if groups and e.occurred_at - groups[-1][0].occurred_at <= BURST:
            groups[-1].append(e)
        else:
            groups.append([e])
    return groups


def _outcomes(records):
    return [(r.key, r.outcome, r.reason, r.channel, r.due_at, r.decided_at) for r in records]


def _run_days(events) -> int:
    return (max(e.occurred_at for e in events) - T0).days + 150


@LONG
@given(long_journeys())
def test_events_that_arrive_on_time_leave_no_touch_expired_and_each_touch_one_outcome(events):
    _, records = simulate(events, _run_days(events))
    expired = [(r.scenario, r.step, r.reason) for r in records if r.outcome is Outcome.EXPIRED]
    assert not expired
    counts = Counter(r.key for r in records)
    assert not [key for key, n in counts.items() if n > 1]


@LONG
@given(long_journeys(), st.randoms(use_true_random=False))
def test_any_order_and_duplication_within_a_burst_give_the_same_state_and_touches(events, rnd):
    """Each burst delivered at its last event's moment: in order, or shuffled with duplicates."""
    in_order, shuffled = [], []
    for burst in _bursts(events):
        arrives = burst[-1].occurred_at
        in_order += [(arrives, e) for e in burst]
        mixed = burst + rnd.sample(burst, k=rnd.randint(0, len(burst)))
        rnd.shuffle(mixed)
        shuffled += [(arrives, e) for e in mixed]
    state_a, records_a = simulate_arrivals(in_order, _run_days(events))
    state_b, records_b = simulate_arrivals(shuffled, _run_days(events))
    assert _outcomes(records_a) == _outcomes(records_b)
    assert state_a.model_dump(exclude={"touches"}) == state_b.model_dump(exclude={"touches"})


@LONG
@given(long_journeys(), st.randoms(use_true_random=False))
def test_a_burst_arriving_event_by_event_or_all_at_its_end_gives_the_same_touches(events, rnd):
    """The grace period: what is sent does not depend on how one burst trickles in."""
    trickled = [(e.occurred_at, e) for e in events]
    at_end = [(burst[-1].occurred_at, e) for burst in _bursts(events) for e in rnd.sample(burst, len(burst))]
    _, records_a = simulate_arrivals(trickled, _run_days(events))
    _, records_b = simulate_arrivals(at_end, _run_days(events))
    assert [(r.key, r.outcome, r.reason, r.channel) for r in records_a] == \
        [(r.key, r.outcome, r.reason, r.channel) for r in records_b]


@LONG
@given(long_journeys(max_years=6), st.lists(st.integers(0, 6 * 365), max_size=6))
def test_continue_as_new_at_any_point_gives_the_same_touches_as_none(events, carry_days):
    arrivals = [(e.occurred_at, e) for e in events]
    _, plain = simulate_arrivals(arrivals, _run_days(events))
    carry_at = tuple(T0 + days(d) + timedelta(minutes=7) for d in carry_days)
    _, carried = simulate_arrivals(arrivals, _run_days(events), carry_at=carry_at)
    assert _outcomes(plain) == _outcomes(carried)


@LONG
@given(long_journeys())
def test_the_carried_state_stays_under_a_fixed_bound_whatever_the_age(events):
    state, _ = simulate(events, _run_days(events))
    assert len(state.model_dump_json()) < STATE_BOUND
    assert len(state.orders) <= MAX_ORDERS + MAX_HELD and len(state.touches) <= MAX_LEDGER
    cancelled = {e.order_id for e in events if e.type == "order_cancelled"}
    mains = {e.order_id for e in events if e.type == "order_placed"
             and any(line.role.value == "main" for line in e.lines)}
    assert state.purchase_count == len(mains - cancelled)  # F stays exact after folding


def _monthly(months: int, member: str = M):
    events = [registered(member, T0)]
    for i in range(months):
        events += [order(member, T0 + days(30 * i), f"o{i}"), shipped(member, T0 + days(30 * i + 2), f"o{i}")]
    return events


def test_a_40_month_buyer_keeps_getting_s08_and_s09_at_their_spacing_and_nothing_expires():
    _, records = simulate(_monthly(40), 40 * 30 + 30, PolicyConfig(holdout_percent=0))
    assert not [r for r in records if r.outcome is Outcome.EXPIRED]
    s08 = [r.due_at for r in records if r.scenario == "S08" and r.outcome is Outcome.SENT]
    s09 = [r.due_at for r in records if r.scenario == "S09" and r.outcome is Outcome.SENT]
    assert all(b - a >= days(180) for a, b in zip(s08, s08[1:])) and all(b - a >= days(90) for a, b in zip(s09, s09[1:]))
    third_year = (T0 + days(730), T0 + days(1095))
    assert any(third_year[0] <= d < third_year[1] for d in s08)
    assert sum(third_year[0] <= d < third_year[1] for d in s09) >= 3
    assert len(s08) == 7  # 4th purchase (month 3), then every 180 days: months 9, 15, 21, 27, 33, 39


def test_the_ledger_of_a_monthly_buyer_stops_growing_once_its_orders_are_folded():
    """S08's outcomes are kept while the order that entered them is in the state (a change of
    its N回目 could derive that entry again), not for ever: after five years and after ten the
    ledger holds the same number of outcomes, and none of an order the state let go of."""
    five, _ = simulate(_monthly(60), 60 * 30, PolicyConfig(holdout_percent=0))
    ten, _ = simulate(_monthly(120), 120 * 30, PolicyConfig(holdout_percent=0))
    assert len(ten.touches) == len(five.touches)
    s08 = [t for t in ten.touches if t.scenario == "S08"]
    assert s08 and all(t.occurrence in ten.orders for t in s08)


def test_two_lengthenings_ten_days_apart_call_once_and_six_signals_keep_their_real_entries():
    sub = SUB
    events = [registered(M, T0), order(M, T0, "o1", subscription_id="sub1"),
              event("subscription_started", M, T0, sku="KOSO-30", interval_days=30, **sub),
              event("subscription_interval_changed", M, T0 + days(20), interval_days=45, **sub),
              event("subscription_interval_changed", M, T0 + days(30), interval_days=60, **sub)]
    _, records = simulate(events, 90, PolicyConfig(holdout_percent=0))
    calls = [r for r in records if r.scenario == "S12" and r.step == "call_center_task"]
    assert [(r.outcome, r.due_at.astimezone(JST).date()) for r in calls] == [
        (Outcome.SENT, (T0 + days(20)).date())]

    signals = [event("churn_signal", M, T0 + days(d), signal="skip_requested") for d in (0, 10, 35, 50, 70, 200)]
    _, records = simulate([registered(M, T0), *signals], 260, PolicyConfig(holdout_percent=0))
    entered = sorted({r.occurrence for r in records if r.scenario == "S12"})
    # Spacing of 30 days from the first: days 0, 35, 70 and 200 enter; 10 and 50 do not.
    assert entered == sorted(f"signal@{(T0 + days(d)).isoformat()}" for d in (0, 35, 70, 200))


def test_an_address_change_keeps_consent_and_the_sales_channel():
    from workflows.lifecycle import apply, new_member

    first = registered(M, T0, sales_channel="offline")
    state = apply(new_member(M), first)
    before = (state.consent, state.profile.sales_channel, state.profile.reachable)
    moved = event("member_registered", M, T0 + days(40), contact={"postal_address": "大阪府"})
    moved = moved.model_copy(update={"contact": None, "reachable": before[2]})  # as the ingress forwards it
    state = apply(state, moved)
    assert (state.consent, state.profile.sales_channel, state.profile.reachable) == before
    # Applied in the other order, the older full registration does not undo the newer address.
    other = apply(apply(new_member(M), moved), first)
    assert other.model_dump(exclude={"touches"}) == state.model_dump(exclude={"touches"})


def test_s06_is_judged_against_the_subscription_at_the_purchase_not_today():
    events = [registered(M, T0), order(M, T0, "o1", subscription_id="sub1"),
              event("subscription_started", M, T0, sku="KOSO-30", interval_days=30, **SUB),
              order(M, T0 + days(30), "o2"),  # a normal purchase while subscribed: no S06
              event("subscription_cancelled", M, T0 + days(40), **SUB)]
    _, records = simulate(events, 80, PolicyConfig(holdout_percent=0))
    assert not [r for r in records if r.scenario == "S06"]


def test_s03_and_s06_due_in_one_wake_up_carry_the_upsell_once():
    # A 7-day supply: S03's survey (run-out − 5 = day 2) and S06 (supply − 2 = day 5) …
    # with 9 days: survey day 4, S06 day 7 — choose a supply where both fall on one day.
    # run_out − 5 == supply − 2  ⇔  never for an unshipped order; ship it 3 days later.
    events = [registered(M, T0), order(M, T0, "o1", days_supply=30), shipped(M, T0 + days(3) - timedelta(hours=1), "o1")]
    _, records = simulate(events, 40, PolicyConfig(holdout_percent=0))
    survey = next(r for r in records if r.scenario == "S03" and r.step == "survey")
    s06 = next(r for r in records if r.scenario == "S06")
    assert survey.decided_at == s06.decided_at  # the same wake-up
    assert (survey.outcome, survey.upsell) == (Outcome.SENT, True)
    assert (s06.outcome, s06.reason) == (Outcome.SUPPRESSED, "covered_by:S03")


def test_a_withdrawn_step_comes_back_when_its_entry_holds_again():
    """o1 is cancelled, then o2 makes the member F1 again: S03 runs for o2; nothing for o1 is sent."""
    events = [registered(M, T0), order(M, T0, "o1"),
              event("order_cancelled", M, T0 + days(3), order_id="o1"),
              order(M, T0 + days(5), "o2")]
    _, records = simulate(events, 40, PolicyConfig(holdout_percent=0))
    s03 = {(r.occurrence, r.step): r.outcome for r in records if r.scenario == "S03"}
    assert s03[("o1", "thanks_insert")] is Outcome.SENT  # went out before the cancellation
    assert ("o1", "testimonial") not in s03  # withdrawn: no outcome, nothing sent
    assert s03[("o2", "testimonial")] is Outcome.SENT and s03[("o2", "survey")] is Outcome.SENT
