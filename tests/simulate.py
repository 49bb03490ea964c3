"""A pure driver of the core, the way MemberWorkflow drives it: for fast property tests.

It folds each event in at its ``occurred_at``, wakes when ``settle`` says, and
records every finished touch — no Temporal, no I/O.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from workflows.events import MemberEvent
from workflows.lifecycle import MemberState, advance_clock, apply, new_member
from workflows.scenarios import record
from workflows.policy import PolicyConfig, settle
from workflows.touches import TouchRecord


def simulate(events: list[MemberEvent], days: int, config: PolicyConfig = PolicyConfig(),
             ) -> tuple[MemberState, list[TouchRecord]]:
    timeline = sorted(events, key=lambda e: e.occurred_at)
    start = timeline[0].occurred_at
    end = start + timedelta(days=days)
    state, pending, records = new_member(timeline[0].member_id), {}, []
    wake: datetime | None = start
    index = 0
    while True:
        next_event = timeline[index].occurred_at if index < len(timeline) else None
        now = min(m for m in (wake, next_event) if m is not None) if (wake or next_event) else None
        if now is None or now > end:
            return state, records
        while index < len(timeline) and timeline[index].occurred_at <= now:
            state = apply(state, timeline[index])
            index += 1
        state = advance_clock(state, now)
        settlement = settle(state, pending, now, config)
        finished = [record for _, record in settlement.finished]
        records.extend(finished)
        state = record(state, finished)
        pending, wake = settlement.pending, settlement.wake_at
        if state.erased_at is not None:
            return state, records
