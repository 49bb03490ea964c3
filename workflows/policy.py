"""The delivery policy (SPEC §5) as pure functions: which touch goes out, when, where, or why not.

``settle`` is the whole decision the member workflow asks for at each wake-up:
given the state, the touches planned so far and the time, which touches end now
(with their one outcome and the rule that decided it), which wait, and when to
wake next. The workflow only carries the decisions out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from workflows import broadcasts
from workflows.events import Channel
from workflows.lifecycle import MemberState, SubscriptionStatus
from workflows.rules import PolicyConfig, Rules
from workflows.scenarios import BY_SCENARIO, Scenario, plan
from workflows.touches import Outcome, PlannedTouch, TouchRecord

ONLINE_ROUTE = (Channel.LINE, Channel.EMAIL, Channel.SMS, Channel.DM)
OFFLINE_ROUTE = (Channel.DM,)
# The parcel insert, a task for the shop's own agents and a site banner need no opt-in
# and are not marketing touches for the frequency cap.
OPERATIONAL = frozenset({Channel.INSERT, Channel.CALL_CENTER, Channel.WEB})
COVERS_S06 = (Scenario.S03_F1_TO_F2.value, Scenario.S04_F2_TO_F3.value)


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


def as_rules(config: Rules | PolicyConfig) -> Rules:
    """The first release passed a bare policy; a policy alone is the SPEC's scenarios with it."""
    return config if isinstance(config, Rules) else Rules(policy=config)


def in_holdout(member_id: str, scenario: str, config: Rules | PolicyConfig) -> bool:
    return bucket(member_id, scenario, "holdout") < as_rules(config).holdout_percent(scenario)


def holdout_of(member_id: str, touch: PlannedTouch, config: Rules | PolicyConfig) -> int | None:
    """The holdout share the touch was held out under, if the member is in it. A broadcast
    holds out its own stable share of members (the same ones at every run)."""
    rules = as_rules(config)
    if broadcasts.is_broadcast(touch.scenario):
        percent = broadcasts.holdout_percent(touch, rules.policy.holdout_percent)
        return percent if bucket(member_id, f"{touch.scenario}:{touch.step}", "holdout") < percent else None
    return rules.holdout_percent(touch.scenario) if in_holdout(member_id, touch.scenario, rules) else None


def variant_of(member_id: str, scenario: str, config: Rules | PolicyConfig | None = None) -> str | None:
    """The member's variant: a stable bucket, split by the configured weights."""
    if broadcasts.is_broadcast(scenario):
        return None
    weighted = as_rules(config or Rules()).variants(scenario, BY_SCENARIO[Scenario(scenario)].variants)
    if not weighted:
        return None
    slot = bucket(member_id, scenario, "variant") % sum(w for _, w in weighted)
    for variant, weight in weighted:
        if slot < weight:
            return variant
        slot -= weight
    raise AssertionError("unreachable: the slot is below the weights' sum")


def route(state: MemberState, touch: PlannedTouch) -> Channel | None:
    """The step's own channel, else the member's first usable one (consent and a way to reach them)."""
    if touch.channel is not None:
        return touch.channel if touch.channel in OPERATIONAL or state.can_reach(touch.channel) else None
    order = OFFLINE_ROUTE if state.profile.sales_channel == "offline" else ONLINE_ROUTE
    return next((channel for channel in order if state.can_reach(channel)), None)


def quiet_until(moment: datetime, channel: Channel, timezone: str, config: Rules | PolicyConfig) -> datetime | None:
    """When a touch on ``channel`` may go out, if ``moment`` is outside the hours the channel
    may reach the member in (LINE, SMS and push: 09:00–21:00 member-local by default)."""
    hours = as_rules(config).policy.hours_of(channel)
    if hours is None:
        return None
    start, end = hours
    zone = ZoneInfo(timezone)
    local = moment.astimezone(zone)
    now = local.time().replace(tzinfo=None)
    allowed = start <= now < end if start <= end else (now >= start or now < end)
    if allowed:
        return None
    day = local.date() if now < start else local.date() + timedelta(days=1)
    return datetime.combine(day, start, tzinfo=zone)


def cap_frees_at(sent: list[datetime], now: datetime, config: Rules | PolicyConfig) -> datetime | None:
    """None if a marketing touch may go out now; else when the rolling window frees a slot."""
    config = as_rules(config).policy
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
           config: Rules | PolicyConfig, decided: tuple[TouchRecord, ...] = (),
           due_from: datetime | None = None) -> Decision:
    """The outcome of a touch whose time has come, and the rule that decided it.

    ``due_from``: a configuration change moved the touch earlier than the change itself;
    it is late only from the change on (a shop that moves a step earlier does not lose it).
    """
    rules = as_rules(config)
    policy = rules.policy
    if touch.cancelled_reason is not None:
        return Decision(Outcome.CANCELLED, touch.cancelled_reason)
    overdue = now - max(touch.due_at, due_from or touch.due_at)
    if overdue > policy.late_after:
        return Decision(Outcome.EXPIRED, f"late:{overdue.days}d_overdue")
    if (held := holdout_of(state.member_id, touch, rules)) is not None:
        return Decision(Outcome.HOLDOUT, f"holdout:{held}%")
    variant = variant_of(state.member_id, touch.scenario, rules)
    cover = covered_by(state, touch, decided)
    if cover:
        return Decision(Outcome.SUPPRESSED, f"covered_by:{cover}", variant=variant)
    channel = route(state, touch)
    if channel is None:
        return Decision(Outcome.SUPPRESSED, "no_channel", variant=variant)
    wait = quiet_until(now, channel, state.profile.timezone, rules)
    if wait is not None:
        return Decision(None, "quiet_hours", channel, variant, postpone_to=wait)
    if channel not in OPERATIONAL:
        frees = cap_frees_at(sent, now, rules)
        if frees is not None:
            if frees <= max(touch.due_at, due_from or touch.due_at) + policy.late_after:
                return Decision(None, "frequency_cap", channel, variant, postpone_to=frees)
            return Decision(Outcome.SUPPRESSED, "frequency_cap", channel, variant)
    # A paused 定期 member is still a subscriber: offering them the subscription makes no sense.
    subscriber = state.subscription_status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAUSED)
    reason = f"route:{channel.value}" + (";upsell_omitted:subscriber" if touch.upsell and subscriber else "")
    return Decision(Outcome.SENT, reason, channel, variant, upsell=touch.upsell and not subscriber)


# --- the settlement ------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """The first decision under a newer version of the shop's configuration than the
    member's last one. ``since``: when the first version the member had not decided
    under took effect; ``known``: what the member's previous version plans, key → due."""

    since: datetime
    known: dict[str, datetime]


def settle(state: MemberState, pending: dict[str, PlannedTouch], now: datetime,
           config: Rules | PolicyConfig, exact: bool = True, transition: Transition | None = None,
           entered_at_first_step: bool = True) -> Settlement:
    """Decide every touch whose time has come; keep the rest; say when to wake next.

    A pending touch that the member's facts no longer call for (its order was
    cancelled, a registration made it an offline member) is withdrawn without an
    outcome: under the facts known when it would have been decided it was never
    a touch, whatever order its events arrived in, and if its entry holds again it
    is planned again. ``exact=False`` is the first release's behaviour, for members
    whose run started before it changed: no grace period, withdrawals recorded.

    A configuration change applies from the member's next decision and never to the
    past: a pending step the shop switched off ends ``cancelled`` with a reason that
    names the change (``config:v3:S06_off``). At a ``transition`` (the first decision
    under a newer version), a touch only the new version calls for that fell due
    before the version took effect ends ``cancelled`` (``config:v3:not_retroactive``);
    one new since the version took effect, while the member slept, is due from this
    decision on; one the change moved earlier is late only as late as it would have been
    without the change — neither expires because of the change itself.

    ``entered_at_first_step``: S11 is entered on day 90, so a main purchase before then
    withdraws its steps (``scenarios.plan``); False for runs started before that rule.
    """
    rules = as_rules(config)
    grace = rules.policy.grace if exact else timedelta(0)
    planned = {t.key: _keep_postponement(t, pending.get(t.key), transition is not None)
               for t in plan(state, rules, grace, entered_at_first_step)}
    finished: list[tuple[PlannedTouch, TouchRecord]] = []
    for key, touch in pending.items():
        if key in planned:
            continue
        if state.erased_at:
            finished.append((touch, _record(touch, Decision(Outcome.CANCELLED, "exit:member_erased"), now)))
        elif exact and not rules.step_enabled(touch.scenario, touch.step):
            finished.append((touch, _record(touch, Decision(Outcome.CANCELLED,
                                                            rules.off_reason(touch.scenario, touch.step)), now)))
        elif not exact:
            finished.append((touch, _record(touch, Decision(Outcome.CANCELLED,
                                                            "withdrawn:entry_no_longer_holds"), now)))
    due_from: dict[str, datetime] = {}
    if transition is not None:
        for key, touch in list(planned.items()):
            if touch.due_at > now or touch.cancelled_reason is not None:
                continue
            before = transition.known.get(key)
            if before is None and touch.due_at < transition.since:
                del planned[key]
                reason = f"config:v{rules.version}:not_retroactive"
                finished.append((touch, _record(touch, Decision(Outcome.CANCELLED, reason), now)))
            elif before is None:  # due since the version took effect, while the member slept
                due_from[key] = now
            elif before > touch.due_at:  # moved earlier: never later than it would have been
                due_from[key] = before
    sent = [t.decided_at for t in state.touches if t.outcome is Outcome.SENT and t.channel not in OPERATIONAL]
    due = sorted((t for t in planned.values() if (t.cancelled_reason and not exact) or t.send_at <= now),
                 key=lambda t: (t.priority, t.due_at, t.key))
    for touch in due:
        late_from = due_from.get(touch.key, touch.late_from)
        decision = decide(state, touch, now, sent, rules, tuple(r for _, r in finished) if exact else (),
                          late_from)
        if decision.outcome is None:
            assert decision.postpone_to is not None
            planned[touch.key] = touch.model_copy(update={"send_at": decision.postpone_to, "late_from": late_from})
            continue
        del planned[touch.key]
        finished.append((touch, _record(touch, decision, now)))
        if decision.outcome is Outcome.SENT and decision.channel not in OPERATIONAL:
            sent.append(now)
    moments = [t.send_at for t in planned.values()]
    if (change := state.next_stage_change()) is not None:
        moments.append(change)
    return Settlement(finished, planned, min(moments, default=None))


def planned_dues(state: MemberState, pending: dict[str, PlannedTouch],
                 rules: Rules | PolicyConfig, entered_at_first_step: bool = True) -> dict[str, datetime]:
    """What a version calls for with the facts of now, key → due: what it plans, and what
    is already pending under it."""
    planned = plan(state, as_rules(rules), as_rules(rules).policy.grace, entered_at_first_step)
    return {key: touch.due_at for key, touch in pending.items()} | {t.key: t.due_at for t in planned}


def _keep_postponement(touch: PlannedTouch, before: PlannedTouch | None, changed: bool = False) -> PlannedTouch:
    """Quiet hours and the cap postpone a send; nothing postpones a cancellation. At a
    configuration change (``changed``) a touch the change moved keeps no earlier send time:
    that was its old due, not a postponement."""
    if changed and before is not None and before.due_at != touch.due_at:
        return touch
    if before is not None and before.send_at > touch.send_at and touch.cancelled_reason is None:
        update: dict = {"send_at": before.send_at}
        if before.late_from is not None and before.due_at == touch.due_at:
            update["late_from"] = before.late_from
        return touch.model_copy(update=update)
    return touch


def _record(touch: PlannedTouch, decision: Decision, now: datetime) -> TouchRecord:
    assert decision.outcome is not None
    return TouchRecord(
        key=touch.key, scenario=touch.scenario, step=touch.step, occurrence=touch.occurrence,
        due_at=touch.due_at, outcome=decision.outcome, reason=decision.reason,
        channel=decision.channel, decided_at=now, variant=decision.variant, upsell=decision.upsell,
    )
