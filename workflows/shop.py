"""The shop's configuration as data (SPEC §7): deterministic inputs of the pure core.

``ShopConfig`` is the whole file a shop writes (``examples/shop.toml``): its
profile and sender fields, its catalogue, the delivery policy, each scenario
switched on or off with the timings the seed leaves to the shop and its
variants, and where its own templates are. ``Rules`` is the part the member
workflow decides with (the policy and the scenarios); the profile, catalogue and
templates are for the messages, rendered outside the workflow.

Loading a file (TOML, errors with the key and the line) lives in
``worker.shop_config``; versions and how a change reaches running members in
``workflows.versions``.
"""

from __future__ import annotations

from datetime import time, timedelta
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator, model_validator

from workflows.events import MAX_SUPPLY_DAYS, BroadcastName, Channel, LineRole
from workflows.rules import QUIET_CHANNELS, PolicyConfig, Rules, ScenarioRules
from workflows.scenarios import BY_SCENARIO, Scenario
from workflows.segments import Segment, SegmentName, segment_problems


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _clock(value: object) -> time:
    """``"10:00"`` or an hour ``10`` → a time of day (minutes only)."""
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 23:
        return time(value)
    if isinstance(value, str):
        hour, sep, minute = value.strip().partition(":")
        if sep and hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60:
            return time(int(hour), int(minute))
    raise ValueError(f"{value!r} is not a time of day such as \"10:00\"")


Clock = Annotated[time, BeforeValidator(_clock), PlainSerializer(lambda t: t.strftime("%H:%M"), return_type=str)]


# --- the policy, in the units a shop writes ------------------------------------------------


class QuietHours(_Config):
    """When a channel may reach a member (member-local): ``"09:00-21:00"``."""

    start: Clock
    end: Clock

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: object) -> object:
        if isinstance(value, str):
            start, sep, end = value.partition("-")
            if not sep:
                raise ValueError(f"{value!r} is not a span such as \"09:00-21:00\"")
            return {"start": start, "end": end}
        return value


class FrequencyCap(_Config):
    touches: int = Field(3, ge=1, le=100)
    days: int = Field(7, ge=1, le=90)


class Policy(_Config):
    """SPEC §5 as the shop tunes it; every default is the SPEC's."""

    send_time: Clock = time(10)
    # Channels that may only reach a member within these hours (LINE, SMS, push by default).
    allowed_hours: dict[Channel, QuietHours] = Field(default_factory=lambda: {
        c: QuietHours(start=time(9), end=time(21)) for c in sorted(QUIET_CHANNELS)})
    frequency_cap: FrequencyCap = FrequencyCap()
    late_after_days: int = Field(3, ge=0, le=60)
    holdout_percent: int = Field(10, ge=0, le=50)
    grace_minutes: int = Field(10, ge=0, le=24 * 60)

    def engine(self) -> PolicyConfig:
        """The policy the pure core reads."""
        return PolicyConfig(
            send_hour=self.send_time.hour, send_minute=self.send_time.minute,
            cap_touches=self.frequency_cap.touches, cap_window=timedelta(days=self.frequency_cap.days),
            late_after=timedelta(days=self.late_after_days), holdout_percent=self.holdout_percent,
            grace=timedelta(minutes=self.grace_minutes),
            allowed_hours={c: (h.start, h.end) for c, h in self.allowed_hours.items()},
        )


# --- the scenarios ------------------------------------------------------------------------

# Steps whose timing the seed fixes exactly (SPEC §4): a shop may switch them off, not move them.
SEED_TIMED = frozenset({
    ("S06", "upsell"), ("S07", "resume_link"), ("S07", "resume_call"), ("S08", "loyalty_offer"),
    ("S09", "cross_offer"), ("S10", "cross_follow_up"), ("S11", "comeback_offer"),
    ("S12", "call_center_task"), ("S12", "follow_up_faq"), ("S05", "member_benefits"), ("S05", "survey"),
})
# S05's offsets are fixed by the seed for a 30-day product; other product cycles are the shop's.
SEED_CYCLE = {"S05": 30}


# --- the rest of the file: for the messages ------------------------------------------------


class Urls(_Config):
    """Short on purpose: the SMS copy carries a URL within its 70 characters."""

    mypage: str
    resume: str  # 定期の再開 (My Page)
    unsubscribe: str  # 配信停止: the opt-out every marketing message carries
    purchase: str
    subscription: str  # 定期コースのご案内
    faq: str
    survey: str
    # Landing pages the templates link to by name: voice (お客様の声), guide (使い方), …
    pages: dict[str, str] = {}

    @field_validator("*")
    @classmethod
    def _absolute(cls, value: object) -> object:
        for url in (value.values() if isinstance(value, dict) else [value]):
            if not isinstance(url, str) or not url.startswith(("https://", "http://")):
                raise ValueError(f"{url!r} is not an absolute http(s) URL")
        return value


class Sender(_Config):
    """What 特定電子メール法 requires every marketing mail to show, and where it comes from."""

    name: str = Field(min_length=1, max_length=100)  # 送信者の氏名又は名称
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")  # From
    reply_to: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    address: str = Field(min_length=1, max_length=200)  # 住所
    contact: str = Field(min_length=1, max_length=200)  # 苦情・問合せの受付先 (電話番号・メール・URL)


class ShopProfile(_Config):
    name: str = Field(min_length=1, max_length=100)
    short_name: str = Field(min_length=1, max_length=12)  # SMS: 70 characters leave no room for more
    operator: str = Field(min_length=1, max_length=100)  # 運営会社
    phone: str = Field(min_length=1, max_length=30)
    hours: str = Field(min_length=1, max_length=60)  # 受付時間
    timezone: str = "Asia/Tokyo"  # the shop's own: report days, 〜月〜日まで in messages
    sender: Sender
    urls: Urls
    offers: dict[str, str] = {}  # name → the offer as customers read it: "初回限定20%OFF・送料無料"
    offer_days: int = Field(7, ge=1, le=90)  # an offer is good for this many days after it is sent


class Product(_Config):
    """One SKU as messages and the cart import see it."""

    name: str = Field("", max_length=200)  # display name: what customers read
    role: LineRole | None = None
    days_supply: Annotated[int, Field(gt=0, le=MAX_SUPPLY_DAYS)] | None = None
    sample: bool = False  # a sample-only order becomes sample_requested
    ignore: bool = False  # not a product for the lifecycle (ノベルティ, 同梱物)
    url: str | None = None
    cross: tuple[str, ...] = ()  # main: the cross products to recommend with it (S09, S10)
    similar: tuple[str, ...] = ()  # main: the similar / new products for S11's second step
    leads_to: str | None = None  # sample / trial: the main product it introduces

    @model_validator(mode="after")
    def _complete(self) -> "Product":
        if self.ignore:
            return self
        if self.days_supply is None:
            raise ValueError("days_supply is required (or ignore = true)")
        if not self.sample and self.role is None:
            raise ValueError("role is required: main, cross or trial (or sample = true)")
        return self


class Templates(_Config):
    # A directory of the shop's own Jinja templates (<scenario>/<step>[.<variant>][.<channel>].j2),
    # relative to the configuration file; each one overrides the built-in one of the same name.
    directory: str | None = None


Sku = Annotated[str, Field(min_length=1, max_length=128)]
BroadcastChannel = Annotated[Channel, Field(description="email, line, sms, push or dm")]


class Broadcast(_Config):
    """A template sent to a segment (メルマガ, a campaign, the monthly DM), once
    (`goldenroute broadcast send NAME`) or on a schedule (a Temporal Schedule).

    Each member's touch is decided by the member's own workflow (``workflows.broadcasts``):
    consent, routing, quiet hours, the frequency cap at the lowest priority, and this
    broadcast's own holdout.
    """

    description: str = Field(min_length=1, max_length=300)
    segment: SegmentName  # of [segments] in this file, or one saved in PostgreSQL
    # The copy: <templates.directory>/BC/<template>[.<channel>].j2; the broadcast's name if left out.
    template: BroadcastName | None = None
    channel: BroadcastChannel | None = None  # None: routed like any scenario step
    holdout_percent: int | None = Field(None, ge=0, le=50)  # None: the policy's
    # Recurring: a cron expression in the shop's timezone ("0 10 * * MON": Mondays at 10:00).
    schedule: str | None = Field(None, min_length=9, max_length=100)
    rate_per_second: float = Field(50.0, gt=0, le=10_000)  # members accepted per second

    @field_validator("channel")
    @classmethod
    def _marketing_channel(cls, value: Channel | None) -> Channel | None:
        if value is not None and value not in (Channel.EMAIL, Channel.LINE, Channel.SMS, Channel.PUSH, Channel.DM):
            raise ValueError(f"{value.value!r} is not a channel a broadcast can use (email, line, sms, push, dm)")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and len(value.split()) != 5:
            raise ValueError(f"{value!r} is not a cron expression of five fields such as \"0 10 * * MON\"")
        return value

    def template_name(self, name: str) -> str:
        return self.template or name


class ShopConfig(_Config):
    """The whole configuration file of one shop."""

    shop: ShopProfile
    catalogue: dict[Sku, Product] = {}
    policy: Policy = Policy()
    scenarios: dict[Scenario, ScenarioRules] = {}
    templates: Templates = Templates()
    # Named selections of members (workflows.segments): `goldenroute segment show NAME`.
    segments: dict[SegmentName, Segment] = {}
    # Template sends to a segment, once or recurring: `goldenroute broadcast send NAME`.
    broadcasts: dict[BroadcastName, Broadcast] = {}

    @model_validator(mode="after")
    def _consistent(self) -> "ShopConfig":
        problems = [*_catalogue_problems(self.catalogue), *_scenario_problems(self.scenarios),
                    *(p for name, s in self.segments.items() for p in segment_problems(name, s, self.catalogue))]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def rules(self, version: int = 0) -> Rules:
        return Rules(version=version, policy=self.policy.engine(),
                     scenarios={s.value: r for s, r in self.scenarios.items()})

    def product_name(self, sku: str | None) -> str | None:
        product = self.catalogue.get(sku or "")
        return (product.name or sku) if product else sku


def _catalogue_problems(catalogue: dict[str, Product]) -> list[str]:
    problems = []
    for sku, product in catalogue.items():
        for field, role in (("cross", LineRole.CROSS), ("similar", LineRole.MAIN), ("leads_to", LineRole.MAIN)):
            value = getattr(product, field)
            for other in (value if isinstance(value, tuple) else (value,) if value else ()):
                target = catalogue.get(other)
                if target is None:
                    problems.append(f"catalogue.{sku}.{field}: {other!r} is not in the catalogue")
                elif target.role is not role:
                    problems.append(f"catalogue.{sku}.{field}: {other!r} is a {target.role or 'sample'} "
                                    f"product, not a {role.value} one")
        if (product.cross or product.similar) and product.role is not LineRole.MAIN:
            problems.append(f"catalogue.{sku}: only a main product recommends cross / similar products")
    return problems


def _scenario_problems(scenarios: dict[Scenario, ScenarioRules]) -> list[str]:
    problems = []
    for scenario, rules in scenarios.items():
        template = BY_SCENARIO[scenario]
        names = [s.name for s in template.steps]
        for step, step_rules in rules.steps.items():
            where = f"scenarios.{scenario.value}.steps.{step}"
            if step not in names:
                problems.append(f"{where}: {scenario.value} has no step {step!r} (it has {', '.join(names)})")
                continue
            if (scenario.value, step) in SEED_TIMED and step_rules.moves:
                problems.append(f"{where}: the seed fixes this step's timing; it can be switched off, not moved")
            seed_cycle = SEED_CYCLE.get(scenario.value)
            if seed_cycle is not None and seed_cycle in step_rules.by_cycle:
                problems.append(f"{where}.by_cycle.{seed_cycle}: the seed fixes the {seed_cycle}-day cycle")
            elif step_rules.by_cycle and (scenario.value, step) in SEED_TIMED and seed_cycle is None:
                problems.append(f"{where}.by_cycle: the seed fixes this step's timing")
            timed_by_supply = any(s.name == step and s.timing.supply for s in template.steps)
            if step_rules.by_cycle and not timed_by_supply and scenario.value not in SEED_CYCLE:
                problems.append(f"{where}.by_cycle: this step is not timed by the product's supply")
            if any(s.name == step and s.timing.at_once for s in template.steps) and step_rules.moves:
                problems.append(f"{where}: an 'at once' step has no day to move")
        if scenario is not Scenario.S08_LOYALTY and (rules.from_purchase or rules.every_days):
            problems.append(f"scenarios.{scenario.value}: from_purchase / every_days are S08's only")
        if rules.variants and len(rules.variants) < 2:
            problems.append(f"scenarios.{scenario.value}.variants: name two or more, or none")
    return problems

