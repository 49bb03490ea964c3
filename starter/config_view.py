"""What a shop file means, as ``goldenroute config check`` and ``config show`` print it.

``effective`` fills in what the file leaves to the defaults (all twelve scenarios,
each with its steps, S08's loyalty numbers, the variants, each scenario's holdout),
so that ``show`` answers "what will the engine do" and not just "what did I
write". The text view reads as the file does, one section per table, with each
step's timing in words (``run_out - 2 d``, ``purchase + supply - 2 d``).
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from typing import Any, Iterator

from starter.table import table, width
from worker.shop_config import LoadedShop
from workflows.rules import LOYALTY_EVERY_DAYS, LOYALTY_FROM, ScenarioRules, StepRules
from workflows.scenarios import BY_SCENARIO, Scenario, Step
from workflows.shop import ShopConfig


def effective(config: ShopConfig) -> ShopConfig:
    """``config`` with every scenario and step written out; it decides exactly as ``config`` does."""
    scenarios = {}
    for scenario in Scenario:
        template, rules = BY_SCENARIO[scenario], config.scenarios.get(scenario, ScenarioRules())
        filled: dict[str, Any] = {
            "steps": {s.name: rules.steps.get(s.name, StepRules()) for s in template.steps},
            "variants": rules.variants or {v: 1 for v in template.variants},
            "holdout_percent": config.policy.holdout_percent if rules.holdout_percent is None
            else rules.holdout_percent,
        }
        if scenario is Scenario.S08_LOYALTY:
            filled["from_purchase"] = rules.from_purchase or LOYALTY_FROM
            filled["every_days"] = rules.every_days or LOYALTY_EVERY_DAYS
        scenarios[scenario] = rules.model_copy(update=filled)
    return config.model_copy(update={"scenarios": scenarios})


def summary(shop: LoadedShop) -> list[str]:
    """``config check``'s few lines: that the file is good and what it configures."""
    config = shop.config
    roles = Counter("ignored" if p.ignore else "sample" if p.sample else p.role.value
                    for p in config.catalogue.values())
    kinds = ", ".join(f"{roles[k]} {k}" for k in ("main", "cross", "trial", "sample", "ignored") if roles[k])
    on, off = _switches(config)
    policy = config.policy
    return [
        f"{shop.path}: OK — {config.shop.name}",
        f"  catalogue  {len(config.catalogue)} SKUs" + (f": {kinds}" if kinds else ""),
        f"  scenarios  on: {' '.join(on) or 'none'}; off: {' '.join(off) or 'none'}",
        f"  policy     send at {policy.send_time:%H:%M}, at most {policy.frequency_cap.touches} touches per "
        f"{policy.frequency_cap.days} days, holdout {policy.holdout_percent} %",
        f"  templates  {len(shop.templates)} of the shop's own"
        + (f" in {config.templates.directory}" if config.templates.directory else ""),
        f"  segments   {', '.join(config.segments) or 'none'}",
        f"  broadcasts {_broadcasts(config)}",
        f"  digest     {shop.digest[:12]}",
    ]


def _broadcasts(config: ShopConfig) -> str:
    """``weekly_news (mailmag_email, email, 0 10 * * MON), nyusan_trial (teiki_no_nyusan, routed, by hand)``."""
    if not config.broadcasts:
        return "none"
    listed = ", ".join(f"{name} ({b.segment}, {b.channel.value if b.channel else 'routed'}, "
                       f"{b.schedule or 'by hand'})" for name, b in config.broadcasts.items())
    scheduled = any(b.schedule for b in config.broadcasts.values())
    return listed + (f"; schedules in {config.shop.timezone}" if scheduled else "")


def _switches(config: ShopConfig) -> tuple[list[str], list[str]]:
    on, off = [], []
    for scenario in Scenario:
        rules = config.scenarios.get(scenario, ScenarioRules())
        if not rules.enabled:
            off.append(scenario.value)
            continue
        on.append(scenario.value)
        off.extend(f"{scenario.value}.{step}" for step, r in rules.steps.items() if not r.enabled)
    return on, off


def to_text(shop: LoadedShop) -> list[str]:
    config = effective(shop.config)
    return [
        f"{config.shop.name} — {shop.path} (digest {shop.digest[:12]})", "",
        "[shop]", *_pairs(_flat(config.shop.model_dump(mode="json"))), "",
        f"[catalogue] {len(config.catalogue)} SKUs", *_catalogue(config), "",
        "[policy]", *_policy(config), "",
        "[scenarios]", *_scenarios(config), "",
        "[templates]", *_templates(shop),
    ]


def _flat(values: dict, prefix: str = "") -> Iterator[tuple[str, str]]:
    for key, value in values.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", "-" if value is None else str(value)


def _pairs(pairs: Any) -> list[str]:
    pairs = list(pairs)
    wide = max((width(k) for k, _ in pairs), default=0)
    return [f"  {k}{' ' * (wide - width(k))}  {v}" for k, v in pairs]


def _catalogue(config: ShopConfig) -> list[str]:
    rows = [[sku, p.name, "ignored" if p.ignore else "sample" if p.sample else p.role.value,
             str(p.days_supply or "-"), " ".join(p.cross) or "-", " ".join(p.similar) or "-",
             p.leads_to or "-", p.url or "-"] for sku, p in config.catalogue.items()]
    columns = ["SKU", "name", "role", "days", "cross", "similar", "leads_to", "url"]
    return ["  " + line for line in table(columns, rows, right=[False, False, False, True])] if rows else ["  (none)"]


def _policy(config: ShopConfig) -> list[str]:
    policy = config.policy
    hours = ", ".join(f"{c.value} {h.start:%H:%M}-{h.end:%H:%M}" for c, h in policy.allowed_hours.items())
    return _pairs([
        ("send_time", f"{policy.send_time:%H:%M} (member-local)"),
        ("allowed_hours", hours or "any time"),
        ("frequency_cap", f"{policy.frequency_cap.touches} touches per {policy.frequency_cap.days} days"),
        ("late_after_days", f"{policy.late_after_days} (later: expired)"),
        ("holdout_percent", f"{policy.holdout_percent} %"),
        ("grace_minutes", f"{policy.grace_minutes} (before an 'at once' step)"),
    ])


def _scenarios(config: ShopConfig) -> list[str]:
    rows, notes = [], []
    for scenario, rules in config.scenarios.items():
        template = BY_SCENARIO[scenario]
        variants = ", ".join(f"{v} {w}" for v, w in rules.variants.items()) or "-"
        for i, step in enumerate(template.steps):
            step_rules = rules.steps.get(step.name, StepRules())
            rows.append([f"{scenario.value} {template.name_ja}" if i == 0 else "",
                         "on" if rules.enabled and step_rules.enabled else "off", step.name,
                         step.channel.value if step.channel else "routed", timing(step, step_rules),
                         f"{rules.holdout_percent} %" if i == 0 else "", variants if i == 0 else ""])
        if scenario is Scenario.S08_LOYALTY:
            notes.append(f"  S08: from main purchase {rules.from_purchase}, at most once per {rules.every_days} days")
    columns = ["scenario", "on", "step", "channel", "timing", "holdout", "variants"]
    return ["  " + line for line in table(columns, rows)] + notes


def timing(step: Step, rules: StepRules) -> str:
    """When the step falls, in words; ``(shop)`` marks a timing the file set."""
    if step.timing.at_once:
        return "at once"
    days = step.timing.days if rules.days is None else rules.days
    supply = step.timing.supply if rules.supply is None else rules.supply
    text = _offset(step.timing.anchor, days, supply) + (" (shop)" if rules.moves else "")
    for cycle, moved in sorted(rules.by_cycle.items()):
        text += f"; {cycle}-day products: {_offset(step.timing.anchor, moved.days, moved.supply)} (shop)"
    return text


def _offset(anchor: str, days: int, supply: Fraction) -> str:
    text = anchor
    if supply:
        text += " + supply" if supply == 1 else f" + {supply} × supply"
    if days:
        text += f" {'+' if days > 0 else '-'} {abs(days)} d"
    return text


def _templates(shop: LoadedShop) -> list[str]:
    directory = shop.config.templates.directory
    if directory is None:
        return ["  directory  - (the built-in templates only)"]
    return [f"  directory  {directory} ({len(shop.templates)} of the shop's own)",
            *(f"    {name}" for name in sorted(shop.templates))]
