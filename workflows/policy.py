"""The delivery policy (SPEC §5) as pure functions: which touch goes out, when, where, or why not.

``settle`` is the whole decision the member workflow asks for at each wake-up:
given the state, the touches planned so far and the time, which touches end now
(with their one outcome and the rule that decided it), which wait, and when to
wake next. The workflow only carries the decisions out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from workflows.events import Channel
from workflows.lifecycle import MemberState, SubscriptionStatus
from workflows.scenarios import BY_SCENARIO, Scenario, plan
from workflows.touches import Outcome, PlannedTouch, TouchRecord

ONLINE_ROUTE = (Channel.LINE, Channel.EMAIL, Channel.SMS, Channel.DM)
OFFLINE_ROUTE = (Channel.DM,)
# The parcel insert, a task for the shop's own agents and a site banner need no opt-in
# and are not marketing touches for the frequency cap.
OPERATIONAL = frozenset({Channel.INSERT, Channel.CALL_CENTER, Channel.WEB})
QUIET_CHANNELS = frozenset({Channel.LINE, Channel.SMS, Channel.PUSH})
COVERS_S06 = (Scenario.S03_F1_TO_F2.value, Scenario.S04_F2_TO_F3.value)


class PolicyConfig(BaseModel):
    """Tunable policy, carried in the workflow input so a change reaches members on their next run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    send_hour: int = Field(10, ge=0, le=23)
    quiet_from: int = Field(21, ge=0, le=23)  # LINE, SMS, push wait from here …
    quiet_until: int = Field(9, ge=0, le=23)  # … until here, member-local
    cap_touches: int = Field(3, ge=1)
    cap_window: timedelta = timedelta(days=7)
    late_after: timedelta = timedelta(days=3)
    holdout_percent: int = Field(10, ge=0, le=100)
    # "At once" waits this long so that the rest of a burst (a registration, a
    # cancellation, a shipment delivered out of order) is folded in first (SPEC §4).
    grace: timedelta = Field(timedelta(minutes=10), ge=timedelta(0), le=timedelta(days=1))


@dataclass(frozen=True)
class Decision:
    outcome: Outcome | None  # None: not yet — the touch waits until ``postpone_to``
    reason: str
    channel: Channel | None = None
    variant: str | None = None
    upsell: bool = False
    postpone_to: datetime | None = None


@dataclass(frozen=True)
class Settlement:
    finished: list[tuple[PlannedTouch, TouchRecord]]  # decided now, in the order they were decided
    pending: dict[str, PlannedTouch]  # still waiting, keyed by idempotency key
    wake_at: datetime | None  # the next moment anything can change without an event


# --- the rules -----------------------------------------------------------------------------


def bucket(*parts: str) -> int:
    """A stable 0–99 bucket: the same on every run, process and machine (unlike ``hash``)."""
    digest = hashlib.sha256(":".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def in_holdout(member_id: str, scenario: str, config: PolicyConfig) -> bool:
    return bucket(member_id, scenario, "holdout") < config.holdout_percent


def variant_of(member_id: str, scenario: str) -> str | None:
    variants = BY_SCENARIO[Scenario(scenario)].variants
    return variants[bucket(member_id, scenario, "variant") % len(variants)] if variants else None


def route(state: MemberState, touch: PlannedTouch) -> Channel | None:
    """The step's own channel, else the member's first usable one (consent and a way to reach them)."""
    if touch.channel is not None:
        return touch.channel if touch.channel in OPERATIONAL or state.can_reach(touch.channel) else None
    order = OFFLINE_ROUTE if state.profile.sales_channel == "offline" else ONLINE_ROUTE
    return next((channel for channel in order if state.can_reach(channel)), None)


def quiet_until(moment: datetime, channel: Channel, timezone: str, config: PolicyConfig) -> datetime | None:
    """When a LINE / SMS / push touch may go out, if ``moment`` is in the member's quiet hours."""
    if channel not in QUIET_CHANNELS:
        return None
    local = moment.astimezone(ZoneInfo(timezone))
    if config.quiet_until <= local.hour < config.quiet_from:
        return None
    day = local.date() if local.hour < config.quiet_until else local.date() + timedelta(days=1)
    return datetime.combine(day, time(config.quiet_until), tzinfo=ZoneInfo(timezone))


def cap_frees_at(sent: list[datetime], now: datetime, config: PolicyConfig) -> datetime | None:
    """None if a marketing touch may go out now; else when the rolling window frees a slot."""
    recent = sorted(t for t in sent if now - config.cap_window < t <= now)
    if len(recent) < config.cap_touches:
        return None
    return recent[len(recent) - config.cap_touches] + config.cap_window


def covered_by(state: MemberState, touch: PlannedTouch, decided: tuple[TouchRecord, ...] = ()) -> str | None:
    """S06 is not sent when S03/S04 of the same purchase already carried upsell content,
    at an earlier wake-up or earlier in this one (``decided``)."""
    if touch.scenario != Scenario.S06_SUBSCRIPTION_UPSELL.value:
        return None
    for record in (*state.touches, *decided):
        if (record.scenario in COVERS_S06 and record.occurrence == touch.occurrence
                and record.outcome is Outcome.SENT and record.upsell):
            return record.scenario
    return None


def decide(state: MemberState, touch: PlannedTouch, now: datetime, sent: list[datetime],
           config: PolicyConfig, decided: tuple[TouchRecord, ...] = ()) -> Decision:
    """The outcome of a touch whose time has come, and the rule that decided it."""
    if touch.cancelled_reason is not None:
        return Decision(Outcome.CANCELLED, touch.cancelled_reason)
    overdue = now - touch.due_at
    if overdue > config.late_after:
        return Decision(Outcome.EXPIRED, f"late:{overdue.days}d_overdue")
    if in_holdout(state.member_id, touch.scenario, config):
        return Decision(Outcome.HOLDOUT, f"holdout:{config.holdout_percent}%")
    variant = variant_of(state.member_id, touch.scenario)
    cover = covered_by(state, touch, decided)
    if cover:
        return Decision(Outcome.SUPPRESSED, f"covered_by:{cover}", variant=variant)
    channel = route(state, touch)
    if channel is None:
        return Decision(Outcome.SUPPRESSED, "no_channel", variant=variant)
    wait = quiet_until(now, channel, state.profile.timezone, config)
    if wait is not None:
        return Decision(None, "quiet_hours", channel, variant, postpone_to=wait)
    if channel not in OPERATIONAL:
        frees = cap_frees_at(sent, now, config)
        if frees is not None:
            if frees <= touch.due_at + config.late_after:
                return Decision(None, "frequency_cap", channel, variant, postpone_to=frees)
            return Decision(Outcome.SUPPRESSED, "frequency_cap", channel, variant)
    # A paused 定期 member is still a subscriber: offering them the subscription makes no sense.
    subscriber = state.subscription_status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAUSED)
    reason = f"route:{channel.value}" + (";upsell_omitted:subscriber" if touch.upsell and subscriber else "")
    return Decision(Outcome.SENT, reason, channel, variant, upsell=touch.upsell and not subscriber)


# --- the settlement ------------------------------------------------------------------------


def settle(state: MemberState, pending: dict[str, PlannedTouch], now: datetime,
           config: PolicyConfig, exact: bool = True) -> Settlement:
    """Decide every touch whose time has come; keep the rest; say when to wake next.

    A pending touch that the member's facts no longer call for (its order was
    cancelled, a registration made it an offline member) is withdrawn without an
    outcome: under the facts known when it would have been decided it was never
    a touch, whatever order its events arrived in, and if its entry holds again it
    is planned again. ``exact=False`` is the first release's behaviour, for members
    whose run started before it changed: no grace period, withdrawals recorded.
    """
    grace = config.grace if exact else timedelta(0)
    planned = {t.key: _keep_postponement(t, pending.get(t.key)) for t in plan(state, config.send_hour, grace)}
    finished: list[tuple[PlannedTouch, TouchRecord]] = []
    for key, touch in pending.items():
        if key in planned or (exact and not state.erased_at):
            continue
        reason = "exit:member_erased" if state.erased_at else "withdrawn:entry_no_longer_holds"
        finished.append((touch, _record(touch, Decision(Outcome.CANCELLED, reason), now)))
    sent = [t.decided_at for t in state.touches if t.outcome is Outcome.SENT and t.channel not in OPERATIONAL]
    due = sorted((t for t in planned.values() if (t.cancelled_reason and not exact) or t.send_at <= now),
                 key=lambda t: (t.priority, t.due_at, t.key))
    for touch in due:
        decision = decide(state, touch, now, sent, config, tuple(r for _, r in finished) if exact else ())
        if decision.outcome is None:
            assert decision.postpone_to is not None
            planned[touch.key] = touch.model_copy(update={"send_at": decision.postpone_to})
            continue
        del planned[touch.key]
        finished.append((touch, _record(touch, decision, now)))
        if decision.outcome is Outcome.SENT and decision.channel not in OPERATIONAL:
            sent.append(now)
    moments = [t.send_at for t in planned.values()]
    if (change := state.next_stage_change()) is not None:
        moments.append(change)
    return Settlement(finished, planned, min(moments, default=None))


def _keep_postponement(touch: PlannedTouch, before: PlannedTouch | None) -> PlannedTouch:
    """Quiet hours and the cap postpone a send; nothing postpones a cancellation."""
    if before is not None and before.send_at > touch.send_at and touch.cancelled_reason is None:
        return touch.model_copy(update={"send_at": before.send_at})
    return touch


def _record(touch: PlannedTouch, decision: Decision, now: datetime) -> TouchRecord:
    assert decision.outcome is not None
    return TouchRecord(
        key=touch.key, scenario=touch.scenario, step=touch.step, occurrence=touch.occurrence,
        due_at=touch.due_at, outcome=decision.outcome, reason=decision.reason,
        channel=decision.channel, decided_at=now, variant=decision.variant, upsell=decision.upsell,
    )
