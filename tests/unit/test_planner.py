"""Properties of the planner and the policy, driven the way the workflow drives them."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import event, order, registered
from tests.simulate import simulate
from tests.strategies import member_events
from workflows.scenarios import plan
from workflows.touches import Outcome

M = "m-edge"


@settings(max_examples=200, deadline=None)
@given(member_events(erasure=True))
def test_every_step_occurrence_gets_exactly_one_outcome(events):
    _, records = simulate(events, 400)
    counts = Counter(r.key for r in records)
    assert not [key for key, n in counts.items() if n > 1]


@settings(max_examples=200, deadline=None)
@given(member_events(erasure=True))
def test_no_touch_goes_out_before_its_time(events):
    _, records = simulate(events, 400)
    for record in records:
        if record.outcome is not Outcome.CANCELLED:
            assert record.decided_at >= record.due_at, record


@settings(max_examples=200, deadline=None)
@given(member_events(erasure=True))
def test_nothing_is_sent_after_erasure(events):
    state, records = simulate(events, 400)
    if state.erased_at is None:
        return
    after = [r for r in records if r.decided_at >= state.erased_at]
    assert all(r.outcome is Outcome.CANCELLED and r.reason == "exit:member_erased" for r in after), after
    assert plan(state) == []


@settings(max_examples=200, deadline=None)
@given(member_events())
def test_a_plan_never_holds_one_step_occurrence_twice(events):
    state, _ = simulate(events, 400)
    keys = [t.key for t in plan(state)]
    assert len(keys) == len(set(keys))


@st.composite
def extreme_members(draw):
    """Valid events at the edges of the contract: any supply, any year allowed, far-off timezones."""
    tz = draw(st.sampled_from(["Asia/Tokyo", "Pacific/Kiritimati", "Pacific/Pago_Pago", "America/St_Johns"]))
    start = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 12, 1),
                              timezones=st.just(ZoneInfo(tz))))
    events = [registered(M, start).model_copy(update={"timezone": tz})]
    for i in range(draw(st.integers(1, 6))):
        supply = draw(st.integers(1, 3650))
        at = start + timedelta(minutes=draw(st.integers(0, 60 * 24 * 60)))
        if at.year > 2100:
            break
        events.append(order(M, at, f"o{i}", days_supply=supply, quantity=min(1000, max(1, 3650 // supply // 2)),
                            role=draw(st.sampled_from(["main", "trial", "cross"]))))
        if draw(st.booleans()):
            events.append(event("churn_signal", M, at, signal="complaint"))
    return events


@settings(max_examples=150, deadline=None)
@given(extreme_members())
def test_valid_input_never_makes_the_core_raise(events):
    state, records = simulate(events, 200)
    assert state.member_id == M
    assert all(r.due_at.year <= 2111 for r in records)
