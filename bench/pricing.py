"""Dollars per member-year on Temporal Cloud's list prices: actions, active storage, retained storage.

Prices (pay-as-you-go list prices, the first tier; https://docs.temporal.io/cloud/pricing,
"Action pricing" and "Storage pricing"): actions from $50 per million; storage per GB-hour,
$0.042 active (the histories of open workflows) and $0.00105 retained (the histories of
closed workflows, kept for the namespace's retention period). Retention: 30 days, the
default of a new Cloud namespace (``tcld namespace create --retention-days``, "default: 30";
https://docs.temporal.io/cloud/tcld/namespace); at most 90 on Cloud.

What is measured, from every run of a member's workflow (``bench.cost`` fetches them all):

- **active storage**: a run's open history grows event by event. Each event's serialized
  size (its share of the run's ``History`` protobuf) is charged from its ``event_time`` until
  the run closes (continue-as-new) or the simulated year ends, whichever is first — the exact
  time-integral of the open history's size over the year, not an approximation. With
  continue-as-new only the current run's history is open; the closed ones move to retained.
- **retained storage**: each run that closed within the year, its whole size for the
  retention period (charged in full to this year, though part may fall after it).
- **carried into the next year** (information, not in the total): a run still open at the
  year's end starts the next year at its full size — its active storage over the next year
  is at least that size × 8,760 h. Continuing-as-new resets it; without it a member's
  later years cost more than its first.

Not measured: whatever else Cloud stores per workflow (mutable state, visibility records);
the figure is the history's bytes only. GB here is 10⁹ bytes (the larger charge of the two
readings; 2³⁰ would be 7 % less).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import History
from temporalio.client import WorkflowHistory

USD_PER_ACTION = 50.0 / 1_000_000  # first tier of pay-as-you-go actions
USD_PER_ACTIVE_GB_HOUR = 0.042
USD_PER_RETAINED_GB_HOUR = 0.00105
RETENTION = timedelta(days=30)  # a new Cloud namespace's default retention period
GB = 1_000_000_000
HOURS_PER_YEAR = 365 * 24
TARGET_USD = 0.005  # per member-year (issue 14)

CLOSING = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
}


@dataclass
class Dollars:
    """One member-year (or a sum of them: ``members``)."""

    actions: int
    active_gb_hours: float
    retained_gb_hours: float
    carried_bytes: int  # the open run's size at the year's end
    members: int = 1

    @property
    def actions_usd(self) -> float:
        return self.actions * USD_PER_ACTION

    @property
    def active_usd(self) -> float:
        return self.active_gb_hours * USD_PER_ACTIVE_GB_HOUR

    @property
    def retained_usd(self) -> float:
        return self.retained_gb_hours * USD_PER_RETAINED_GB_HOUR

    @property
    def total_usd(self) -> float:
        return self.actions_usd + self.active_usd + self.retained_usd

    @property
    def carried_usd(self) -> float:
        """The least active storage of the next year, if the open run is not continued-as-new."""
        return self.carried_bytes / GB * HOURS_PER_YEAR * USD_PER_ACTIVE_GB_HOUR

    @property
    def mean_active_bytes(self) -> float:
        """The open history's time-weighted mean size over the year, per member."""
        return self.active_gb_hours * GB / HOURS_PER_YEAR / self.members

    def per_member(self) -> "Dollars":
        n = self.members
        return Dollars(round(self.actions / n), self.active_gb_hours / n, self.retained_gb_hours / n,
                       round(self.carried_bytes / n))

    def __add__(self, other: "Dollars") -> "Dollars":
        return Dollars(self.actions + other.actions, self.active_gb_hours + other.active_gb_hours,
                       self.retained_gb_hours + other.retained_gb_hours, self.carried_bytes + other.carried_bytes,
                       self.members + other.members)


def _when(event) -> datetime:
    return event.event_time.ToDatetime(tzinfo=timezone.utc)


def member_year(histories: Iterable[WorkflowHistory], actions: int, year_end: datetime,
                retention: timedelta = RETENTION) -> Dollars:
    """The dollars of one member's year from all its runs (oldest first), ending at ``year_end``."""
    active = retained = 0.0  # byte-hours
    carried = 0
    for history in histories:
        events = list(history.events)
        if not events:
            continue
        closing = next((e for e in events if e.event_type in CLOSING), None)
        closed_at = _when(closing) if closing is not None else None
        open_until = min(closed_at, year_end) if closed_at is not None else year_end
        size = size_at_end = 0
        for event in events:
            # The event's share of the serialized History (tag and length prefix included).
            event_bytes = History(events=[event]).ByteSize()
            size += event_bytes
            hours = (open_until - _when(event)).total_seconds() / 3600
            if hours > 0:
                active += event_bytes * hours
                size_at_end += event_bytes
        if closed_at is not None and closed_at <= year_end:
            retained += size * retention.total_seconds() / 3600
        else:  # open at the year's end: the next year starts with it
            carried += size_at_end
    return Dollars(actions, active / GB, retained / GB, carried)
