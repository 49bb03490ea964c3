"""Properties of the planner and the policy, driven the way the workflow drives them."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings

from tests.simulate import simulate
from tests.strategies import member_events
from workflows.scenarios import plan
from workflows.touches import Outcome


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
