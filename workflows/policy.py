"""The delivery policy (SPEC §5) as pure functions: which touch goes out, where, or why not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from workflows.events import Channel, SalesChannel
from workflows.lifecycle import MemberState
from workflows.touches import Outcome, PlannedTouch, TouchRecord

ONLINE_ROUTE = (Channel.LINE, Channel.EMAIL, Channel.SMS, Channel.DM)
OFFLINE_ROUTE = (Channel.DM,)
# Channels that need no opt-in: the parcel insert and a task for the shop's own agents.
UNCONSENTED = frozenset({Channel.INSERT, Channel.CALL_CENTER, Channel.WEB})


class PolicyConfig(BaseModel):
    """Tunable policy, carried in the workflow input so a change reaches members on their next run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    send_hour: int = Field(10, ge=0, le=23)
    late_after: timedelta = timedelta(days=3)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str
    channel: Channel | None = None


def route(state: MemberState, touch: PlannedTouch) -> Channel | None:
    """The channel a touch goes out on: the step's own, else the member's first usable one."""
    if touch.channel is not None:
        if touch.channel in UNCONSENTED or state.can_reach(touch.channel):
            return touch.channel
        return None
    order = OFFLINE_ROUTE if state.profile.sales_channel is SalesChannel.OFFLINE else ONLINE_ROUTE
    return next((channel for channel in order if state.can_reach(channel)), None)


def decide(state: MemberState, touch: PlannedTouch, now: datetime, config: PolicyConfig) -> Decision:
    """The one outcome of a touch that is due, and the rule that decided it."""
    if touch.cancelled_reason is not None:
        return Decision(Outcome.CANCELLED, touch.cancelled_reason)
    overdue = now - touch.due_at
    if overdue > config.late_after:
        return Decision(Outcome.EXPIRED, f"late:{overdue.days}d_overdue")
    channel = route(state, touch)
    if channel is None:
        return Decision(Outcome.SUPPRESSED, "no_channel")
    return Decision(Outcome.SENT, f"route:{channel.value}", channel)


def to_record(touch: PlannedTouch, decision: Decision, decided_at: datetime) -> TouchRecord:
    return TouchRecord(
        key=touch.key, scenario=touch.scenario, step=touch.step, occurrence=touch.occurrence,
        due_at=touch.due_at, outcome=decision.outcome, reason=decision.reason,
        channel=decision.channel, decided_at=decided_at,
    )
