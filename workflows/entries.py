"""Where each scenario is entered: derived from the member's facts, never remembered.

Each function returns the entries of one scenario that still matter (the newest
purchase and the one before it, the current pause, …), each with the moments its
steps are timed from and the exit, if it has happened. Because entries are
derived, a duplicate or late event re-derives the same entries, and the entry of
the next purchase takes over from the previous one on its own. Each entry's
condition is judged as of the event that entered it (the subscription at the
purchase, F before it), not as of today; the spacing rules of S08, S09 and S12
continue from the member's ``Chain`` of what is no longer kept in full.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from workflows.events import SalesChannel
from workflows.facts import Chain
from workflows.lifecycle import (
    CHURN,
    CHURN_FOLLOW_UP_EVERY,
    CROSS_SELL,
    CROSS_SELL_EVERY,
    LOYALTY,
    MemberState,
    OrderRecord,
    SubscriptionStatus,
)
from workflows.rules import DEFAULT_RULES, Rules

REGISTERED_WITHIN = timedelta(days=180)  # S05 (seed)
CROSS_LAPSED_FROM, CROSS_LAPSED_TO = timedelta(days=31), timedelta(days=90)  # S10 (seed)


@dataclass(frozen=True)
class Exit:
    at: datetime
    reason: str


@dataclass(frozen=True)
class Entry:
    """One entry of a member into a scenario."""

    occurrence: str  # stable id of what started it: an order id, a pause, a signal
    moments: dict[str, datetime]  # what its steps are timed from: entry, purchase, shipment, run_out, …
    supply_days: int = 0
    exit: Exit | None = None
    context: dict[str, str] = field(default_factory=dict)


def main_purchase_entry(order: OrderRecord, nxt: OrderRecord | None, next_means: str | None) -> Entry:
    """An entry keyed on a main purchase; ``next_means`` says what the next main purchase does to it."""
    assert order.placed_at is not None
    moments = {"entry": order.placed_at, "purchase": order.placed_at, "anchor": order.anchor,
               "run_out": order.run_out_at}
    if order.shipped_at:
        moments["shipment"] = order.shipped_at
    ends = next_means and nxt and nxt.placed_at
    return Entry(
        occurrence=order.order_id,
        moments=moments,
        supply_days=order.main_supply_days,
        exit=Exit(nxt.placed_at, next_means) if ends else None,  # type: ignore[union-attr,arg-type]
        context={"order_id": order.order_id, "sku": order.main_sku or "",
                 "run_out_date": order.run_out_at.date().isoformat()},
    )


def _mains_with_next(state: MemberState) -> list[tuple[int, OrderRecord, OrderRecord | None]]:
    """(F after the purchase, purchase, the main purchase that followed it), oldest first."""
    mains = state.main_purchases()
    base = state.archived.main_purchases
    return [(base + i + 1, m, mains[i + 1] if i + 1 < len(mains) else None) for i, m in enumerate(mains)]


def _with_exit(entry: Entry, at: datetime | None, reason: str) -> Entry:
    """The earlier of the entry's own exit and this one."""
    if at is None or (entry.exit is not None and entry.exit.at <= at):
        return entry
    return replace(entry, exit=Exit(at, reason))


def _first_after(moments: list[datetime], after: datetime) -> datetime | None:
    return min((m for m in moments if m > after), default=None)


def _spaced(candidates: list[Entry], gap: timedelta, chain: Chain) -> list[Entry]:
    """Entries at least ``gap`` apart, earliest first: 'not if it reached the member recently'.

    The spacing continues from the chain's last entry among candidates no longer kept.
    """
    kept: list[Entry] = []
    last = chain.last_entry
    for entry in sorted(candidates, key=lambda e: (e.moments["entry"], e.occurrence)):
        at = entry.moments["entry"]
        if chain.through is not None and at <= chain.through:
            continue
        if last is None or at >= last + gap:
            kept.append(entry)
            last = at
    return kept


def _later_orders(state: MemberState, after: datetime) -> list[datetime]:
    return [o.placed_at for o in state.placed() if o.placed_at and o.placed_at > after]


def _cross_purchases_at(state: MemberState) -> list[datetime]:
    return [o.placed_at for o in state.cross_purchases() if o.placed_at]


def _bought_main_before(state: MemberState, moment: datetime) -> bool:
    """F > 0 before ``moment``: folded purchases are all older than the kept ones."""
    return state.archived.main_purchases > 0 or any(
        m.placed_at is not None and m.placed_at < moment for m in state.main_purchases())


# --- the twelve ------------------------------------------------------------------------


def sample_to_main(state: MemberState, rules: Rules = DEFAULT_RULES) -> list[Entry]:
    """S01: the latest sample asked for while F = 0; any order exits."""
    sample = state.latest_sample()
    if sample is None or sample.placed_at is None or _bought_main_before(state, sample.placed_at):
        return []
    entry = Entry(
        occurrence=sample.order_id,
        moments={"entry": sample.placed_at, "run_out": sample.run_out_at},
        supply_days=sample.supply_days,
        context={"order_id": sample.order_id, "sku": sample.main_sku or "",
                 "run_out_date": sample.run_out_at.date().isoformat()},
    )
    return [_with_exit(entry, _first_after(_later_orders(state, sample.placed_at), sample.placed_at),
                       "exit:order_placed")]


def trial_to_main(state: MemberState, rules: Rules = DEFAULT_RULES) -> list[Entry]:
    """S02: the latest trial order placed while F = 0; a main purchase exits."""
    trials = [o for o in state.placed() if o.is_trial]
    if not trials:
        return []
    trial = trials[-1]
    assert trial.placed_at is not None
    if _bought_main_before(state, trial.placed_at):
        return []
    entry = Entry(
        occurrence=trial.order_id,
        moments={"entry": trial.placed_at, "run_out": trial.run_out_at},
        supply_days=trial.supply_days,
        context={"order_id": trial.order_id, "sku": trial.trial_sku or "",
                 "run_out_date": trial.run_out_at.date().isoformat()},
    )
    mains = [m.placed_at for m in state.main_purchases() if m.placed_at]
    return [_with_exit(entry, _first_after(mains, trial.placed_at), "exit:main_purchase")]


def _nth_purchase(state: MemberState, f: int, next_means: str) -> list[Entry]:
    return [main_purchase_entry(o, nxt, next_means) for n, o, nxt in _mains_with_next(state) if n == f]


def f1_to_f2(state: MemberState, rules: Rules = DEFAULT_RULES) -> list[Entry]:
    """S03: the 1st main purchase; the 2nd exits."""
    return _nth_purchase(state, 1, "exit:main_purchase")


def f2_to_f3(state: MemberState, rules: Rules = DEFAULT_RULES) -> list[Entry]:
    """S04: the 2nd main purchase; the 3rd exits."""
    return _nth_purchase(state, 2, "exit:main_purchase")


def onboarding(state: MemberState, rules: Rules = DEFAULT_RULES) -> list[Entry]:
    """S05: the 3rd main purchase, for members registered at most 180 days before it."""
    registered = state.registered_at
    return [
        e for e in _nth_purchase(state, 3, "")
        if registered is not None and e.moments["purchase"] - registered <= REGISTERED_WITHIN
    ]


def subscription_upsell(state: MemberState, rules: Rules = DEFAULT_RULES) -> list[Entry]:
    """S06: normal main purchases with no running subscription; a subscription start exits."""
    starts = [s.started_at for s in state.subscriptions.values() if s.started_at]
    entries = []
    for _, order, nxt in _mains_with_next(state)[-2:]:
        assert order.placed_at is not None
        if order.subscription_id is not None or state.subscribed_at(order.placed_at):
            continue
        entry = main_purchase_entry(order, nxt, "replaced:newer_purchase")
        entries.append(_with_exit(entry, _first_after(starts, order.placed_at), "exit:subscription_started"))
    return entries


def subscription_resume(state: MemberState, rules: Rules = DEFAULT_RULES) -> list[Entry]:
    """S07: each subscription's latest pause; resuming or cancelling after it exits."""
    entries = []
    for sub in state.subscriptions.values():
        if sub.last_paused_at is None or sub.status_stamp is None:
            continue
        paused_at = sub.last_paused_at
        entry = Entry(
            occurrence=f"{sub.subscription_id}@{paused_at.isoformat()}",
            moments={"entry": paused_at, "pause": paused_at},
            context={"subscription_id": sub.subscription_id, "sku": sub.sku or ""},
        )
        if sub.status is not SubscriptionStatus.PAUSED and sub.status_stamp.at > paused_at:
            entry = replace(entry, exit=Exit(sub.status_stamp.at, f"exit:subscription_{_status_word(sub.status)}"))
        entries.append(entry)
    return entries


def _status_word(status: SubscriptionStatus) -> str:
    return "resumed" if status is SubscriptionStatus.ACTIVE else status.value


def loyalty(state: MemberState, rules: Rules = DEFAULT_RULES) -> list[Entry]:
    """S08: main purchases that bring F to 4 or more (the shop's N回目), at most one entry per
    180 days (the shop's spacing)."""
    from_purchase, every = rules.loyalty()
    candidates = [main_purchase_entry(o, nxt, None) for n, o, nxt in _mains_with_next(state) if n >= from_purchase]
    return _spaced(candidates, every, state.chain(LOYALTY))[-2:]


def cross_sell(state: MemberState, rules: Rules = DEFAULT_RULES) -> list[Entry]:
    """S09: the 3rd and later main purchases of members who never bought a cross line."""
    crosses = _cross_purchases_at(state)
    candidates = [
        main_purchase_entry(o, nxt, None) for n, o, nxt in _mains_with_next(state)
        if n >= 3 and state.archived.cross_purchases == 0
        and not any(c <= o.placed_at for c in crosses)  # type: ignore[operator]
    ]
    return [
        _with_exit(e, _first_after(crosses, e.moments["entry"]), "exit:cross_purchase")
        for e in _spaced(candidates, CROSS_SELL_EVERY, state.chain(CROSS_SELL))[-2:]
    ]


def cross_sell_revival(state: MemberState, rules: Rules = DEFAULT_RULES) -> list[Entry]:
    """S10: an order without a cross line while the latest cross purchase is 31–90 days old."""
    crosses = state.cross_purchases()
    entries: dict[str, Entry] = {}
    for order in state.placed():
        assert order.placed_at is not None
        if order.has_cross:
            continue
        before = [c for c in crosses if c.placed_at < order.placed_at]  # type: ignore[operator]
        if not before:
            continue
        latest = before[-1]
        age = order.placed_at - latest.placed_at  # type: ignore[operator]
        if CROSS_LAPSED_FROM <= age <= CROSS_LAPSED_TO and latest.order_id not in entries:
            # One revival per lapsed cross purchase: the first order that notices it.
            entry = Entry(
                occurrence=latest.order_id,
                moments={"entry": order.placed_at},
                context={"order_id": order.order_id, "cross_order_id": latest.order_id,
                         "sku": order.main_sku or _latest_main_sku(state, order.placed_at),
                         "cross_sku": latest.cross_sku or ""},
            )
            later = [c.placed_at for c in crosses if c.placed_at]
            entries[latest.order_id] = _with_exit(entry, _first_after(later, order.placed_at), "exit:cross_purchase")
    return list(entries.values())[-2:]


def _latest_main_sku(state: MemberState, before: datetime) -> str:
    """The main product the member bought last by ``before``: what a recommendation fits."""
    skus = [m.main_sku for m in state.main_purchases() if m.placed_at and m.placed_at <= before and m.main_sku]
    return skus[-1] if skus else ""


def reactivation(state: MemberState, rules: Rules = DEFAULT_RULES) -> list[Entry]:
    """S11: the latest main purchase, timed from its order; the next main purchase exits."""
    return [main_purchase_entry(o, nxt, "exit:main_purchase") for _, o, nxt in _mains_with_next(state)[-2:]]


def churn_prevention(state: MemberState, rules: Rules = DEFAULT_RULES) -> list[Entry]:
    """S12: a churn signal or a lengthened interval, at most one entry per 30 days."""
    signs: dict[datetime, str] = {}
    for sign in state.churn_signs():
        signs.setdefault(sign.at, sign.signal)
    candidates = [
        Entry(occurrence=f"signal@{at.isoformat()}", moments={"entry": at}, context={"signal": signal})
        for at, signal in signs.items()
    ]
    return _spaced(candidates, CHURN_FOLLOW_UP_EVERY, state.chain(CHURN))[-2:]


def is_offline(state: MemberState) -> bool:
    return state.profile.sales_channel is SalesChannel.OFFLINE
