"""Every report by name: its title, columns, SQL and parameters, and ``run_report``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Awaitable, Callable, Literal

import asyncpg

from starter.reports.channels import CHANNELS_SQL, STATES, add_uncertain, channels_args
from starter.reports.cohorts import (
    FUNNEL_SQL, FUNNEL_STEPS, LTV_DAYS, LTV_SQL, SUBSCRIPTION_DELIVERIES, SUBSCRIPTION_FLOW_SQL,
)
from starter.reports.period import ReportError, Window, read_shop, window
from starter.reports.render import Report
from starter.reports.scenarios import SCENARIOS_SQL, scenario_args
from starter.reports.segments import CPM_SEGMENTS, CPM_SQL, RFM_SQL


@dataclass(frozen=True)
class ReportSpec:
    name: str
    title: str
    columns: tuple[str, ...]  # identifiers: the SQL's column names, JSON keys, the CSV header
    headers: tuple[str, ...]  # the same columns as the terminal's Japanese headings
    sql: str
    args: Callable[[Window], tuple]
    # What as_of defaults to: "now", "to" (the end of --to if given, else now: RFM and CPM
    # are a picture at one moment), or None when the report does not use it.
    as_of: Literal["now", "to"] | None = None
    # Float columns shown with one decimal in the text table (others: three).
    one_decimal: frozenset[str] = frozenset()
    # A report with more than its table completes it here (channels: the uncertain sends).
    complete: Callable[[Any, Window, Report], Awaitable[Report]] | None = None

    def __post_init__(self) -> None:
        if len(self.headers) != len(self.columns):
            raise ValueError(f"{self.name}: {len(self.columns)} columns, {len(self.headers)} headings")


def _columns(*pairs: tuple[str, str]) -> dict[str, tuple[str, ...]]:
    """(identifier, 見出し) pairs as ReportSpec's ``columns`` and ``headers``, kept side by side."""
    return {"columns": tuple(c for c, _ in pairs), "headers": tuple(h for _, h in pairs)}


REPORTS: dict[str, ReportSpec] = {spec.name: spec for spec in (
    ReportSpec(
        "scenarios", "シナリオ別KPI (ホールドアウト比較)",
        **_columns(("scenario", "シナリオ"), ("name", "シナリオ名"), ("variant", "パターン"), ("kpi", "KPI"),
                   ("window_days", "計測日数"), ("entered", "対象"), ("holdout", "ホールドアウト"),
                   ("touched", "配信"), ("converted", "転換"), ("rate", "転換率"),
                   ("holdout_converted", "ホールドアウト転換"), ("holdout_rate", "ホールドアウト転換率"),
                   ("lift", "リフト"), ("lift_ci_low", "リフト下限"), ("lift_ci_high", "リフト上限")),
        sql=SCENARIOS_SQL, args=scenario_args,
    ),
    ReportSpec(
        "funnel", "ライフサイクルファネル (ゴールデンルート)",
        **_columns(("step", "ステップ"), ("label", "段階"), ("members", "会員数"), ("from_previous", "前段から"),
                   ("rate", "前段からの転換率"), ("median_days", "日数(中央値)")),
        sql=FUNNEL_SQL,
        args=lambda w: (w.start, w.end, [s for s, _ in FUNNEL_STEPS], [label for _, label in FUNNEL_STEPS]),
        one_decimal=frozenset({"median_days"}),
    ),
    ReportSpec(
        "subscription-flow", "定期フロー (お届け回数別の継続率)",
        **_columns(("cohort", "開始月"), ("started", "開始数"),
                   *((f"d{k}", f"{k}回目") for k in range(1, SUBSCRIPTION_DELIVERIES + 1))),
        sql=SUBSCRIPTION_FLOW_SQL, args=lambda w: (w.start, w.end, w.as_of, w.timezone), as_of="now",
    ),
    ReportSpec(
        "rfm", "RFM分析",
        **_columns(("r", "R"), ("f", "F"), ("segment", "セグメント"), ("members", "会員数"), ("revenue", "累計売上"),
                   ("avg_revenue", "平均売上"), ("avg_m", "平均M")),
        sql=RFM_SQL, args=lambda w: (w.as_of,), as_of="to",
    ),
    ReportSpec(
        "cpm", "顧客ポートフォリオ (CPM)",
        **_columns(("segment", "セグメント"), ("members", "会員数"), ("revenue", "累計売上"),
                   ("avg_revenue", "平均売上"), ("share", "会員構成比")),
        sql=CPM_SQL, args=lambda w: (w.as_of, list(CPM_SEGMENTS)), as_of="to",
    ),
    ReportSpec(
        "ltv", "LTV (初回購入月コホート別・1人あたり累計売上)",
        **_columns(("cohort", "初回購入月"), ("members", "会員数"),
                   *((f"day_{d}", f"{d}日後" if d else "当日") for d in LTV_DAYS)),
        sql=LTV_SQL, args=lambda w: (w.start, w.end, w.as_of, w.timezone), as_of="now",
    ),
    ReportSpec(
        "channels", "チャネル別の配信状況 (日別)",
        **_columns(("channel", "チャネル"), ("day", "日付"), ("messages", "通数"),
                   *zip(STATES, ("送信済", "失敗", "不明", "待機", "送信中", "出力済")),
                   ("attempts", "試行回数"), ("top_failures", "主な失敗理由")),
        sql=CHANNELS_SQL, args=channels_args, complete=add_uncertain,
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
    """Run one report over the read models; ``start``/``end`` are inclusive dates in the shop's timezone
    (its configuration's, ``period.read_shop``)."""
    spec = get_spec(name)
    w = window(spec, start, end, as_of, shop=await read_shop(conn_or_pool))
    records = await conn_or_pool.fetch(spec.sql, *spec.args(w))
    rows = [{c: _plain(r[c]) for c in spec.columns} for r in records]
    # RFM and CPM are a picture at one moment: --from has no part in them.
    report = Report(name=spec.name, title=spec.title, columns=list(spec.columns), rows=rows,
                    start=None if spec.as_of == "to" else start, end=end,
                    as_of=w.as_of if spec.as_of else None, one_decimal=spec.one_decimal,
                    headers=list(spec.headers), timezone=w.timezone)
    return await spec.complete(conn_or_pool, w, report) if spec.complete else report
