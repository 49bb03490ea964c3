"""The scenario templates as data, and ``plan(state, now)``: the touches they call for.

A template names its steps and their timing; its ``entries`` function finds, in
the member's state, each entry into the scenario (the purchase, sample or pause
that started it) and whether the scenario's exit has happened since. Entries are
derived from facts, not remembered, so a duplicate or late event re-plans to the
same touches, and a newer entry into a scenario (the next purchase) takes over
from the older one, whose pending steps end ``cancelled``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from fractions import Fraction
from typing import Callable, Literal
from zoneinfo import ZoneInfo

from workflows import broadcasts
from workflows import entries as entered
from workflows.entries import Entry
from workflows.events import Channel
from workflows.lifecycle import MemberState, Stage
from workflows.rules import DEFAULT_RULES, Rules, StepTiming
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

    def due(self, entry: Entry, timezone: str, send_at: time = time(10),
            grace: timedelta = timedelta(0), moved: StepTiming | None = None) -> datetime | None:
        """``at_once`` is the entry plus the grace period in which the rest of its burst folds in;
        ``moved`` is the shop's own day for the step (its anchor stays)."""
        start = entry.moments.get(self.anchor)
        if start is None:
            return None
        if self.at_once:
            return start + grace
        zone = ZoneInfo(timezone)
        days, supply = (moved.days, moved.supply) if moved is not None else (self.days, self.supply)
        offset = days + int(supply * entry.supply_days)
        day = start.astimezone(zone).date() + timedelta(days=offset)
        return datetime.combine(day, send_at, tzinfo=zone)


AT_ONCE = Timing(at_once=True)


@dataclass(frozen=True)
class Step:
    name: str
    timing: Timing
    channel: Channel | None = None  # None: routed by the delivery policy
    upsell: bool = False  # carries subscription-upsell content (left out for subscribers)
    audience: Literal["online", "offline"] | None = None  # None: every member


@dataclass(frozen=True)
class Template:
    scenario: Scenario
    name_ja: str
    name_en: str
    purpose: str
    target: str
    exit: str
    kpi: str
    kpi_window: str
    steps: tuple[Step, ...]
    entries: Callable[[MemberState, Rules], list[Entry]]
    variants: tuple[str, ...] = ()
    # For the KPI report: what counts as converting, within how many days of entering.
    converts_on: Literal["main_purchase", "subscription_started", "subscription_resumed",
                         "cross_purchase", "subscription_cancelled"] = "main_purchase"
    kpi_days: int = 60
    # Entered when its first step is due, not at the entry's event (S11: "latest main purchase
    # ordered 90 days ago"): an exit before that day means the member never entered it, and
    # its steps are withdrawn without an outcome instead of ending ``cancelled``.
    entered_at_first_step: bool = False


def _day(anchor: str, days: int = 0, supply: Fraction = Fraction(0)) -> Timing:
    return Timing(anchor=anchor, days=days, supply=supply)


HALF, ONE, TWO = Fraction(1, 2), Fraction(1), Fraction(2)

TEMPLATES: tuple[Template, ...] = (
    Template(
        Scenario.S01_SAMPLE_TO_MAIN, "サンプル→本品引上", "sample → main product",
        purpose="無料サンプル申込者の本商品初回購入(F1転換): 効果・安全性・継続費用の不安を解消する",
        target="sample_requested while F = 0", exit="any order",
        kpi="本商品引上率", kpi_window="main purchase ≤ 37 d (a 7-day sample's run-out + 30 d)",
        steps=(
            Step("welcome_offer", AT_ONCE),
            Step("sample_insert", AT_ONCE, channel=Channel.INSERT),
            Step("run_out_offer", _day("run_out", -2)),
            Step("last_call", _day("run_out")),
        ),
        entries=entered.sample_to_main, kpi_days=37,
    ),
    Template(
        Scenario.S02_TRIAL_TO_MAIN, "初回割→本品引上", "trial → main product",
        purpose="有料の初回割・トライアル申込者の本商品購入: 過度な値下げに慣れさせずに引き上げる",
        target="trial order while F = 0", exit="main purchase",
        kpi="本商品引上率", kpi_window="main purchase ≤ 60 d (a 30-day trial's run-out + 30 d)",
        steps=(
            Step("welcome", AT_ONCE),
            Step("bulk_offer", _day("run_out", -3)),
            Step("last_call", _day("run_out")),
        ),
        entries=entered.trial_to_main, kpi_days=60,
    ),
    Template(
        Scenario.S03_F1_TO_F2, "F1→F2転換", "F1 → F2",
        purpose="2回目購入の不安を払拭し、長く使い続けてもらう関係をつくる",
        target="1st main purchase", exit="2nd main purchase",
        kpi="F2転換率", kpi_window="2nd main purchase ≤ 60 d",
        steps=(
            Step("thanks_insert", AT_ONCE, channel=Channel.INSERT),
            Step("testimonial", _day("anchor", supply=HALF), upsell=True),
            Step("survey", _day("run_out", -5), upsell=True),
        ),
        entries=entered.f1_to_f2, kpi_days=60,
    ),
    Template(
        Scenario.S04_F2_TO_F3, "F2→F3転換", "F2 → F3",
        purpose="習慣化の一歩手前: 正しい使い方と体験談で、やめることのデメリットを伝える",
        target="2nd main purchase", exit="3rd main purchase",
        kpi="F3転換率", kpi_window="3rd main purchase ≤ 60 d",
        steps=(
            Step("usage_tips", _day("anchor", 7)),
            Step("testimonial", _day("anchor", supply=HALF), upsell=True),
            Step("reminder", _day("run_out", -5), upsell=True),
        ),
        entries=entered.f2_to_f3, kpi_days=60,
    ),
    Template(
        Scenario.S05_ONBOARDING, "新規向け利用定着", "onboarding",
        purpose="継続会員のメリットを伝えて利用を定着させ、相乗効果のある商品を提案する",
        target="3rd main purchase, registered ≤ 180 days before it", exit="—",
        kpi="継続率 / 離脱率", kpi_window="a main purchase ≤ 90 d",
        steps=(
            Step("member_benefits", _day("anchor", supply=ONE)),
            Step("survey", _day("anchor", supply=TWO)),
        ),
        entries=entered.onboarding, kpi_days=90,
    ),
    Template(
        Scenario.S06_SUBSCRIPTION_UPSELL, "定期引上", "subscription upsell",
        purpose="通常購入を続ける会員の定期コース加入: 手間・買い忘れ・ポイントのメリットを伝える",
        target="normal main purchase, no active subscription", exit="subscription started",
        kpi="定期引上率", kpi_window="subscription started ≤ 30 d",
        steps=(Step("upsell", _day("purchase", -2, ONE), upsell=True),),
        entries=entered.subscription_upsell, converts_on="subscription_started", kpi_days=30,
    ),
    Template(
        Scenario.S07_SUBSCRIPTION_RESUME, "定期再開", "subscription resume",
        purpose="休止中の定期会員の状況を伺い、休止を続けるデメリットを伝えて再開を促す",
        target="subscription paused", exit="resumed or cancelled",
        kpi="定期再開率", kpi_window="resumed ≤ 30 d",
        steps=(
            Step("resume_link", _day("pause", 60)),
            Step("resume_call", _day("pause", 60), channel=Channel.CALL_CENTER, audience="offline"),
        ),
        entries=entered.subscription_resume, converts_on="subscription_resumed", kpi_days=30,
    ),
    Template(
        Scenario.S08_LOYALTY, "既存リテンション", "loyalty",
        purpose="優良顧客(同商品4回以上)限定の特別オファーでLTVを高める",
        target="a main purchase bringing F to 4+", exit="—",
        kpi="継続率", kpi_window="a main purchase ≤ 60 d",
        steps=(Step("loyalty_offer", _day("shipment", 30)),),
        entries=entered.loyalty,
        variants=("gift", "secret_sale"),
    ),
    Template(
        Scenario.S09_CROSS_SELL, "クロスセル促進", "cross-sell",
        purpose="リピート中の本商品と併用で相乗効果の高い商品を提案する",
        target="F ≥ 3, never bought a cross line", exit="cross purchase",
        kpi="クロス購入率", kpi_window="cross purchase ≤ 60 d",
        steps=(Step("cross_offer", AT_ONCE),),
        entries=entered.cross_sell, converts_on="cross_purchase", kpi_days=60,
    ),
    Template(
        Scenario.S10_CROSS_SELL_REVIVAL, "クロスセル復活", "cross-sell revival",
        purpose="止まったクロス商品の悩みを伺い、解消できる別商品を提案する",
        target="an order while the latest cross purchase is 31–90 days old", exit="cross purchase",
        kpi="クロス購入率", kpi_window="cross purchase ≤ 60 d",
        steps=(Step("cross_follow_up", AT_ONCE),),
        entries=entered.cross_sell_revival, converts_on="cross_purchase", kpi_days=60,
    ),
    Template(
        Scenario.S11_REACTIVATION, "休眠復活", "reactivation",
        purpose="最新購入から90日の会員の悩みを伺い再購入を促す; 戻らなければ類似・新商品を紹介する",
        target="latest main purchase ordered 90 days ago", exit="main purchase",
        kpi="休眠復活率", kpi_window="main purchase ≤ 60 d",
        steps=(
            Step("comeback_offer", _day("purchase", 90)),
            Step("new_product", _day("purchase", 120)),
        ),
        entries=entered.reactivation, kpi_days=60, entered_at_first_step=True,
    ),
    Template(
        Scenario.S12_CHURN_PREVENTION, "解約防止", "churn prevention",
        purpose="解約兆候のあった会員をフォローし、FAQで疑問を解消して解約を防ぐ",
        target="churn_signal or interval lengthened", exit="—",
        kpi="解約率 (lower is better)", kpi_window="subscription cancelled ≤ 60 d",
        steps=(
            Step("call_center_task", AT_ONCE, channel=Channel.CALL_CENTER),
            Step("follow_up_faq", _day("entry", 1)),
        ),
        entries=entered.churn_prevention, converts_on="subscription_cancelled", kpi_days=60,
    ),
)

BY_SCENARIO = {t.scenario: t for t in TEMPLATES}

# When touches compete for the frequency cap (SPEC §5), the lower number wins.
PRIORITY = {
    Scenario.S12_CHURN_PREVENTION: 0, Scenario.S07_SUBSCRIPTION_RESUME: 1, Scenario.S11_REACTIVATION: 2,
    Scenario.S01_SAMPLE_TO_MAIN: 3, Scenario.S02_TRIAL_TO_MAIN: 3, Scenario.S03_F1_TO_F2: 4,
    Scenario.S04_F2_TO_F3: 4, Scenario.S06_SUBSCRIPTION_UPSELL: 5, Scenario.S05_ONBOARDING: 6,
    Scenario.S08_LOYALTY: 7, Scenario.S09_CROSS_SELL: 8, Scenario.S10_CROSS_SELL_REVIVAL: 8,
}


def plan(state: MemberState, rules: Rules = DEFAULT_RULES, grace: timedelta = timedelta(0),
         entered_at_first_step: bool = True) -> list[PlannedTouch]:
    """Every touch the scenarios (and the broadcast runs) call for that has no outcome yet, earliest first.

    A step the shop switched off is not planned; a step it moved is timed its way.
    A touch whose scenario exited before it was due comes back with
    ``cancelled_reason`` set; the policy records it as ``cancelled``. An entry of a
    scenario entered at its first step (S11) that exited before that step was due plans
    nothing: the member never entered it (``entered_at_first_step=False``: as members
    whose run started before that rule, whose such steps end ``cancelled``).
    """
    if state.stage is Stage.ERASED:
        return []
    done = {t.key for t in state.touches}
    offline = entered.is_offline(state)
    send_time = rules.policy.send_time
    planned = []
    for template in TEMPLATES:
        scenario = template.scenario.value
        if not rules.scenario(scenario).enabled:
            continue
        steps = [step for step in template.steps if rules.step_enabled(scenario, step.name)
                 and (step.audience is None or (step.audience == "offline") == offline)]
        for entry in template.entries(state, rules):
            dues = []
            for step in steps:
                moved = rules.timing_of(scenario, step.name, entry.supply_days, step.timing.days, step.timing.supply)
                dues.append((step, step.timing.due(entry, state.profile.timezone, send_time, grace, moved)))
            if entered_at_first_step and template.entered_at_first_step and entry.exit is not None and all(
                    due is None or entry.exit.at <= due for _, due in dues):
                continue
            for step, due in dues:
                key = touch_key(state.member_id, template.scenario, step.name, entry.occurrence)
                if due is None or key in done:
                    continue
                cancelled = entry.exit.reason if entry.exit and entry.exit.at <= due else None
                # A cancellation is decided once its exit's burst has folded in too.
                send_at = min(due, entry.exit.at + grace) if cancelled and entry.exit else due
                planned.append(PlannedTouch(
                    key=key, scenario=template.scenario.value, step=step.name,
                    occurrence=entry.occurrence, due_at=due, send_at=send_at, channel=step.channel,
                    upsell=step.upsell, context=entry.context, cancelled_reason=cancelled,
                    priority=PRIORITY[template.scenario],
                ))
    planned += broadcasts.plan(state, done)
    return sorted(planned, key=lambda t: (t.due_at, t.priority, t.key))
