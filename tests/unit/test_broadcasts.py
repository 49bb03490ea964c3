"""Broadcast runs as touches of the member's own policy (workflows.broadcasts), without Temporal."""

from __future__ import annotations

from datetime import timedelta

from tests.factories import days, event, jst, order, registered
from workflows import ledger, policy
from workflows.broadcasts import BROADCAST
from workflows.lifecycle import BROADCAST_KEEP, advance_clock, apply, new_member
from workflows.policy import PolicyConfig
from workflows.rules import Rules
from workflows.touches import Outcome

M = "m-broadcast"
T0 = jst(2026, 4, 6, 10)  # a Monday, 10:00
NO_HOLDOUT = Rules(policy=PolicyConfig(holdout_percent=0))


def run(member: str, at, name="weekly_news", run_id="2026w15", **fields):
    return event("broadcast_requested", member, at, broadcast=name, run=run_id, template=name, **fields)


def settle(state, at, rules=NO_HOLDOUT, pending=None):
    state = advance_clock(state, at)
    settlement = policy.settle(state, pending or {}, at, rules)
    state = ledger.record(state, [r for _, r in settlement.finished], rules)
    return state, settlement


def member(member_id=M, *, email=True, line=False):
    return apply(new_member(member_id), registered(member_id, T0 - days(30), email=email, line=line))


def test_a_run_is_one_touch_sent_on_the_members_own_route():
    state = apply(member(), run(M, T0))
    state, settlement = settle(state, T0)
    [(touch, record)] = settlement.finished
    assert (record.key, record.scenario, record.step, record.occurrence) == (
        f"{M}:BC:weekly_news:2026w15", BROADCAST, "weekly_news", "2026w15")
    assert (record.outcome, record.reason, record.channel) == (Outcome.SENT, "route:email", "email")
    assert touch.context == {"broadcast": "weekly_news", "run": "2026w15", "template": "weekly_news"}
    assert record.variant is None


def test_a_duplicate_of_a_run_is_the_same_fact_and_never_a_second_touch():
    state = apply(apply(member(), run(M, T0)), run(M, T0))
    assert len(state.broadcasts) == 1
    state, first = settle(state, T0)
    state = apply(state, run(M, T0))  # a page requested again after a crash
    state, again = settle(state, T0 + timedelta(hours=1))
    assert len(first.finished) == 1 and again.finished == []


def test_a_broadcast_is_not_the_members_doing():
    state = apply(new_member(M), run(M, T0))
    assert state.first_seen_at is None and state.registered_at is None
    state, settlement = settle(state, T0)
    assert [(r.outcome, r.reason) for _, r in settlement.finished] == [(Outcome.SUPPRESSED, "no_channel")]


def test_without_consent_on_its_channel_the_run_ends_no_channel():
    state = apply(member(email=False, line=True), run(M, T0, channel="email"))
    state, settlement = settle(state, T0)
    assert [(r.outcome, r.reason) for _, r in settlement.finished] == [(Outcome.SUPPRESSED, "no_channel")]


def test_line_waits_for_the_allowed_hours():
    at = jst(2026, 4, 6, 22)
    state = apply(member(line=True), run(M, at))
    state, settlement = settle(state, at)
    assert settlement.finished == []
    [pending] = settlement.pending.values()
    assert pending.send_at == jst(2026, 4, 7, 9)


def test_at_the_cap_a_scenario_step_due_at_the_same_moment_takes_the_last_slot():
    placed = T0 - days(25)  # S03's survey falls due on day 25 at 10:00: T0
    state = apply(member(), order(M, placed, "o1"))
    state, _ = settle(state, placed + timedelta(minutes=15))  # the thanks insert
    state, _ = settle(state, T0 - days(10))  # the testimonial, outside the week before T0
    for n, day in enumerate((5, 4)):  # two sends in the week: one slot of three left
        state = apply(state, run(M, T0 - days(day), name="flash", run_id=f"f{n}"))
        state, _ = settle(state, T0 - days(day))
    state = apply(state, run(M, T0))
    state, settlement = settle(state, T0)
    assert [(r.scenario, r.step, r.outcome) for _, r in settlement.finished] == [("S03", "survey", Outcome.SENT)]
    [waiting] = [t for t in settlement.pending.values() if t.scenario == BROADCAST]
    assert waiting.send_at == T0 + days(2)  # when the first flash leaves the week


def test_the_cap_postpones_a_run_within_its_lateness_and_suppresses_it_beyond():
    state = member()
    for n in range(3):  # the cap: three touches in seven days
        at = T0 - days(6) + timedelta(hours=n)
        state = apply(state, run(M, at, name="flash", run_id=f"f{n}"))
        state, _ = settle(state, at)
    state = apply(state, run(M, T0))
    state, settlement = settle(state, T0)
    [postponed] = settlement.pending.values()
    assert postponed.send_at == T0 + days(1)  # the first of the three leaves the window
    state, settlement = settle(state, postponed.send_at, pending=settlement.pending)
    assert [(r.outcome, r.reason) for _, r in settlement.finished] == [(Outcome.SENT, "route:email")]

    busy = member()
    for n in range(3):
        at = T0 + timedelta(hours=n)
        busy = apply(busy, run(M, at, name="flash", run_id=f"g{n}"))
        busy, _ = settle(busy, at)
    busy = apply(busy, run(M, T0 + timedelta(hours=4)))
    busy, settlement = settle(busy, T0 + timedelta(hours=4))  # frees in 7 days: past 3 days late
    assert [(r.outcome, r.reason) for _, r in settlement.finished] == [(Outcome.SUPPRESSED, "frequency_cap")]


def test_each_broadcast_holds_out_its_own_stable_share():
    rules = Rules()  # the policy's 10 %
    held = {}
    for name, percent in (("weekly_news", None), ("campaign", 30)):
        fields = {} if percent is None else {"holdout_percent": percent}
        members = [f"m{n}" for n in range(2000)]
        outcomes = []
        for m in members:
            state = apply(member(m), run(m, T0, name=name, **fields))
            _, settlement = settle(state, T0, rules)
            outcomes.append(settlement.finished[0][1].outcome is Outcome.HOLDOUT)
        held[name] = {m for m, out in zip(members, outcomes) if out}
    assert 160 <= len(held["weekly_news"]) <= 240  # ~10 % of 2,000
    assert 520 <= len(held["campaign"]) <= 680  # ~30 %
    # The same members at the next run of the newsletter: the lift is measured run after run.
    again = {m for m in held["weekly_news"]
             if settle(apply(member(m), run(m, T0 + days(7), run_id="2026w16")), T0 + days(7), rules)[1]
             .finished[0][1].outcome is Outcome.HOLDOUT}
    assert again == held["weekly_news"]


def test_runs_and_their_outcomes_are_let_go_after_ninety_days():
    state = member()
    at = T0
    for week in range(104):  # two years of a weekly newsletter
        state = apply(state, run(M, at, run_id=f"w{week}"))
        state, _ = settle(state, at)
        at += days(7)
    kept_days = BROADCAST_KEEP.days
    assert len(state.broadcasts) <= kept_days // 7 + 1
    assert len([t for t in state.touches if t.scenario == BROADCAST]) <= kept_days // 7 + 1
    # A duplicate of a run older than that changes nothing and is never sent again.
    state = apply(state, run(M, T0, run_id="w0"))
    assert all(b.run != "w0" for b in state.broadcasts)
    _, settlement = settle(state, at)
    assert settlement.finished == []
