"""MemberState and ``apply(state, event)``: the pure fold of a member's events (SPEC §3).

The state keeps *facts* (orders keyed by id, subscriptions keyed by id, consent
per channel) and derives stage, F and run-outs from them. Every fact is either
keyed (an order is the same order however often it arrives) or last-writer-wins
on ``(occurred_at, event_id)``, so a duplicate changes nothing and any delivery
order of the same events folds to the same state. A shipment or cancellation
that arrives before its order is kept on an order record without ``placed_at``
(held) and counts once the order arrives.

To keep the carried state small, only the newest ``MAX_ORDERS`` placed orders
are kept in full; older ones are summarised in ``ArchivedOrders``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from workflows import events as ev
from workflows.events import Channel, SalesChannel
from workflows.touches import TouchRecord

DORMANT_AFTER = timedelta(days=90)
MAX_ORDERS = 24
MAX_HELD = 24
MAX_TOUCHES = 100
MAX_INTERVALS = 6
MAX_CHURN_SIGNALS = 5


class Stage(StrEnum):
    PROSPECT = "prospect"
    SAMPLE = "sample"
    TRIAL = "trial"
    F1 = "f1"
    F2 = "f2"
    F3 = "f3"
    ESTABLISHED = "established"
    DORMANT = "dormant"
    ERASED = "erased"


class SubscriptionStatus(StrEnum):
    NONE = "none"
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"


class _State(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Stamp(_State):
    """Orders last-writer-wins updates; ties on time break on the event id."""

    at: datetime
    event_id: str

    def newer_than(self, other: "Stamp | None") -> bool:
        return other is None or (self.at, self.event_id) > (other.at, other.event_id)


class OrderRecord(_State):
    order_id: str
    is_sample: bool = False
    placed_at: datetime | None = None  # None: only its shipment or cancellation is known (held)
    main_sku: str | None = None
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


class ArchivedOrders(_State):
    """What the rules still need of orders dropped from the carried state."""

    main_purchases: int = 0
    cross_purchases: int = 0
    revenue: int = 0
    first_main_at: datetime | None = None


class IntervalChange(_State):
    stamp: Stamp
    interval_days: int


class Subscription(_State):
    subscription_id: str
    sku: str | None = None
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE
    status_stamp: Stamp | None = None
    started_at: datetime | None = None
    last_paused_at: datetime | None = None
    # The newest interval settings, oldest first; kept as a short history so that
    # "lengthened" is the same whatever order the changes arrive in.
    intervals: tuple[IntervalChange, ...] = ()

    @property
    def interval_days(self) -> int | None:
        return self.intervals[-1].interval_days if self.intervals else None

    @property
    def lengthened_at(self) -> datetime | None:
        """The latest change to a longer interval: a churn sign (SPEC §4, S12)."""
        pairs = zip(self.intervals, self.intervals[1:])
        return max((b.stamp.at for a, b in pairs if b.interval_days > a.interval_days), default=None)

    def with_interval(self, change: IntervalChange) -> "Subscription":
        if any(c.stamp == change.stamp for c in self.intervals):
            return self
        kept = sorted((*self.intervals, change), key=lambda c: (c.stamp.at, c.stamp.event_id))
        return self.model_copy(update={"intervals": tuple(kept[-MAX_INTERVALS:])})


class ChurnSign(_State):
    at: datetime
    signal: str  # cancel_page_viewed, skip_requested, complaint, …


class Profile(_State):
    sales_channel: SalesChannel = SalesChannel.ONLINE
    timezone: str = "Asia/Tokyo"
    reachable: frozenset[Channel] = frozenset()
    stamp: Stamp | None = None


class MemberState(_State):
    member_id: str
    first_seen_at: datetime | None = None
    as_of: datetime | None = None  # the latest moment the state has seen: events or the clock
    profile: Profile = Profile()
    consent: dict[Channel, bool] = {}
    consent_stamps: dict[Channel, Stamp] = {}
    orders: dict[str, OrderRecord] = {}
    archived: ArchivedOrders = ArchivedOrders()
    subscriptions: dict[str, Subscription] = {}
    churn_signals: tuple[ChurnSign, ...] = ()  # the newest MAX_CHURN_SIGNALS, oldest first
    erased_at: datetime | None = None
    # The latest touch outcomes (the full timeline is in PostgreSQL's touches table).
    touches: tuple[TouchRecord, ...] = ()

    # --- derived -----------------------------------------------------------------
    @property
    def registered_at(self) -> datetime | None:
        """A member counts as registered at its first event, registration or not (SPEC §2)."""
        return self.first_seen_at

    def placed(self) -> list[OrderRecord]:
        """Counted orders (not samples), oldest first."""
        return sorted(
            (o for o in self.orders.values() if o.counts and not o.is_sample),
            key=lambda o: (o.placed_at, o.order_id),
        )

    def main_purchases(self) -> list[OrderRecord]:
        return [o for o in self.placed() if o.is_main_purchase]

    @property
    def purchase_count(self) -> int:
        """F: main purchases that count (SPEC §3)."""
        return self.archived.main_purchases + len(self.main_purchases())

    def latest_main_purchase(self) -> OrderRecord | None:
        mains = self.main_purchases()
        return mains[-1] if mains else None

    def latest_sample(self) -> OrderRecord | None:
        samples = [o for o in self.orders.values() if o.is_sample and o.counts]
        return max(samples, key=lambda o: (o.placed_at, o.order_id), default=None)

    def cross_purchases(self) -> list[OrderRecord]:
        return [o for o in self.placed() if o.has_cross]

    @property
    def subscription_status(self) -> SubscriptionStatus:
        statuses = {s.status for s in self.subscriptions.values()}
        for status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAUSED, SubscriptionStatus.CANCELLED):
            if status in statuses:
                return status
        return SubscriptionStatus.NONE

    def dormant_since(self) -> datetime | None:
        latest = self.latest_main_purchase()
        return latest.placed_at + DORMANT_AFTER if latest and latest.placed_at else None

    @property
    def stage(self) -> Stage:
        if self.erased_at is not None:
            return Stage.ERASED
        f = self.purchase_count
        if f >= 1:
            since = self.dormant_since()
            if since is not None and self.as_of is not None and self.as_of >= since:
                return Stage.DORMANT
            return (Stage.F1, Stage.F2, Stage.F3)[f - 1] if f <= 3 else Stage.ESTABLISHED
        if any(o.is_trial for o in self.orders.values()):
            return Stage.TRIAL
        if self.latest_sample() is not None:
            return Stage.SAMPLE
        return Stage.PROSPECT

    def next_stage_change(self) -> datetime | None:
        """When the clock alone will change the stage (dormancy), if it will."""
        since = self.dormant_since()
        if self.erased_at is None and since is not None and (self.as_of is None or self.as_of < since):
            return since
        return None

    def can_reach(self, channel: Channel) -> bool:
        return channel in self.profile.reachable and self.consent.get(channel, False)


def new_member(member_id: str) -> MemberState:
    return MemberState(member_id=member_id)


def advance_clock(state: MemberState, now: datetime) -> MemberState:
    """Let time pass: dormancy is a matter of the clock, not of an event."""
    if state.as_of is not None and state.as_of >= now:
        return state
    return state.model_copy(update={"as_of": now})


def record_touches(state: MemberState, records: list[TouchRecord]) -> MemberState:
    """Add touch outcomes to the state's timeline, keeping the newest MAX_TOUCHES."""
    if not records:
        return state
    return state.model_copy(update={"touches": (state.touches + tuple(records))[-MAX_TOUCHES:]})


def apply(state: MemberState, event: ev.MemberEvent) -> MemberState:
    """Fold one event into the state. Pure: no I/O, no clock."""
    if state.erased_at is not None:
        return state
    at = event.occurred_at
    update: dict = {
        "first_seen_at": _earliest(state.first_seen_at, at),
        "as_of": _latest(state.as_of, at),
    }
    update.update(_FOLDS[type(event)](state, event))
    return _compact(state.model_copy(update=update))


def _member_registered(state: MemberState, event: ev.MemberRegistered) -> dict:
    stamp = Stamp(at=event.occurred_at, event_id=event.event_id)
    update: dict = {}
    if stamp.newer_than(state.profile.stamp):
        update["profile"] = Profile(
            sales_channel=event.sales_channel,
            timezone=event.timezone,
            reachable=event.reachable or frozenset(),
            stamp=stamp,
        )
    consent, stamps = dict(state.consent), dict(state.consent_stamps)
    for channel in ev.CONSENT_CHANNELS:
        if stamp.newer_than(stamps.get(channel)):
            consent[channel] = getattr(event.consent, channel.value)
            stamps[channel] = stamp
    return update | {"consent": consent, "consent_stamps": stamps}


def _consent_changed(state: MemberState, event: ev.ConsentChanged) -> dict:
    channel, stamp = Channel(event.channel), Stamp(at=event.occurred_at, event_id=event.event_id)
    if not stamp.newer_than(state.consent_stamps.get(channel)):
        return {}
    return {
        "consent": state.consent | {channel: event.granted},
        "consent_stamps": state.consent_stamps | {channel: stamp},
    }


def _order(state: MemberState, order_id: str) -> OrderRecord:
    return state.orders.get(order_id) or OrderRecord(order_id=order_id)


def _with_order(state: MemberState, order: OrderRecord) -> dict:
    return {"orders": state.orders | {order.order_id: order}}


def _sample_requested(state: MemberState, event: ev.SampleRequested) -> dict:
    held = _order(state, event.order_id)
    if held.placed_at is not None:
        return {}
    return _with_order(state, held.model_copy(update={
        "is_sample": True, "placed_at": event.occurred_at, "main_sku": event.sku,
        "supply_days": event.days_supply,
    }))


def _order_placed(state: MemberState, event: ev.OrderPlaced) -> dict:
    held = _order(state, event.order_id)
    if held.placed_at is not None:
        return {}
    main = next((line for line in event.lines if line.role is ev.LineRole.MAIN), None)
    return _with_order(state, held.model_copy(update={
        "placed_at": event.occurred_at,
        "main_sku": main.sku if main else None,
        "main_supply_days": main.days_supply * main.quantity if main else 0,
        "supply_days": max(line.days_supply * line.quantity for line in event.lines),
        "roles": frozenset(line.role for line in event.lines),
        "subscription_id": event.subscription_id,
        "revenue": sum(line.unit_price * line.quantity for line in event.lines),
    }))


def _order_shipped(state: MemberState, event: ev.OrderShipped) -> dict:
    order = _order(state, event.order_id)
    shipped_at = _earliest(order.shipped_at, event.occurred_at)
    return _with_order(state, order.model_copy(update={"shipped_at": shipped_at}))


def _order_cancelled(state: MemberState, event: ev.OrderCancelled) -> dict:
    order = _order(state, event.order_id)
    cancelled_at = _earliest(order.cancelled_at, event.occurred_at)
    return _with_order(state, order.model_copy(update={"cancelled_at": cancelled_at}))


def _subscription(state: MemberState, subscription_id: str) -> Subscription:
    return state.subscriptions.get(subscription_id) or Subscription(subscription_id=subscription_id)


def _with_status(state: MemberState, event, status: SubscriptionStatus, **extra) -> dict:
    sub = _subscription(state, event.subscription_id)
    stamp = Stamp(at=event.occurred_at, event_id=event.event_id)
    update = dict(extra)
    if stamp.newer_than(sub.status_stamp):
        update |= {"status": status, "status_stamp": stamp}
    return {"subscriptions": state.subscriptions | {sub.subscription_id: sub.model_copy(update=update)}}


def _subscription_started(state: MemberState, event: ev.SubscriptionStarted) -> dict:
    sub = _subscription(state, event.subscription_id)
    stamp = Stamp(at=event.occurred_at, event_id=event.event_id)
    sub = sub.with_interval(IntervalChange(stamp=stamp, interval_days=event.interval_days))
    state = state.model_copy(update={"subscriptions": state.subscriptions | {sub.subscription_id: sub}})
    return _with_status(state, event, SubscriptionStatus.ACTIVE, sku=event.sku,
                        started_at=_earliest(sub.started_at, event.occurred_at))


def _subscription_interval_changed(state: MemberState, event: ev.SubscriptionIntervalChanged) -> dict:
    sub = _subscription(state, event.subscription_id)
    stamp = Stamp(at=event.occurred_at, event_id=event.event_id)
    changed = sub.with_interval(IntervalChange(stamp=stamp, interval_days=event.interval_days))
    return {"subscriptions": state.subscriptions | {sub.subscription_id: changed}}


def _churn_signal(state: MemberState, event: ev.ChurnSignal) -> dict:
    sign = ChurnSign(at=event.occurred_at, signal=event.signal)
    if sign in state.churn_signals:
        return {}
    signs = sorted((*state.churn_signals, sign), key=lambda s: (s.at, s.signal))
    return {"churn_signals": tuple(signs[-MAX_CHURN_SIGNALS:])}


def _member_erased(state: MemberState, event: ev.MemberErased) -> dict:
    return {"erased_at": event.occurred_at}


_FOLDS = {
    ev.MemberRegistered: _member_registered,
    ev.ConsentChanged: _consent_changed,
    ev.SampleRequested: _sample_requested,
    ev.OrderPlaced: _order_placed,
    ev.OrderShipped: _order_shipped,
    ev.OrderCancelled: _order_cancelled,
    ev.SubscriptionStarted: _subscription_started,
    ev.SubscriptionPaused: lambda s, e: _with_status(
        s, e, SubscriptionStatus.PAUSED,
        last_paused_at=_latest(_subscription(s, e.subscription_id).last_paused_at, e.occurred_at)),
    ev.SubscriptionResumed: lambda s, e: _with_status(s, e, SubscriptionStatus.ACTIVE),
    ev.SubscriptionCancelled: lambda s, e: _with_status(s, e, SubscriptionStatus.CANCELLED),
    ev.SubscriptionIntervalChanged: _subscription_interval_changed,
    ev.ChurnSignal: _churn_signal,
    ev.MemberErased: _member_erased,
}


def _compact(state: MemberState) -> MemberState:
    """Summarise the oldest placed orders once there are more than MAX_ORDERS."""
    placed = sorted(
        (o for o in state.orders.values() if o.placed_at is not None),
        key=lambda o: (o.placed_at, o.order_id),
    )
    held = sorted(
        (o for o in state.orders.values() if o.placed_at is None),
        key=lambda o: (o.shipped_at or o.cancelled_at, o.order_id),  # type: ignore[arg-type]
    )
    dropped = placed[: max(0, len(placed) - MAX_ORDERS)] + held[: max(0, len(held) - MAX_HELD)]
    if not dropped:
        return state
    archived = state.archived
    for order in dropped:
        if order.is_main_purchase:
            archived = archived.model_copy(update={
                "main_purchases": archived.main_purchases + 1,
                "first_main_at": _earliest(archived.first_main_at, order.placed_at),
            })
        if order.counts:
            archived = archived.model_copy(update={
                "cross_purchases": archived.cross_purchases + int(order.has_cross),
                "revenue": archived.revenue + order.revenue,
            })
    dropped_ids = {o.order_id for o in dropped}
    keep = {k: o for k, o in state.orders.items() if k not in dropped_ids}
    return state.model_copy(update={"orders": keep, "archived": archived})


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)
