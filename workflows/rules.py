"""What a member workflow decides with: the delivery policy and the scenarios' settings.

``Rules`` is one version of the shop's configuration (``workflows.shop``) as the
pure core reads it: ``plan`` asks it which steps are on and when they fall,
``settle`` asks it for the policy, the holdout share and the variants. Every
default is the SPEC's, so ``Rules()`` decides exactly as the first release did.
Which version a decision uses is ``workflows.versions``' business.
"""

from __future__ import annotations

from datetime import time, timedelta
from fractions import Fraction
from math import gcd
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from workflows.events import MAX_SUPPLY_DAYS, Channel

QUIET_CHANNELS = frozenset({Channel.LINE, Channel.SMS, Channel.PUSH})
SCENARIO_IDS = tuple(f"S{n:02d}" for n in range(1, 13))


class _Rules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PolicyConfig(_Rules):
    """The delivery policy (SPEC §5). The first release carried it in the workflow input;
    now each decision reads the version of the shop's configuration in force."""

    send_hour: int = Field(10, ge=0, le=23)
    send_minute: int = Field(0, ge=0, le=59)
    quiet_from: int = Field(21, ge=0, le=23)  # LINE, SMS, push wait from here …
    quiet_until: int = Field(9, ge=0, le=23)  # … until here, member-local
    cap_touches: int = Field(3, ge=1)
    cap_window: timedelta = timedelta(days=7)
    late_after: timedelta = timedelta(days=3)
    holdout_percent: int = Field(10, ge=0, le=100)
    # "At once" waits this long so that the rest of a burst (a registration, a
    # cancellation, a shipment delivered out of order) is folded in first (SPEC §4).
    grace: timedelta = Field(timedelta(minutes=10), ge=timedelta(0), le=timedelta(days=1))
    # Per channel, the member-local hours it may reach a member in (start, end); None: the
    # first release's rule — LINE, SMS and push between quiet_until and quiet_from.
    allowed_hours: dict[Channel, tuple[time, time]] | None = None

    @property
    def send_time(self) -> time:
        return time(self.send_hour, self.send_minute)

    def hours_of(self, channel: Channel) -> tuple[time, time] | None:
        """When ``channel`` may reach a member, if it is limited at all."""
        if self.allowed_hours is not None:
            return self.allowed_hours.get(channel)
        return (time(self.quiet_until), time(self.quiet_from)) if channel in QUIET_CHANNELS else None


def _fraction(value: object) -> Fraction:
    """``1``, ``0.5``, ``"1/2"`` → a multiple of the days of supply."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError('a number of supplies: 1, 0.5 or "1/2"')
    try:
        return Fraction(str(value)).limit_denominator(100)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f'{value!r} is not a number of supplies: 1, 0.5 or "1/2"') from None


Supply = Annotated[Fraction, BeforeValidator(_fraction), PlainSerializer(str, return_type=str)]


class StepTiming(_Rules):
    """Day ``days`` + ``supply`` × the entry's days of supply after the step's anchor."""

    days: int = Field(0, ge=-365, le=730)
    supply: Supply = Fraction(0)


class StepRules(_Rules):
    enabled: bool = True
    days: int | None = Field(None, ge=-365, le=730)
    supply: Supply | None = None
    # Per product cycle (the days of supply of the entry's product): its own timing.
    by_cycle: dict[Annotated[int, Field(gt=0, le=MAX_SUPPLY_DAYS)], StepTiming] = {}

    @property
    def moves(self) -> bool:
        return self.days is not None or self.supply is not None


VariantName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class ScenarioRules(_Rules):
    enabled: bool = True
    steps: dict[str, StepRules] = {}
    # Variant name → weight (positive integers: 50/50, 70/30, 1/1/1); none: the template's own.
    variants: dict[VariantName, Annotated[int, Field(ge=1, le=100)]] = {}
    holdout_percent: int | None = Field(None, ge=0, le=50)  # None: the policy's
    # S08 only: the main purchase from which a member is a loyal one (N回目), and its spacing.
    from_purchase: int | None = Field(None, ge=2, le=50)
    every_days: int | None = Field(None, ge=7, le=730)


_DEFAULT_SCENARIO = ScenarioRules()
_DEFAULT_STEP = StepRules()
LOYALTY_FROM, LOYALTY_EVERY_DAYS = 4, 180  # SPEC §4 S08


class Rules(_Rules):
    """One version of what the shop configured for decisions. ``Rules()`` is the SPEC's defaults."""

    version: int = 0
    policy: PolicyConfig = PolicyConfig()
    scenarios: dict[Annotated[str, Field(pattern=r"^S(0[1-9]|1[0-2])$")], ScenarioRules] = {}

    def scenario(self, scenario: str) -> ScenarioRules:
        return self.scenarios.get(str(scenario)) or _DEFAULT_SCENARIO

    def step_enabled(self, scenario: str, step: str) -> bool:
        rules = self.scenario(scenario)
        return rules.enabled and (rules.steps.get(step) or _DEFAULT_STEP).enabled

    def off_reason(self, scenario: str, step: str) -> str:
        """``config:v3:S06_off``: the change that switched a pending step off."""
        what = str(scenario) if not self.scenario(scenario).enabled else f"{scenario}.{step}"
        return f"config:v{self.version}:{what}_off"

    def variants(self, scenario: str, default: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
        """(variant, weight), weights divided by their gcd: an even split of two is (1, 1),
        so the SPEC's S08 split assigns every member the variant it always had."""
        configured = self.scenario(scenario).variants
        # By name, not by the order the file lists them in: reordering a file moves no member.
        pairs = tuple(sorted(configured.items())) if configured else tuple((v, 1) for v in default)
        divisor = 0
        for _, weight in pairs:
            divisor = gcd(divisor, weight)
        return tuple((v, w // divisor) for v, w in pairs) if divisor else ()

    def holdout_percent(self, scenario: str) -> int:
        own = self.scenario(scenario).holdout_percent
        return self.policy.holdout_percent if own is None else own

    def loyalty(self) -> tuple[int, timedelta]:
        """S08: from which main purchase, and at most once per how many days."""
        rules = self.scenario("S08")
        return (rules.from_purchase or LOYALTY_FROM, timedelta(days=rules.every_days or LOYALTY_EVERY_DAYS))

    def timing_of(self, scenario: str, step: str, supply_days: int,
                  days: int = 0, supply: Fraction = Fraction(0)) -> StepTiming | None:
        """The shop's own timing of a step for a product cycle, if it sets one; what it leaves
        out (``days`` or ``supply``) stays the template's (``days``, ``supply``)."""
        rules = self.scenario(scenario).steps.get(step)
        if rules is None:
            return None
        if supply_days in rules.by_cycle:
            return rules.by_cycle[supply_days]
        if rules.moves:
            return StepTiming(days=days if rules.days is None else rules.days,
                              supply=supply if rules.supply is None else rules.supply)
        return None


DEFAULT_RULES = Rules()
