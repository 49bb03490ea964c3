"""The scenario templates as data, and ``plan(state, now)``: the touches they call for.

A template names its steps and their timing; its ``entries`` function finds, in
the member's state, each entry into the scenario (the purchase, sample or pause
that started it) and whether the scenario's exit has happened since. Entries are
derived from facts, not remembered, so a duplicate or late event re-plans to the
same touches, and a newer entry into a scenario (the next purchase) takes over
from the older one, whose pending steps end ``cancelled``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from enum import StrEnum
from fractions import Fraction
from typing import Callable
from zoneinfo import ZoneInfo

from workflows.events import Channel
from workflows.lifecycle import MemberState, OrderRecord, Stage, SubscriptionStatus
from workflows.touches import PlannedTouch, touch_key


class Scenario(StrEnum):
    S01_SAMPLE_TO_MAIN = "S01"
    S02_TRIAL_TO_MAIN = "S02"
    S03_F1_TO_F2 = "S03"
    S04_F2_TO_F3 = "S04"
    S05_ONBOARDING = "S05"
    S06_SUBSCRIPTION_UPSELL = "S06"
    S07_SUBSCRIPTION_RESUME = "S07"
    S08_LOYALTY = "S08"
    S09_CROSS_SELL = "S09"
    S10_CROSS_SELL_REVIVAL = "S10"
    S11_REACTIVATION = "S11"
    S12_CHURN_PREVENTION = "S12"


@dataclass(frozen=True)
class Timing:
    """When a step is due: ``at_once`` on entry, or a calendar day at the send hour.

    The day is ``anchor`` + ``days`` + ``supply`` × the entry's supply in days, in
    the member's timezone; anchors are the entry's named moments (``purchase``,
    ``shipment``, ``run_out``, ``pause``, …).
    """

    anchor: str = "entry"
    days: int = 0
    supply: Fraction = Fraction(0)
    at_once: bool = False

    def due(self, entry: "Entry", timezone: str, send_hour: int) -> datetime | None:
        start = entry.moments.get(self.anchor)
        if start is None:
            return None
        if self.at_once:
            return start
        offset = self.days + int(self.supply * entry.supply_days)
        day = start.astimezone(ZoneInfo(timezone)).date() + timedelta(days=offset)
        return datetime.combine(day, time(send_hour), tzinfo=ZoneInfo(timezone))


AT_ONCE = Timing(at_once=True)


@dataclass(frozen=True)
class Step:
    name: str
    timing: Timing
    channel: Channel | None = None  # None: routed by the delivery policy
    upsell: bool = False


@dataclass(frozen=True)
class Exit:
    at: datetime
    reason: str


@dataclass(frozen=True)
class Entry:
    """One entry of a member into a scenario."""

    occurrence: str  # stable id of what started it: an order id, a pause, a purchase
    moments: dict[str, datetime]
    supply_days: int = 0
    exit: Exit | None = None
    context: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Template:
    scenario: Scenario
    name_ja: str
    name_en: str
    purpose: str
    target: str
    exit: str
    kpi: str
    kpi_window_days: int
    steps: tuple[Step, ...]
    entries: Callable[[MemberState], list[Entry]]


def _main_purchase_entry(order: OrderRecord, nxt: OrderRecord | None, next_means: str) -> Entry:
    """An entry keyed on a main purchase; the next main purchase ends it (``next_means`` says how)."""
    assert order.placed_at is not None
    moments = {"purchase": order.placed_at, "anchor": order.anchor, "run_out": order.run_out_at}
    if order.shipped_at:
        moments["shipment"] = order.shipped_at
    return Entry(
        occurrence=order.order_id,
        moments=moments,
        supply_days=order.main_supply_days,
        exit=Exit(nxt.placed_at, next_means) if nxt and nxt.placed_at else None,
        context={"order_id": order.order_id, "sku": order.main_sku or ""},
    )


def _latest_mains(state: MemberState, count: int = 2) -> list[tuple[OrderRecord, OrderRecord | None]]:
    """The newest main purchases, each with the one that followed it (its exit), newest last."""
    mains = state.main_purchases()
    pairs = [(m, mains[i + 1] if i + 1 < len(mains) else None) for i, m in enumerate(mains)]
    return pairs[-count:]


def _sample_entries(state: MemberState) -> list[Entry]:
    sample = state.latest_sample()
    if sample is None or sample.placed_at is None:
        return []
    placed = state.placed()
    if any(o.is_main_purchase and o.placed_at < sample.placed_at for o in placed):  # type: ignore[operator]
        return []  # S01 targets members with F = 0 when they ask for a sample
    later = [o for o in placed if o.placed_at >= sample.placed_at]  # type: ignore[operator]
    moments = {"entry": sample.placed_at, "run_out": sample.run_out_at}
    return [Entry(
        occurrence=sample.order_id,
        moments=moments,
        supply_days=sample.supply_days,
        exit=Exit(later[0].placed_at, "exit:order_placed") if later else None,  # type: ignore[arg-type]
        context={"order_id": sample.order_id, "sku": sample.main_sku or ""},
    )]


def _subscription_upsell_entries(state: MemberState) -> list[Entry]:
    entries = []
    for order, nxt in _latest_mains(state):
        assert order.placed_at is not None
        if order.subscription_id is not None or _subscribed_before(state, order.placed_at):
            continue  # S06 targets normal purchases of members with no running subscription
        entry = _main_purchase_entry(order, nxt, "replaced:newer_purchase")
        started = sorted(
            s.started_at for s in state.subscriptions.values()
            if s.started_at is not None and s.started_at > order.placed_at
        )
        if started and (entry.exit is None or started[0] < entry.exit.at):
            entry = replace(entry, exit=Exit(started[0], "exit:subscription_started"))
        entries.append(entry)
    return entries


def _subscribed_before(state: MemberState, moment: datetime) -> bool:
    running = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAUSED)
    return any(
        s.started_at is not None and s.started_at <= moment and s.status in running
        for s in state.subscriptions.values()
    )


def _resume_entries(state: MemberState) -> list[Entry]:
    entries = []
    for sub in state.subscriptions.values():
        if sub.status is SubscriptionStatus.PAUSED and sub.status_stamp is not None:
            paused_at = sub.status_stamp.at
            entries.append(Entry(
                occurrence=f"{sub.subscription_id}@{paused_at.date().isoformat()}",
                moments={"pause": paused_at},
                context={"subscription_id": sub.subscription_id, "sku": sub.sku or ""},
            ))
    return entries


def _reactivation_entries(state: MemberState) -> list[Entry]:
    return [_main_purchase_entry(order, nxt, "exit:main_purchase") for order, nxt in _latest_mains(state)]


TEMPLATES: tuple[Template, ...] = (
    Template(
        Scenario.S01_SAMPLE_TO_MAIN, "サンプル→本品引上", "sample to main product",
        purpose="turn a free-sample requester into a main-product buyer before the sample runs out",
        target="sample_requested while F = 0", exit="any order",
        kpi="本商品引上率", kpi_window_days=30,
        steps=(
            Step("welcome_offer", AT_ONCE),
            Step("sample_insert", AT_ONCE, channel=Channel.INSERT),
            Step("run_out_offer", Timing("run_out", days=-2)),
            Step("last_call", Timing("run_out")),
        ),
        entries=_sample_entries,
    ),
    Template(
        Scenario.S06_SUBSCRIPTION_UPSELL, "定期引上", "subscription upsell",
        purpose="move a normal-purchase buyer onto the 定期 subscription before the product runs out",
        target="normal main purchase with no active subscription", exit="subscription started",
        kpi="定期引上率", kpi_window_days=30,
        steps=(Step("upsell", Timing("purchase", days=-2, supply=Fraction(1)), upsell=True),),
        entries=_subscription_upsell_entries,
    ),
    Template(
        Scenario.S07_SUBSCRIPTION_RESUME, "定期再開", "subscription resume",
        purpose="bring a paused subscriber back before the pause becomes a cancellation",
        target="subscription paused", exit="resumed or cancelled",
        kpi="定期再開率", kpi_window_days=30,
        steps=(Step("resume_link", Timing("pause", days=60)),),
        entries=_resume_entries,
    ),
    Template(
        Scenario.S11_REACTIVATION, "休眠復活", "reactivation",
        purpose="win back a member whose latest main purchase is 90 days old",
        target="latest main purchase ordered 90 days ago", exit="main purchase",
        kpi="休眠復活率", kpi_window_days=60,
        steps=(
            Step("comeback_offer", Timing("purchase", days=90)),
            Step("new_product", Timing("purchase", days=120)),
        ),
        entries=_reactivation_entries,
    ),
)

BY_SCENARIO = {t.scenario: t for t in TEMPLATES}


def plan(state: MemberState, send_hour: int = 10) -> list[PlannedTouch]:
    """Every touch the scenarios call for that has no outcome yet, earliest first.

    Touches whose scenario exited before they were due come back with
    ``cancelled_reason`` set; the workflow records them as ``cancelled``.
    """
    if state.stage is Stage.ERASED:
        return []
    done = {t.key for t in state.touches}
    planned = []
    for template in TEMPLATES:
        for entry in template.entries(state):
            for step in template.steps:
                due = step.timing.due(entry, state.profile.timezone, send_hour)
                key = touch_key(state.member_id, template.scenario, step.name, entry.occurrence)
                if due is None or key in done:
                    continue
                cancelled = entry.exit.reason if entry.exit and entry.exit.at <= due else None
                planned.append(PlannedTouch(
                    key=key, scenario=template.scenario.value, step=step.name,
                    occurrence=entry.occurrence, due_at=due, channel=step.channel,
                    upsell=step.upsell, context=entry.context, cancelled_reason=cancelled,
                ))
    return sorted(planned, key=lambda t: (t.due_at, t.key))
