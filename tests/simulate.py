"""A pure driver of the core, the way MemberWorkflow drives it: for fast property tests.

It folds each event in when it *arrives* (by default at its ``occurred_at``), wakes
when ``settle`` says, and records every finished touch — no Temporal, no I/O. With
``carry_at``, it round-trips the state and the pending touches through JSON at those
moments, as continue-as-new does.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from workflows.events import MemberEvent
from workflows.lifecycle import MemberState, advance_clock, apply, new_member
from workflows.messages import MemberInput
from workflows.policy import PolicyConfig, Transition, as_rules, planned_dues, settle
from workflows.rules import Rules
from workflows.ledger import record
from workflows.versions import VersionBook, choose
from workflows.touches import PlannedTouch, TouchRecord

Arrival = tuple[datetime, MemberEvent]


def simulate(events: list[MemberEvent], days: int, config: PolicyConfig = PolicyConfig(),
             ) -> tuple[MemberState, list[TouchRecord]]:
    """Every event arrives at its ``occurred_at``."""
    return simulate_arrivals([(e.occurred_at, e) for e in events], days, config)


def simulate_arrivals(arrivals: list[Arrival], days: int, config: PolicyConfig | Rules = PolicyConfig(),
                      carry_at: tuple[datetime, ...] = (), book: VersionBook | None = None,
                      ) -> tuple[MemberState, list[TouchRecord]]:
    """Events arrive at the given moments, in the given order among equal moments. With a
    ``book``, each decision uses the version in force then, as the workflow does."""
    state, _, records = _drive(arrivals, days, config, carry_at, book)
    return state, records


def simulate_pending(arrivals: list[Arrival], days: int, config: PolicyConfig = PolicyConfig(),
                     ) -> tuple[MemberState, dict[str, PlannedTouch]]:
    """The state and the touches still planned at the end: what continue-as-new would carry."""
    state, pending, _ = _drive(arrivals, days, config, ())
    return state, pending


def _drive(arrivals: list[Arrival], days: int, config: PolicyConfig | Rules, carry_at: tuple[datetime, ...],
           book: VersionBook | None = None) -> tuple[MemberState, dict[str, PlannedTouch], list[TouchRecord]]:
    timeline = sorted(arrivals, key=lambda a: a[0])  # stable: same-moment arrivals keep their order
    start = timeline[0][0]
    end = start + timedelta(days=days)
    carries = sorted(carry_at)
    state, pending, records = new_member(timeline[0][1].member_id), {}, []
    wake: datetime | None = start
    index = 0
    rules, last = as_rules(config), None
    while True:
        next_event = timeline[index][0] if index < len(timeline) else None
        now = min((m for m in (wake, next_event) if m is not None), default=None)
        if now is None or now > end:
            return state, pending, records
        while carries and carries[0] <= now:
            carries.pop(0)
            state, pending = _continue_as_new(state, pending)
        transition = None
        if book is not None:
            choice = choose(book, now, last, False, rules)
            rules = choice.rules
        while index < len(timeline) and timeline[index][0] <= now:
            state = apply(state, timeline[index][1], rules.loyalty())
            index += 1
        state = advance_clock(state, now)
        if book is not None and choice.previous is not None:
            before, since = choice.previous
            transition = Transition(since, planned_dues(state, pending, before))
        settlement = settle(state, pending, now, rules, transition=transition)
        last = rules.version
        finished = [r for _, r in settlement.finished]
        records.extend(finished)
        state = record(state, finished, rules)
        pending, wake = settlement.pending, settlement.wake_at
        if state.erased_at is not None:
            return state, pending, records


def _continue_as_new(state: MemberState, pending: dict) -> tuple[MemberState, dict]:
    carried = MemberInput(member_id=state.member_id, state=state, planned=tuple(pending.values()))
    back = MemberInput.model_validate_json(carried.model_dump_json())
    assert back.state is not None
    return back.state, {t.key: t for t in back.planned}
