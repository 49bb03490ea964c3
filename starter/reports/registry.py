"""Every report by name: its title, columns, SQL and parameters, and ``run_report``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable, Literal

import asyncpg

from starter.reports.cohorts import (
    FUNNEL_SQL, FUNNEL_STEPS, LTV_DAYS, LTV_SQL, SUBSCRIPTION_DELIVERIES, SUBSCRIPTION_FLOW_SQL,
)
from starter.reports.period import ReportError, Window, window
from starter.reports.render import Report
from starter.reports.scenarios import SCENARIOS_SQL, scenario_args
from starter.reports.segments import CPM_SEGMENTS, CPM_SQL, RFM_SQL


@dataclass(frozen=True)
class ReportSpec:
    name: str
    title: str
    columns: tuple[str, ...]
    sql: str
    args: Callable[[Window], tuple]
    # What as_of defaults to: "now", "to" (the end of --to if given, else now: RFM and CPM
    # are a picture at one moment), or None when the report does not use it.
    as_of: Literal["now", "to"] | None = None
    # Float columns shown with one decimal in the text table (others: three).
    one_decimal: frozenset[str] = frozenset()


REPORTS: dict[str, ReportSpec] = {spec.name: spec for spec in (
    ReportSpec(
        "scenarios", "シナリオ別KPI (ホールドアウト比較)",
        ("scenario", "name", "variant", "kpi", "window_days", "entered", "holdout", "touched", "converted",
         "rate", "holdout_converted", "holdout_rate", "lift", "lift_ci_low", "lift_ci_high"),
        SCENARIOS_SQL, scenario_args,
    ),
    ReportSpec(
        "funnel", "ライフサイクルファネル (ゴールデンルート)",
        ("step", "label", "members", "from_previous", "rate", "median_days"),
        FUNNEL_SQL,
        lambda w: (w.start, w.end, [s for s, _ in FUNNEL_STEPS], [label for _, label in FUNNEL_STEPS]),
        one_decimal=frozenset({"median_days"}),
    ),
    ReportSpec(
        "subscription-flow", "定期フロー (お届け回数別の継続率)",
        ("cohort", "started", *(f"d{k}" for k in range(1, SUBSCRIPTION_DELIVERIES + 1))),
        SUBSCRIPTION_FLOW_SQL, lambda w: (w.start, w.end, w.as_of), as_of="now",
    ),
    ReportSpec(
        "rfm", "RFM分析",
        ("r", "f", "segment", "members", "revenue", "avg_revenue", "avg_m"),
        RFM_SQL, lambda w: (w.as_of,), as_of="to",
    ),
    ReportSpec(
        "cpm", "顧客ポートフォリオ (CPM)",
        ("segment", "members", "revenue", "avg_revenue", "share"),
        CPM_SQL, lambda w: (w.as_of, list(CPM_SEGMENTS)), as_of="to",
    ),
    ReportSpec(
        "ltv", "LTV (初回購入月コホート別・1人あたり累計売上)",
        ("cohort", "members", *(f"day_{d}" for d in LTV_DAYS)),
        LTV_SQL, lambda w: (w.start, w.end, w.as_of), as_of="now",
    ),
)}



def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def get_spec(name: str) -> ReportSpec:
    try:
        return REPORTS[name]
    except KeyError:
        raise ReportError(f"unknown report {name!r}: choose from {', '.join(REPORTS)}") from None


async def run_report(conn_or_pool: asyncpg.Connection | asyncpg.Pool, name: str, start: date | None = None,
                     end: date | None = None, as_of: datetime | None = None) -> Report:
    """Run one report over the read models; ``start``/``end`` are inclusive dates in the shop's timezone."""
    spec = get_spec(name)
    w = window(spec, start, end, as_of)
    records = await conn_or_pool.fetch(spec.sql, *spec.args(w))
    rows = [{c: _plain(r[c]) for c in spec.columns} for r in records]
    # RFM and CPM are a picture at one moment: --from has no part in them.
    return Report(name=spec.name, title=spec.title, columns=list(spec.columns), rows=rows,
                  start=None if spec.as_of == "to" else start, end=end,
                  as_of=w.as_of if spec.as_of else None, one_decimal=spec.one_decimal)
