"""MemberState and ``apply(state, event)``: the pure fold of a member's events (SPEC §3).

The state keeps *facts* (``workflows.facts``: orders keyed by id, subscriptions
keyed by id, consent per channel) and derives stage, F and run-outs from them. A
duplicate changes nothing and any delivery order of the same events folds to the
same state. A shipment or cancellation that arrives before its order is kept on an
order record without ``placed_at`` (held) and counts once the order arrives.

The state does not grow with the member's age. Only the newest ``MAX_ORDERS``
placed orders and ``MAX_SIGNS`` churn signs are kept in full; older ones are
folded, oldest first, into exact summaries: F, revenue and cross purchases in
``ArchivedOrders``, and the spacing of S08 / S09 / S12 ("not again within N days")
in a ``Chain`` per scenario, so the entries derived from what is kept are the
same as if nothing had been folded.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from workflows import events as ev
from workflows.events import Channel
from workflows.facts import (
    MAX_INTERVALS,
    ArchivedOrders,
    BroadcastFact,
    Chain,
    ChurnSign,
    IntervalChange,
    OrderRecord,
    Profile,
    Stamp,
    StatusChange,
    Subscription,
    SubscriptionStatus,
)
from workflows.touches import TouchRecord

__all__ = [
    "MemberState", "Stage", "SubscriptionStatus", "OrderRecord", "Subscription", "apply",
    "advance_clock", "new_member", "record_touches",
]

DORMANT_AFTER = timedelta(days=90)
MAX_ORDERS = 24
MAX_HELD = 24
MAX_SIGNS = 12
MAX_TOUCHES = 100  # the first release's ledger (record_touches)
# A broadcast's run is kept (and its touch's outcome with it, ``ledger``) this long after it
# was requested; a duplicate of an older one changes nothing. At most MAX_BROADCASTS are kept.
BROADCAST_KEEP = timedelta(days=90)
MAX_BROADCASTS = 64
# "Not again within N days" (seed): S08 once per 180 days, S09 not within 90, S12 not within 30.
LOYALTY_EVERY = timedelta(days=180)
CROSS_SELL_EVERY = timedelta(days=90)
CHURN_FOLLOW_UP_EVERY = timedelta(days=30)
LOYALTY, CROSS_SELL, CHURN = "S08", "S09", "S12"


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


class MemberState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    member_id: str
    first_seen_at: datetime | None = None
    as_of: datetime | None = None  # the latest moment the state has seen: events or the clock
    profile: Profile = Profile()
    consent: dict[Channel, bool] = {}
    consent_stamps: dict[Channel, Stamp] = {}
    orders: dict[str, OrderRecord] = {}
    archived: ArchivedOrders = ArchivedOrders()
    subscriptions: dict[str, Subscription] = {}
    churn_signals: tuple[ChurnSign, ...] = ()  # oldest first; older ones folded into chains[S12]
    chains: dict[str, Chain] = {}  # S08, S09, S12: the spacing of what is no longer kept
    broadcasts: tuple[BroadcastFact, ...] = ()  # the runs of the last BROADCAST_KEEP, oldest first
    erased_at: datetime | None = None
    # The touch ledger: every outcome the scenarios may still ask about (the keys of each
    # entry that can still be derived) and the recent ones; the full timeline is in
    # PostgreSQL's touches table. Kept by ``ledger.record``.
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

    def chain(self, scenario: str) -> Chain:
        return self.chains.get(scenario) or Chain()

    def live_broadcasts(self) -> tuple[BroadcastFact, ...]:
        """The broadcast runs a rule may still ask about: those of the last BROADCAST_KEEP."""
        if self.as_of is None:
            return self.broadcasts
        return tuple(b for b in self.broadcasts if b.at >= self.as_of - BROADCAST_KEEP)

    def churn_signs(self) -> list[ChurnSign]:
        """Every churn sign not yet folded: signals and interval lengthenings, oldest first."""
        through = self.chain(CHURN).through
        signs = {(s.at, s.signal) for s in self.churn_signals}
        for sub in self.subscriptions.values():
            signs |= {(at, "interval_lengthened") for at in sub.lengthenings()}
        return [ChurnSign(at=at, signal=signal) for at, signal in sorted(signs)
                if through is None or at > through]

    @property
    def subscription_status(self) -> SubscriptionStatus:
        statuses = {s.status for s in self.subscriptions.values()}
        for status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAUSED, SubscriptionStatus.CANCELLED):
            if status in statuses:
                return status
        return SubscriptionStatus.NONE

    def subscribed_at(self, moment: datetime) -> bool:
        """Whether a 定期 subscription was running (active or paused) at ``moment``."""
        running = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAUSED)
        return any(s.status_at(moment) in running for s in self.subscriptions.values())

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
    """Add touch outcomes keeping the newest MAX_TOUCHES: the first release's ledger, for members
    whose run started before ``ledger.record`` replaced it."""
    if not records:
        return state
    return state.model_copy(update={"touches": (state.touches + tuple(records))[-MAX_TOUCHES:]})


def apply(state: MemberState, event: ev.MemberEvent,
          loyalty: tuple[int, timedelta] = (4, LOYALTY_EVERY)) -> MemberState:
    """Fold one event into the state. Pure: no I/O, no clock.

    ``loyalty`` is S08's rule in force (from which main purchase, how far apart): the
    purchases folded out of the state continue its spacing (``Rules.loyalty()``).
    """
    if state.erased_at is not None:
        return state
    at = event.occurred_at
    update: dict = {"as_of": _latest(state.as_of, at)}
    if not isinstance(event, ev.BroadcastRequested):  # a broadcast is not the member's doing
        update["first_seen_at"] = _earliest(state.first_seen_at, at)
    update.update(_FOLDS[type(event)](state, event))
    return _compact(state.model_copy(update=update), loyalty)


def _stamp(event: ev.MemberEvent) -> Stamp:
    return Stamp(at=event.occurred_at, event_id=event.event_id)


def _member_registered(state: MemberState, event: ev.MemberRegistered) -> dict:
    """A partial update: each field it names wins if this registration is its newest setter."""
    stamp, profile = _stamp(event), state.profile
    if event.reach:
        profile = _with_reach(profile, event.reach)
    given = {"sales_channel": event.sales_channel, "timezone": event.timezone,
             "reachable": None if event.reach else event.reachable}
    changes = {field: value for field, value in given.items()
               if value is not None and stamp.newer_than(profile.stamp_of(field))}
    update: dict = {} if profile is state.profile else {"profile": profile}
    if changes:
        stamps = {f: s for f in given if (s := profile.stamp_of(f)) is not None}
        stamps |= {field: stamp for field in changes}
        update["profile"] = profile.model_copy(update=changes | {"stamps": stamps})
    consent, stamps = dict(state.consent), dict(state.consent_stamps)
    for name, granted in (event.consent.given() if event.consent else {}).items():
        channel = Channel(name)
        if stamp.newer_than(stamps.get(channel)):
            consent[channel], stamps[channel] = granted, stamp
    return update | {"consent": consent, "consent_stamps": stamps}


def _with_reach(profile: Profile, reach: dict[Channel, ev.Reach]) -> Profile:
    """Per channel, last writer wins on the stamp of the contact field that reaches it."""
    reachable, stamps = set(profile.reachable), dict(profile.reach_stamps)
    for channel, known in reach.items():
        stamp = Stamp(at=known.at, event_id=known.event_id)
        if stamp.newer_than(stamps.get(channel)):
            stamps[channel] = stamp
            (reachable.add if known.reachable else reachable.discard)(channel)
    return profile.model_copy(update={"reachable": frozenset(reachable), "reach_stamps": stamps})


def _consent_changed(state: MemberState, event: ev.ConsentChanged) -> dict:
    channel, stamp = Channel(event.channel), _stamp(event)
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
    cross = next((line for line in event.lines if line.role is ev.LineRole.CROSS), None)
    trial = next((line for line in event.lines if line.role is ev.LineRole.TRIAL), None)
    return _with_order(state, held.model_copy(update={
        "placed_at": event.occurred_at,
        "main_sku": main.sku if main else None,
        "cross_sku": cross.sku if cross else None,
        "trial_sku": trial.sku if trial else None,
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


def _with_subscription(state: MemberState, sub: Subscription) -> dict:
    return {"subscriptions": state.subscriptions | {sub.subscription_id: sub}}


def _with_status(state: MemberState, event, status: SubscriptionStatus, **extra) -> dict:
    sub = _subscription(state, event.subscription_id).model_copy(update=extra)
    return _with_subscription(state, sub.with_status(StatusChange(stamp=_stamp(event), status=status)))


def _subscription_started(state: MemberState, event: ev.SubscriptionStarted) -> dict:
    sub = _subscription(state, event.subscription_id)
    sub = sub.with_interval(IntervalChange(stamp=_stamp(event), interval_days=event.interval_days))
    state = state.model_copy(update=_with_subscription(state, sub))
    return _with_status(state, event, SubscriptionStatus.ACTIVE, sku=event.sku,
                        started_at=_earliest(sub.started_at, event.occurred_at))


def _subscription_paused(state: MemberState, event: ev.SubscriptionPaused) -> dict:
    paused = _latest(_subscription(state, event.subscription_id).last_paused_at, event.occurred_at)
    return _with_status(state, event, SubscriptionStatus.PAUSED, last_paused_at=paused)


def _subscription_interval_changed(state: MemberState, event: ev.SubscriptionIntervalChanged) -> dict:
    sub = _subscription(state, event.subscription_id)
    return _with_subscription(state, sub.with_interval(
        IntervalChange(stamp=_stamp(event), interval_days=event.interval_days)))


def _churn_signal(state: MemberState, event: ev.ChurnSignal) -> dict:
    sign = ChurnSign(at=event.occurred_at, signal=event.signal)
    through = state.chain(CHURN).through
    if sign in state.churn_signals or (through is not None and sign.at <= through):
        return {}
    return {"churn_signals": tuple(sorted((*state.churn_signals, sign), key=lambda s: (s.at, s.signal)))}


def _member_erased(state: MemberState, event: ev.MemberErased) -> dict:
    return {"erased_at": event.occurred_at}


def _broadcast_requested(state: MemberState, event: ev.BroadcastRequested) -> dict:
    fact = BroadcastFact(broadcast=event.broadcast, run=event.run, at=event.occurred_at,
                         template=event.template, channel=event.channel, holdout_percent=event.holdout_percent)
    if any(b.key == fact.key for b in state.broadcasts):
        return {}
    return {"broadcasts": tuple(sorted((*state.broadcasts, fact), key=lambda b: (b.at, b.key)))}


_FOLDS = {
    ev.MemberRegistered: _member_registered,
    ev.ConsentChanged: _consent_changed,
    ev.SampleRequested: _sample_requested,
    ev.OrderPlaced: _order_placed,
    ev.OrderShipped: _order_shipped,
    ev.OrderCancelled: _order_cancelled,
    ev.SubscriptionStarted: _subscription_started,
    ev.SubscriptionPaused: _subscription_paused,
    ev.SubscriptionResumed: lambda s, e: _with_status(s, e, SubscriptionStatus.ACTIVE),
    ev.SubscriptionCancelled: lambda s, e: _with_status(s, e, SubscriptionStatus.CANCELLED),
    ev.SubscriptionIntervalChanged: _subscription_interval_changed,
    ev.ChurnSignal: _churn_signal,
    ev.MemberErased: _member_erased,
    ev.BroadcastRequested: _broadcast_requested,
}


# --- keeping the state bounded, exactly ---------------------------------------------


def _compact(state: MemberState, loyalty: tuple[int, timedelta] = (4, LOYALTY_EVERY)) -> MemberState:
    return _compact_broadcasts(_compact_signs(_compact_orders(state, loyalty)))


def _compact_broadcasts(state: MemberState) -> MemberState:
    """Let go of broadcast runs older than BROADCAST_KEEP (their touches were decided long ago)."""
    if not state.broadcasts:
        return state
    kept = state.live_broadcasts()[-MAX_BROADCASTS:]
    return state if kept == state.broadcasts else state.model_copy(update={"broadcasts": kept})


def _compact_orders(state: MemberState, loyalty: tuple[int, timedelta]) -> MemberState:
    """Fold the oldest placed orders into the summaries once there are more than MAX_ORDERS."""
    placed = sorted((o for o in state.orders.values() if o.placed_at is not None),
                    key=lambda o: (o.placed_at, o.order_id))
    held = sorted((o for o in state.orders.values() if o.placed_at is None),
                  key=lambda o: (o.shipped_at or o.cancelled_at, o.order_id))  # type: ignore[arg-type]
    dropped = placed[: max(0, len(placed) - MAX_ORDERS)]
    dropped_held = held[: max(0, len(held) - MAX_HELD)]
    if not dropped and not dropped_held:
        return state
    archived, chains = state.archived, dict(state.chains)
    for order in dropped:  # oldest first, so each chain folds in time order
        archived, chains = _archive(archived, chains, order, loyalty)
    gone = {o.order_id for o in (*dropped, *dropped_held)}
    keep = {k: o for k, o in state.orders.items() if k not in gone}
    return state.model_copy(update={"orders": keep, "archived": archived, "chains": chains})


def _archive(archived: ArchivedOrders, chains: dict, order: OrderRecord,
             loyalty: tuple[int, timedelta]) -> tuple[ArchivedOrders, dict]:
    if not order.counts or order.is_sample:
        return archived, chains
    at = order.placed_at
    assert at is not None
    if order.is_main_purchase:
        f = archived.main_purchases + 1
        loyal_from, loyal_every = loyalty
        if f >= loyal_from:  # S08: a main purchase that brings F to 4 (the shop's N) or more
            chains[LOYALTY] = chains.get(LOYALTY, Chain()).fold(at, loyal_every)
        if f >= 3 and archived.cross_purchases == 0 and not order.has_cross:  # S09
            chains[CROSS_SELL] = chains.get(CROSS_SELL, Chain()).fold(at, CROSS_SELL_EVERY)
        archived = archived.model_copy(update={
            "main_purchases": f, "first_main_at": _earliest(archived.first_main_at, at)})
    return archived.model_copy(update={
        "cross_purchases": archived.cross_purchases + int(order.has_cross),
        "last_cross_at": _latest(archived.last_cross_at, at) if order.has_cross else archived.last_cross_at,
        "revenue": archived.revenue + order.revenue,
    }), chains


def _compact_signs(state: MemberState) -> MemberState:
    """Fold the oldest churn signs into the S12 chain once there are too many to keep."""
    signs = state.churn_signs()
    cuts = [signs[len(signs) - MAX_SIGNS - 1].at] if len(signs) > MAX_SIGNS else []
    cuts += [s.intervals[-MAX_INTERVALS].stamp.at for s in state.subscriptions.values()
             if len(s.intervals) > MAX_INTERVALS]
    if not cuts:
        return state
    through = max(cuts)
    chain = state.chain(CHURN)
    for sign in signs:
        if sign.at <= through:
            chain = chain.fold(sign.at, CHURN_FOLLOW_UP_EVERY)
    chain = chain.model_copy(update={"through": _latest(chain.through, through)})
    subscriptions = {k: _keep_intervals_after(s, through) for k, s in state.subscriptions.items()}
    return state.model_copy(update={
        "churn_signals": tuple(s for s in state.churn_signals if s.at > through),
        "subscriptions": subscriptions,
        "chains": state.chains | {CHURN: chain},
    })


def _keep_intervals_after(sub: Subscription, through: datetime) -> Subscription:
    """Intervals set after ``through``, and the one in force then (what the next is compared with)."""
    before = [c for c in sub.intervals if c.stamp.at <= through]
    kept = tuple(before[-1:]) + tuple(c for c in sub.intervals if c.stamp.at > through)
    return sub if kept == sub.intervals else sub.model_copy(update={"intervals": kept})


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)
