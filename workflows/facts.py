"""The facts a member's state is made of: orders, subscriptions, churn signs, profile.

Each fact is either keyed (an order is the same order however often it arrives)
or last-writer-wins on a ``Stamp`` — ``(occurred_at, event_id)`` — so a duplicate
changes nothing and any delivery order of the same events gives the same facts.
The rules that read them live in ``lifecycle`` (stage, F) and ``entries``.
Deterministic code only: imported inside the workflow sandbox.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from workflows import events as ev
from workflows.events import Channel, SalesChannel

MAX_INTERVALS = 8  # interval settings kept per subscription; older ones are folded into the S12 chain
MAX_STATUS_CHANGES = 12  # per subscription: enough to know its status at any kept purchase


class SubscriptionStatus(StrEnum):
    NONE = "none"
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"


class _Fact(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Stamp(_Fact):
    """Orders last-writer-wins updates; ties on time break on the event id."""

    at: datetime
    event_id: str

    def newer_than(self, other: "Stamp | None") -> bool:
        return other is None or (self.at, self.event_id) > (other.at, other.event_id)


class OrderRecord(_Fact):
    order_id: str
    is_sample: bool = False
    placed_at: datetime | None = None  # None: only its shipment or cancellation is known (held)
    main_sku: str | None = None
    cross_sku: str | None = None  # the first cross line's: what S10 asks after
    trial_sku: str | None = None  # the first trial line's: what S02 leads on from
    main_supply_days: int = 0  # days_supply × quantity of its main line
    supply_days: int = 0  # of the sample, or of the longest line of a trial-only order
    roles: frozenset[ev.LineRole] = frozenset()
    subscription_id: str | None = None
    revenue: int = 0
    shipped_at: datetime | None = None
    cancelled_at: datetime | None = None

    @property
    def counts(self) -> bool:
        return self.placed_at is not None and self.cancelled_at is None

    @property
    def is_main_purchase(self) -> bool:
        return self.counts and not self.is_sample and ev.LineRole.MAIN in self.roles

    @property
    def is_trial(self) -> bool:
        return self.counts and not self.is_sample and self.roles == {ev.LineRole.TRIAL}

    @property
    def has_cross(self) -> bool:
        return self.counts and ev.LineRole.CROSS in self.roles

    @property
    def anchor(self) -> datetime:
        assert self.placed_at is not None
        return self.shipped_at or self.placed_at

    @property
    def run_out_at(self) -> datetime:
        return self.anchor + timedelta(days=self.main_supply_days or self.supply_days)


class Chain(_Fact):
    """A 'not again within N days' rule (S08, S09, S12) folded over candidates no longer kept.

    Candidates at or before ``through`` are folded in, in time order; ``last_entry`` is
    the newest of them that entered the scenario, so the spacing of what is still kept
    continues exactly where the folded part left off.
    """

    through: datetime | None = None
    last_entry: datetime | None = None

    def fold(self, moment: datetime, gap: timedelta) -> "Chain":
        entered = self.last_entry is None or moment >= self.last_entry + gap
        return Chain(
            through=moment if self.through is None else max(self.through, moment),
            last_entry=moment if entered else self.last_entry,
        )


class BroadcastFact(_Fact):
    """A run of a broadcast that reached the member (``broadcast_requested``), keyed by
    (broadcast, run): a duplicate is the same fact."""

    broadcast: str
    run: str
    at: datetime
    template: str
    channel: Channel | None = None
    holdout_percent: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.broadcast, self.run)


class ArchivedOrders(_Fact):
    """What the rules still need of the orders no longer kept in full."""

    main_purchases: int = 0
    cross_purchases: int = 0
    revenue: int = 0
    first_main_at: datetime | None = None
    last_cross_at: datetime | None = None


class IntervalChange(_Fact):
    stamp: Stamp
    interval_days: int


class StatusChange(_Fact):
    stamp: Stamp
    status: SubscriptionStatus


class Subscription(_Fact):
    subscription_id: str
    sku: str | None = None
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE
    status_stamp: Stamp | None = None
    started_at: datetime | None = None
    last_paused_at: datetime | None = None
    # The newest interval settings, oldest first; kept so that "lengthened" is the same
    # whatever order the changes arrive in.
    intervals: tuple[IntervalChange, ...] = ()
    # The newest status changes, oldest first: the status as of a purchase (S06).
    changes: tuple[StatusChange, ...] = ()

    @property
    def interval_days(self) -> int | None:
        return self.intervals[-1].interval_days if self.intervals else None

    def lengthenings(self) -> list[datetime]:
        """Every change to a longer interval: each is a churn sign (SPEC §4, S12)."""
        pairs = zip(self.intervals, self.intervals[1:])
        return [b.stamp.at for a, b in pairs if b.interval_days > a.interval_days]

    @property
    def lengthened_at(self) -> datetime | None:
        return max(self.lengthenings(), default=None)

    def status_at(self, moment: datetime) -> SubscriptionStatus | None:
        """The status as of ``moment``; None if the subscription had not started then."""
        before = [c for c in self.changes if c.stamp.at <= moment]
        if before:
            return before[-1].status
        if not self.changes and self.started_at is not None and self.started_at <= moment:
            return self.status  # a state carried from before status changes were kept
        return None

    def with_interval(self, change: IntervalChange) -> "Subscription":
        if any(c.stamp == change.stamp for c in self.intervals):
            return self
        kept = sorted((*self.intervals, change), key=lambda c: (c.stamp.at, c.stamp.event_id))
        return self.model_copy(update={"intervals": tuple(kept)})

    def with_status(self, change: StatusChange) -> "Subscription":
        if any(c.stamp == change.stamp for c in self.changes):
            return self
        kept = sorted((*self.changes, change), key=lambda c: (c.stamp.at, c.stamp.event_id))
        update: dict = {"changes": tuple(kept[-MAX_STATUS_CHANGES:])}
        if change.stamp.newer_than(self.status_stamp):
            update |= {"status": change.status, "status_stamp": change.stamp}
        return self.model_copy(update=update)


class ChurnSign(_Fact):
    at: datetime
    signal: str  # cancel_page_viewed, skip_requested, complaint, interval_lengthened …


class Profile(_Fact):
    sales_channel: SalesChannel = SalesChannel.ONLINE
    timezone: str = "Asia/Tokyo"
    reachable: frozenset[Channel] = frozenset()
    stamp: Stamp | None = None  # the newest registration that set every field (before partial updates)
    # Per field: the registration that last set it, so partial updates in any order agree.
    stamps: dict[str, Stamp] = {}
    # Per channel: the registration that last set the contact field reaching it (the ingress's
    # word, from member_contacts' own stamps); when known it decides, not the event's stamp.
    reach_stamps: dict[Channel, Stamp] = {}

    def stamp_of(self, field: str) -> Stamp | None:
        return self.stamps.get(field, self.stamp)
