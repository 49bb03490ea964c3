"""Broadcasts as touches: a run of a broadcast that reached a member is one touch of
the pseudo-scenario ``BC``, decided by the member's own policy like any step.

A broadcast (the weekly メルマガ, a campaign, the monthly DM) is a template sent to a
segment, once or on a schedule. Its run reaches each member as a ``broadcast_requested``
event (a ``BroadcastFact`` in the state); from it ``plan`` derives one touch, keyed
``{member}:BC:{broadcast}:{run}``, due when the run was requested. The policy then
applies consent, routing, quiet hours, the frequency cap (at the lowest priority: any
scenario's touch wins the slot) and a holdout of its own per broadcast, so the lift of
a newsletter is measured against the same members run after run.
Deterministic code only: imported inside the workflow sandbox.
"""

from __future__ import annotations

from workflows.lifecycle import MemberState, Stage
from workflows.touches import PlannedTouch, touch_key

BROADCAST = "BC"
PRIORITY = 20  # below every scenario (SPEC §5 PRIORITY 0–8)


def is_broadcast(scenario: str) -> bool:
    return scenario == BROADCAST


def plan(state: MemberState, done: set[str]) -> list[PlannedTouch]:
    """One touch per broadcast run still kept whose outcome is not in the ledger."""
    if state.stage is Stage.ERASED:
        return []
    planned = []
    for fact in state.live_broadcasts():
        key = touch_key(state.member_id, BROADCAST, fact.broadcast, fact.run)
        if key in done:
            continue
        context = {"broadcast": fact.broadcast, "run": fact.run, "template": fact.template}
        if fact.holdout_percent is not None:
            context["holdout_percent"] = str(fact.holdout_percent)
        planned.append(PlannedTouch(
            key=key, scenario=BROADCAST, step=fact.broadcast, occurrence=fact.run,
            due_at=fact.at, send_at=fact.at, priority=PRIORITY,
            channel=fact.channel, context=context,
        ))
    return planned


def holdout_percent(touch: PlannedTouch, default: int) -> int:
    """The share of the broadcast's audience held out: its own, else the policy's."""
    own = touch.context.get("holdout_percent")
    return default if own is None else int(own)
