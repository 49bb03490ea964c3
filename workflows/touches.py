"""Touches: what the planner proposes and how each one ended.

A touch is one step of one scenario entry for one member. Its idempotency key
(member, scenario, step, occurrence) is computed here, inside the workflow, so a
retried activity or a replayed workflow reuses it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from workflows.events import Channel


class Outcome(StrEnum):
    SENT = "sent"
    SUPPRESSED = "suppressed"
    EXPIRED = "expired"
    HOLDOUT = "holdout"
    CANCELLED = "cancelled"


class _Touch(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PlannedTouch(_Touch):
    key: str
    scenario: str
    step: str
    occurrence: str
    due_at: datetime  # when the scenario's timing calls for it
    send_at: datetime  # when it goes out: due_at, or later if quiet hours or the cap moved it
    priority: int = 9  # lower wins when touches compete for the frequency cap
    channel: Channel | None = None  # fixed by the step (insert, call_center); else routed by policy
    upsell: bool = False
    # Context the message template needs that is not personal data (sku, order id, run-out date).
    context: dict[str, str] = {}
    # Set when the scenario's exit already happened before the step was due.
    cancelled_reason: str | None = None
    # Set when a configuration change made the touch due while the member slept: it is
    # late only from then on (workflows.policy.settle, at a transition).
    late_from: datetime | None = None


class TouchRecord(_Touch):
    """The one outcome of a planned touch, with the rule that decided it."""

    key: str
    scenario: str
    step: str
    occurrence: str
    due_at: datetime
    outcome: Outcome
    reason: str
    channel: Channel | None = None
    decided_at: datetime
    variant: str | None = None
    upsell: bool = False  # the message carried subscription-upsell content


def touch_key(member_id: str, scenario: str, step: str, occurrence: str) -> str:
    return f"{member_id}:{scenario}:{step}:{occurrence}"
