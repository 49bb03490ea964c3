"""Inputs and results of the broadcast workflow (``workflows.broadcast``) and its activities.

One model in, one model out; new fields get defaults. No personal data: a run carries
the broadcast's definition and member ids only. Deterministic code only: imported
inside the workflow sandbox.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from workflows.events import BroadcastName, RunId
from workflows.segments import SegmentName, Segment

# A page is one activity: accepted into the event log in one transaction, then forwarded.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def workflow_id(name: str, run: str) -> str:
    """``broadcast-{name}-{run}``: one workflow per run, so a second start of a run is refused."""
    return f"broadcast-{name}-{run}"


def schedule_id(name: str) -> str:
    """The Temporal Schedule of a recurring broadcast; its runs' workflow ids are this id
    followed by the scheduled time (Temporal's doing)."""
    return f"broadcast-{name}"


def run_id(at: datetime) -> str:
    """The run id a moment gives (``20261207T0100Z``, UTC to the minute): a run started
    without one, or by a schedule, is named after its time."""
    return at.astimezone(timezone.utc).strftime("%Y%m%dT%H%MZ")


def event_id(name: str, run: str, member_id: str) -> str:
    return f"bc:{name}:{run}:{member_id}"


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Stage(StrEnum):
    SNAPSHOT = "snapshot"  # taking the audience
    REQUESTING = "requesting"  # page by page, at the broadcast's rate
    FORWARDING = "forwarding"  # every member requested; waiting for the last to reach its workflow
    FINISHED = "finished"
    CANCELLED = "cancelled"


class BroadcastProgress(_Message):
    """Where a run is: the ``progress`` query's answer, and what continue-as-new carries."""

    name: str
    run: str
    stage: Stage = Stage.SNAPSHOT
    requested_at: datetime | None = None  # the run's time: its events' occurred_at
    as_of: datetime | None = None
    audience: int = 0
    cursor: str | None = None  # the last member id whose page is done (member id order)
    reached: int = 0  # members whose page is done
    requested: int = 0  # their events are in the event log (accepted now or by an earlier attempt)
    refused: int = 0  # erased since the snapshot (the ingress refuses their events)
    unforwarded: int = 0  # requested, not yet signalled to the member's workflow
    pages: int = 0

    @property
    def percent(self) -> int:
        return 100 if not self.audience else min(100, self.reached * 100 // self.audience)


class BroadcastInput(_Message):
    """A run of a broadcast: the definition as it was when the run (or its schedule) was made."""

    name: BroadcastName
    run: RunId | None = None  # None: named after the run's time (a schedule's runs)
    segment_name: SegmentName
    segment: Segment  # the criteria, frozen: a later edit of the segment changes no run under way
    template: BroadcastName
    channel: Literal["email", "line", "sms", "push", "dm"] | None = None
    holdout_percent: Annotated[int, Field(ge=0, le=50)] | None = None
    as_of: AwareDatetime | None = None  # the segment is evaluated as of; None: the run's time
    rate_per_second: float = Field(50.0, gt=0, le=10_000)
    page_size: int = Field(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    progress: BroadcastProgress | None = None  # carried across continue-as-new

    def definition(self) -> dict:
        """What ``broadcast_runs.definition`` keeps of the run (JSON-ready)."""
        return self.model_dump(mode="json", exclude={"progress", "run", "as_of"})


class SnapshotRequest(_Message):
    broadcast: BroadcastInput
    run: str
    workflow_id: str
    requested_at: datetime
    as_of: datetime


class Audience(_Message):
    members: int


class PageRequest(_Message):
    name: str
    run: str
    after: str | None  # the cursor: the page starts after this member id
    size: int
    requested_at: datetime
    template: str
    channel: str | None = None
    holdout_percent: int | None = None


class PageResult(_Message):
    members: int  # in this page; fewer than asked: the last page
    last: str | None  # the page's last member id: the next cursor
    requested: int
    refused: int
    unforwarded: int  # of this page, left for the run's end (another forwarder holds them, or Temporal is down)


class RunRef(_Message):
    name: str
    run: str


class Forwarding(_Message):
    unforwarded: int  # of the run's events, still waiting to reach their workflows


class CloseRequest(_Message):
    name: str
    run: str
    status: Literal["finished", "cancelled"]
