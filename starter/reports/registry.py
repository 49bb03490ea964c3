"""Every report by name: its title, columns, SQL and parameters, and ``run_report``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Awaitable, Callable, Literal, Mapping

import asyncpg

from starter.reports.broadcasts import add_broadcasts, runs_terms
from starter.reports.channels import CHANNELS_SQL, STATES, add_uncertain, channels_args
from starter.reports.cohorts import (
    FUNNEL_SQL, FUNNEL_STEPS, LTV_DAYS, LTV_SQL, SUBSCRIPTION_DELIVERIES, SUBSCRIPTION_FLOW_SQL,
)
from starter.reports.cross_sell import CROSS_SELL_SQL, cross_sell_args, cross_sell_terms
from starter.reports.cross_sell import OPTIONS as CROSS_SELL_OPTIONS
from starter.reports.period import ReportError, Window, read_shop, window
from starter.reports.product_flow import PRODUCT_FLOW_SQL
from starter.reports.products import PRODUCTS_SQL
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
    # A report with more than its table completes it here (channels: the uncertain sends;
    # scenarios: the broadcasts' rows), taking the options as keywords too.
    complete: Callable[..., Awaitable[Report]] | None = None
    # Options beyond the period, (name, default) (cross-sell: within, min_members): ``args`` and
    # ``terms`` (what the title adds, e.g. the minimum support) then take them as keywords.
    options: tuple[tuple[str, Any], ...] = ()
    terms: Callable[..., str] | None = None

    def __post_init__(self) -> None:
        if len(self.headers) != len(self.columns):
            raise ValueError(f"{self.name}: {len(self.columns)} columns, {len(self.headers)} headings")


def _columns(*pairs: tuple[str, str]) -> dict[str, tuple[str, ...]]:
    """(identifier, 見出し) pairs as ReportSpec's ``columns`` and ``headers``, kept side by side."""
    return {"columns": tuple(c for c, _ in pairs), "headers": tuple(h for _, h in pairs)}


REPORTS: dict[str, ReportSpec] = {spec.name: spec for spec in (
    ReportSpec(
        "scenarios", "シナリオ別KPI (ホールドアウト比較)",
        # Then one row per broadcast (scenario BC, name = the broadcast; --runs: per run), whose
        # suppressed / suppressed_by / expired count its touches (a scenario's rows leave them empty).
        **_columns(("scenario", "シナリオ"), ("name", "シナリオ名"), ("variant", "パターン"), ("run", "回"),
                   ("kpi", "KPI"), ("window_days", "計測日数"), ("entered", "対象"), ("holdout", "ホールドアウト"),
                   ("touched", "配信"), ("suppressed", "抑止"), ("suppressed_by", "抑止理由"),
                   ("expired", "期限切れ"), ("converted", "転換"), ("rate", "転換率"),
                   ("holdout_converted", "ホールドアウト転換"), ("holdout_rate", "ホールドアウト転換率"),
                   ("lift", "リフト"), ("lift_ci_low", "リフト下限"), ("lift_ci_high", "リフト上限")),
        sql=SCENARIOS_SQL, args=scenario_args, complete=add_broadcasts, options=(("runs", False),),
        terms=runs_terms,
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
    ReportSpec(
        "product-flow", "購入フロー (1回目→2回目→3回目の購入商品)",
        **_columns(("step", "ステップ"), ("from_sku", "購入商品"), ("from_name", "商品名"),
                   ("from_members", "購入会員数"), ("to_sku", "次の購入商品"), ("to_name", "次の商品名"),
                   ("members", "会員数"), ("rate", "割合")),
        sql=PRODUCT_FLOW_SQL, args=lambda w: (w.start, w.end, w.as_of), as_of="now",
    ),
    ReportSpec(
        "products", "商品別新規・リピート (本商品・月別)",
        **_columns(("sku", "商品"), ("name", "商品名"), ("month", "月"), ("new_buyers", "新規購入者"),
                   ("repeat_buyers", "リピート購入者"), ("orders", "注文数"), ("units", "個数"),
                   ("revenue", "売上"), ("repeat_rate", "リピート率")),
        sql=PRODUCTS_SQL, args=lambda w: (w.start, w.end, w.timezone),
    ),
    ReportSpec(
        "cross-sell", "クロスセル分析",
        **_columns(("sku_a", "商品A"), ("name_a", "商品名A"), ("role_a", "区分A"), ("sku_b", "商品B"),
                   ("name_b", "商品名B"), ("role_b", "区分B"), ("members_a", "A購入会員"),
                   ("members_b", "B購入会員"), ("members_both", "両方購入"), ("attach_rate", "併買率"),
                   ("confidence", "信頼度"), ("lift", "リフト"), ("main_to_cross", "本品→クロス")),
        sql=CROSS_SELL_SQL, args=cross_sell_args, options=CROSS_SELL_OPTIONS, terms=cross_sell_terms,
    ),
)}


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def get_spec(name: str) -> ReportSpec:
    try:
        return REPORTS[name]
    except KeyError:
        raise ReportError(f"unknown report {name!r}: choose from {', '.join(REPORTS)}") from None


def _options(spec: ReportSpec, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The spec's options with the given values (None: the default); one it does not take is an error."""
    given = {k: v for k, v in (given or {}).items() if v is not None}
    if unknown := sorted(set(given) - {k for k, _ in spec.options}):
        raise ReportError(f"report {spec.name} takes no {', '.join('--' + k.replace('_', '-') for k in unknown)}")
    return {**dict(spec.options), **given}


async def run_report(conn_or_pool: asyncpg.Connection | asyncpg.Pool, name: str, start: date | None = None,
                     end: date | None = None, as_of: datetime | None = None,
                     options: Mapping[str, Any] | None = None) -> Report:
    """Run one report over the read models; ``start``/``end`` are inclusive dates in the shop's timezone
    (its configuration's, ``period.read_shop``); ``options`` those the report takes (cross-sell's
    ``within``, ``min_members``)."""
    spec = get_spec(name)
    chosen = _options(spec, options)
    w = window(spec, start, end, as_of, shop=await read_shop(conn_or_pool))
    records = await conn_or_pool.fetch(spec.sql, *(spec.args(w, **chosen) if spec.options else spec.args(w)))
    rows = [{c: _plain(r[c]) for c in spec.columns} for r in records]
    title = spec.title + (spec.terms(**chosen) if spec.terms else "")
    # RFM and CPM are a picture at one moment: --from has no part in them.
    report = Report(name=spec.name, title=title, columns=list(spec.columns), rows=rows,
                    start=None if spec.as_of == "to" else start, end=end,
                    as_of=w.as_of if spec.as_of else None, one_decimal=spec.one_decimal,
                    headers=list(spec.headers), timezone=w.timezone)
    return await spec.complete(conn_or_pool, w, report, **chosen) if spec.complete else report
