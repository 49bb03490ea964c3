"""What a preview reports: one member's touches, each with its outcome, in the input's timeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from workflows.events import MemberEvent
from workflows.touches import touch_key


@dataclass(frozen=True)
class PreviewTouch:
    """One touch and its outcome, in the timeline of the input events."""

    at: datetime  # when the outcome was decided (for a sent touch: when it went out)
    scenario: str
    step: str
    channel: str | None
    outcome: str
    reason: str
    due_at: datetime
    variant: str | None
    # What started the scenario entry (an order id, a pause, a signal): with scenario and
    # step, what the touch is, whatever the configuration decided for it (``--compare``).
    occurrence: str = ""

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.scenario, self.step, self.occurrence)

    def key(self, member_id: str) -> str:
        """The touch's idempotency key, as the engine computes it."""
        return touch_key(member_id, self.scenario, self.step, self.occurrence)

    def as_json(self) -> dict:
        return {
            "at": self.at.isoformat(timespec="seconds"),
            "scenario": self.scenario,
            "step": self.step,
            "channel": self.channel,
            "outcome": self.outcome,
            "reason": self.reason,
            "due_at": self.due_at.isoformat(timespec="seconds"),
            "variant": self.variant,
            "occurrence": self.occurrence,
        }


@dataclass(frozen=True)
class Preview:
    member_id: str
    timezone: str
    start: datetime  # the first event, input timeline
    end: datetime  # start + days, input timeline
    shift_days: int  # D: input + D days (wall clock) = the test server's timeline
    touches: list[PreviewTouch]
    not_run: list[MemberEvent] = field(default_factory=list)  # events after the window
    refused: list[MemberEvent] = field(default_factory=list)  # events after the member was erased
