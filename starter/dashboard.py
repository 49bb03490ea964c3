"""The marketers' dashboard: one self-contained HTML file drawn from the reports.

``write_dashboard`` asks ``starter.reports.run_report`` for the funnel, the 定期フロー,
LTV by cohort, the scenario KPIs and the broadcasts' (``starter.dashboard_broadcasts``),
CPM and the product analyses (購入フロー, 商品別新規・リピート, クロスセル:
``starter.dashboard_products``), and ``render_dashboard`` (pure) turns
them into one HTML document with inline SVG charts and inline CSS: no script, no
external stylesheet, font or image, so it opens the same on a laptop with no
network and can be mailed around as one file.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any, Mapping

from zoneinfo import ZoneInfo

from starter import dashboard_broadcasts, dashboard_products, svg
from starter.reports import DEFAULT_TIMEZONE, run_report
from workflows.scenarios import TEMPLATES

TITLE = "goldenroute CRMダッシュボード"
REPORTS = ("funnel", "subscription-flow", "ltv", "scenarios", "cpm", "product-flow", "products", "cross-sell")
SECTIONS = {
    "funnel": "ライフサイクル・ファネル",
    "subscription-flow": "定期フロー(お届け回数別の継続率)",
    "ltv": "コホート別LTV(累積売上の平均)",
    "scenarios": "シナリオ別KPIとホールドアウト比較(リフト)",
    **dashboard_broadcasts.SECTIONS,
    "cpm": "CPM分析(顧客ポートフォリオ)",
    **dashboard_products.SECTIONS,
}
FUNNEL_STEPS = {
    "sample_or_trial": "サンプル・お試し", "f1": "F1 初回本品購入", "f2": "F2 2回目購入",
    "f3": "F3 3回目購入", "established": "定着 (F4以上)",
}
DELIVERIES = 12
TOTAL = "合計"  # the subscription-flow report's all-cohorts row
DELIVERY_DAYS = 30  # the usual 定期 interval: delivery k is due (k − 1) × 30 days after the start
LTV_DAYS = tuple(range(0, 361, 30))
# KPIs where fewer conversions is the goal (S12: 解約率), so a negative lift is the good one.
LOWER_IS_BETTER = frozenset(t.scenario.value for t in TEMPLATES if t.converts_on == "subscription_cancelled")
SMALL_GROUP = 10  # holdout members below which a lift's interval is only indicative


async def write_dashboard(pool: Any, out: Path, start: date | None = None, end: date | None = None, *,
                          as_of: datetime | None = None) -> None:
    """Run the reports for the period (inclusive dates, shop timezone) and write the dashboard to ``out``.

    ``as_of`` is the dashboard's "today" (default: now): the LTV and CPM reports and the
    定期フロー's not-yet-due cells are read as of it.
    """
    reports = {name: await run_report(pool, name, start=start, end=end, as_of=as_of) for name in REPORTS}
    html = render_dashboard(reports, start=start, end=end, as_of=as_of, zone=reports["funnel"].timezone)
    Path(out).write_text(html, encoding="utf-8")


def render_dashboard(reports: Mapping[str, Any], *, start: Any = None, end: Any = None,
                     as_of: datetime | None = None, zone: str = DEFAULT_TIMEZONE) -> str:
    """The whole document; ``reports`` maps a report name to its Report (rows of dicts)."""
    rows = {name: list(report.rows) for name, report in reports.items()}
    # The scenario report's broadcast rows (scenario BC) have a section of their own.
    scenarios = [r for r in rows.get("scenarios", []) if not dashboard_broadcasts.is_broadcast_row(r)]
    broadcasts = [r for r in rows.get("scenarios", []) if dashboard_broadcasts.is_broadcast_row(r)]
    now = (as_of or datetime.now(timezone.utc)).astimezone(ZoneInfo(zone))  # the shop's
    generated = now.strftime("%Y-%m-%d %H:%M %Z")
    period = f"{_day(start) or '最初'} 〜 {_day(end) or '現在'}"
    body = "".join([
        f"<header><h1>{escape(TITLE)}</h1><p class=meta>集計期間: {escape(period)}"
        f" ・ 基準日時: {escape(generated)}</p></header>",
        _summary(rows),
        _section("funnel", _funnel_chart(rows.get("funnel", [])) + _funnel_note()),
        _section("subscription-flow", _retention_heatmap(rows.get("subscription-flow", []), now)),
        _section("ltv", _ltv_chart(rows.get("ltv", []))),
        _section("scenarios", _lift_chart(scenarios) + _scenario_table(scenarios)),
        _section("broadcasts", dashboard_broadcasts.broadcasts(broadcasts)),
        _section("cpm", _cpm_table(rows.get("cpm", []))) if "cpm" in rows else "",
        _section("product-flow", dashboard_products.product_flow(rows.get("product-flow", []))),
        _section("products", dashboard_products.products(rows.get("products", []))),
        _section("cross-sell", dashboard_products.cross_sell(rows.get("cross-sell", []))),
    ])
    return (
        "<!DOCTYPE html>\n<html lang=ja><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>{escape(TITLE)}</title><style>{CSS}{dashboard_products.CSS}{dashboard_broadcasts.CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


CSS = f"""
body{{margin:0;background:#f5f7fa;color:{svg.INK};font-family:{svg.FONT};font-size:14px;line-height:1.5}}
main{{max-width:1240px;margin:0 auto;padding:24px}}
header h1{{margin:0;font-size:26px}} .meta{{color:{svg.MUTED};margin:4px 0 16px}}
section{{background:#fff;border:1px solid #e4e7eb;border-radius:8px;padding:16px 20px;margin:0 0 20px}}
section h2{{font-size:18px;margin:0 0 12px;border-left:4px solid #0072b2;padding-left:8px}}
svg{{max-width:100%;height:auto;display:block}}
.cards{{display:flex;gap:12px;margin:0 0 20px;flex-wrap:wrap}}
.card{{flex:1;min-width:180px;background:#fff;border:1px solid #e4e7eb;border-radius:8px;padding:12px 16px}}
.card b{{display:block;font-size:24px}} .card span{{color:{svg.MUTED};font-size:12px}}
table{{border-collapse:collapse;width:100%;font-size:13px;margin-top:12px}}
th,td{{border-bottom:1px solid #e4e7eb;padding:6px 8px;text-align:right;white-space:nowrap}}
th{{background:#f0f4f8;font-weight:600}} td.l,th.l{{text-align:left;white-space:normal}}
tr.good td{{background:#e6f4ea}} tr.bad td{{background:#fdecea}} tr.sig td.lift{{font-weight:700}}
.note{{color:{svg.MUTED};font-size:12px;margin:8px 0 0}}
.bar{{display:inline-block;height:10px;background:#0072b2;border-radius:2px;vertical-align:middle}}
.empty{{color:{svg.MUTED};padding:24px;text-align:center}}
"""


# --- values ------------------------------------------------------------------------------


def _col(row: Mapping[str, Any], *names: str) -> Any:
    """The first of ``names`` the row has: the reports' column names, then the older contract's."""
    return next((row[name] for name in names if name in row), None)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    return float(value) if isinstance(value, (int, float, Decimal)) else None


def _int(value: Any) -> str:
    number = _num(value)
    return "—" if number is None else f"{number:,.0f}"


def _pct(value: Any, digits: int = 1) -> str:
    number = _num(value)
    return "—" if number is None else f"{number * 100:.{digits}f}%"


def _pt(value: Any) -> str:
    number = _num(value)
    return "—" if number is None else f"{number * 100:+.1f}pt"


def _yen(value: Any) -> str:
    number = _num(value)
    return "—" if number is None else f"¥{number:,.0f}"


def _day(value: Any) -> str | None:
    if value is None:
        return None
    return value.date().isoformat() if isinstance(value, datetime) else str(value)


def _section(name: str, content: str) -> str:
    return f"<section id={escape(name)}><h2>{escape(SECTIONS[name])}</h2>{content}</section>"


def _empty(message: str = "この期間のデータはありません") -> str:
    return f"<p class=empty>{escape(message)}</p>"


def _summary(rows: Mapping[str, list[dict]]) -> str:
    funnel = {r.get("step"): r for r in rows.get("funnel", [])}
    flows = [r for r in rows.get("subscription-flow", []) if r.get("cohort") != TOTAL]
    cards = [
        ("総売上(CPM対象会員)", _yen(sum(_num(r.get("revenue")) or 0 for r in rows.get("cpm", [])))),
        ("本品購入会員 (F1)", f"{_int(funnel.get('f1', {}).get('members'))}人"),
        ("F2転換率", _pct(_col(funnel.get("f2", {}), "rate", "rate_from_previous"))),
        ("定期開始", f"{_int(sum(_num(r.get('started')) or 0 for r in flows))}件"),
    ]
    inner = "".join(f"<div class=card><span>{escape(k)}</span><b>{escape(v)}</b></div>" for k, v in cards)
    return f"<div class=cards>{inner}</div>"


# --- the funnel ------------------------------------------------------------------------------


def _step_label(row: Mapping[str, Any]) -> str:
    return str(row.get("label") or FUNNEL_STEPS.get(row.get("step"), row.get("step")))


def _funnel_chart(rows: list[dict]) -> str:
    if not rows:
        return _empty()
    label_w, bar_w, row_h, top = 170, 600, 46, 10
    canvas = svg.Canvas(label_w + bar_w + 290, top + row_h * len(rows) + 10, "ライフサイクル・ファネル")
    most = max((_num(r.get("members")) or 0 for r in rows), default=0) or 1
    for i, row in enumerate(rows):
        y = top + i * row_h
        members = _num(row.get("members")) or 0
        width = bar_w * members / most
        canvas.text(0, y + 16, _step_label(row), size=13, weight="600")
        canvas.rect(label_w, y + 4, bar_w, 24, "#eef2f6", rx=3)
        canvas.rect(label_w, y + 4, width, 24, svg.CATEGORICAL[0], rx=3)
        if width > 70:  # the count inside the bar's end, else just after it
            canvas.text(label_w + width - 8, y + 16, f"{_int(members)}人", size=13, weight="700",
                        fill="#ffffff", anchor="end")
        else:
            canvas.text(label_w + width + 8, y + 16, f"{_int(members)}人", size=13, weight="700")
        detail = [] if i == 0 else [f"前段比 {_pct(_col(row, 'rate', 'rate_from_previous'))}"]
        median = _col(row, "median_days", "median_days_from_previous")
        if _num(median) is not None:
            detail.append(f"中央値 {_num(median):.0f}日")
        canvas.text(label_w + bar_w + 16, y + 16, " ・ ".join(detail), size=12, fill=svg.MUTED)
    table = "".join(
        f"<tr data-step='{escape(str(r.get('step')), quote=True)}'><td class=l>{escape(_step_label(r))}</td>"
        f"<td class=members>{_int(r.get('members'))}</td><td>{_int(r.get('from_previous'))}</td>"
        f"<td>{_pct(_col(r, 'rate', 'rate_from_previous'))}</td>"
        f"<td>{_days(_col(r, 'median_days', 'median_days_from_previous'))}</td></tr>" for r in rows
    )
    return (canvas.render() + "<table class=funnel><thead><tr><th class=l>段階</th><th>会員数</th>"
            "<th>うち前段から</th><th>前段からの転換率</th><th>前段からの日数(中央値)</th></tr></thead>"
            f"<tbody>{table}</tbody></table>")


def _days(value: Any) -> str:
    number = _num(value)
    return "—" if number is None else f"{number:.1f}日"


def _funnel_note() -> str:
    return ("<p class=note>会員数はその段階に到達した会員(本品購入はキャンセルされていない main 行を含む注文)。"
            "前段比は一つ前の段階に到達した会員のうち、その後この段階に到達した割合。</p>")


# --- 定期フロー heat map ------------------------------------------------------------------------


def _share(row: Mapping[str, Any], k: int) -> float | None:
    return _num(_col(row, f"d{k}", f"delivery_{k}"))


def _due_for_all(cohort: str, k: int, as_of: datetime) -> bool:
    """Has delivery k come due for every subscription of the cohort (a month 'YYYY-MM') by as_of?

    The report counts subscriptions with at least k deliveries, so a young cohort's later
    columns are low only because those deliveries are not due yet: they are left blank.
    """
    try:
        year, month = (int(part) for part in cohort.split("-"))
    except ValueError:
        return True  # 合計 and anything else that is not a month: shown as it is
    month_end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=as_of.tzinfo or timezone.utc)
    return month_end + timedelta(days=(k - 1) * DELIVERY_DAYS) <= as_of


def _retention_heatmap(rows: list[dict], as_of: datetime) -> str:
    if not rows:
        return _empty()
    label_w, started_w, cell_w, cell_h, top = 84, 64, 58, 28, 30
    width = label_w + started_w + cell_w * DELIVERIES + 10
    canvas = svg.Canvas(width, top + cell_h * len(rows) + 74, "定期フロー: コホート × お届け回数の継続率")
    canvas.text(0, 14, "開始月", size=12, weight="600")
    canvas.text(label_w + started_w - 8, 14, "開始数", size=12, weight="600", anchor="end")
    for k in range(1, DELIVERIES + 1):
        canvas.text(label_w + started_w + (k - 0.5) * cell_w, 14, f"{k}回目", size=12, weight="600",
                    anchor="middle")
    for i, row in enumerate(rows):
        y, cohort = top + i * cell_h + (4 if row.get("cohort") == TOTAL else 0), str(row.get("cohort"))
        weight = "700" if cohort == TOTAL else None
        if cohort == TOTAL:
            canvas.line(0, y - 2, width - 10, y - 2, stroke="#9aa5b1")
        canvas.text(0, y + cell_h / 2, cohort, size=12, weight=weight)
        canvas.text(label_w + started_w - 8, y + cell_h / 2, _int(row.get("started")), size=12, anchor="end",
                    weight=weight)
        for k in range(1, DELIVERIES + 1):
            x, share = label_w + started_w + (k - 1) * cell_w, _share(row, k)
            if share is None or not _due_for_all(cohort, k, as_of):
                canvas.rect(x + 1, y + 1, cell_w - 2, cell_h - 2, "#f5f7fa")
                canvas.text(x + cell_w / 2, y + cell_h / 2, "—", size=11, fill="#9aa5b1", anchor="middle")
                continue
            fill = svg.ramp(share)
            canvas.rect(x + 1, y + 1, cell_w - 2, cell_h - 2, fill)
            canvas.text(x + cell_w / 2, y + cell_h / 2, _pct(share, 0), size=11, fill=svg.readable_on(fill),
                        anchor="middle", weight=weight)
    _heat_legend(canvas, label_w + started_w, top + cell_h * len(rows) + 26)
    return canvas.render() + (
        "<p class=note>各セルは開始月コホートの定期のうち、n回目のお届けまで続いた割合。"
        f"—: コホート全員にn回目が来る時期(開始月末 + (n−1)×{DELIVERY_DAYS}日)がまだ来ていない。"
        "合計行は全コホートをまとめた値(若いコホートの未到来分を含む)。</p>")


def _heat_legend(canvas: svg.Canvas, x: float, y: float) -> None:
    stops = [(i / (len(svg.BLUES) - 1), c) for i, c in enumerate(svg.BLUES)]
    canvas.rect(x, y, 240, 12, canvas.gradient("retention-scale", stops), stroke="#cbd2d9")
    for share in (0, 0.25, 0.5, 0.75, 1):
        canvas.line(x + 240 * share, y + 12, x + 240 * share, y + 17, stroke=svg.MUTED)
        canvas.text(x + 240 * share, y + 27, _pct(share, 0), size=11, fill=svg.MUTED, anchor="middle")
    canvas.text(x + 256, y + 6, "継続率", size=11, fill=svg.MUTED)


# --- LTV curves ---------------------------------------------------------------------------------


def _ltv_chart(rows: list[dict]) -> str:
    series = [(str(r.get("cohort")), _num(r.get("members")), [(d, _num(r.get(f"day_{d}"))) for d in LTV_DAYS])
              for r in rows]
    values = [v for _, _, points in series for _, v in points if v is not None]
    if not values:
        return _empty()
    left, right, top, bottom, plot_w, plot_h = 80, 190, 16, 50, 640, 360
    canvas = svg.Canvas(left + plot_w + right, top + plot_h + bottom, "コホート別LTV曲線(0〜360日)")
    y_ticks = svg.nice_ticks(0, max(values), 6)
    y_max = y_ticks[-1] or 1

    def at(day: float, yen: float) -> tuple[float, float]:
        return left + plot_w * day / LTV_DAYS[-1], top + plot_h * (1 - yen / y_max)

    for tick in y_ticks:
        _, y = at(0, tick)
        canvas.line(left, y, left + plot_w, y)
        canvas.text(left - 8, y, _yen(tick), size=11, fill=svg.MUTED, anchor="end")
    for day in range(0, LTV_DAYS[-1] + 1, 60):
        x, y = at(day, 0)
        canvas.line(x, top, x, y, stroke="#f0f2f5")
        canvas.line(x, y, x, y + 5, stroke=svg.MUTED)
        canvas.text(x, y + 16, f"{day}日", size=11, fill=svg.MUTED, anchor="middle")
    canvas.line(left, top + plot_h, left + plot_w, top + plot_h, stroke=svg.MUTED)
    canvas.line(left, top, left, top + plot_h, stroke=svg.MUTED)
    canvas.text(left + plot_w / 2, top + plot_h + 38, "初回購入からの日数", size=12, fill=svg.MUTED, anchor="middle")
    for i, (cohort, members, points) in enumerate(series):
        colour = svg.CATEGORICAL[i % len(svg.CATEGORICAL)]
        drawn = []
        for day, value in points:
            if value is None:
                break  # NULL: that many days have not passed yet for this cohort
            drawn.append(at(day, value))
        if drawn:
            canvas.polyline(drawn, colour)
            for x, y in drawn:
                canvas.circle(x, y, 2.5, colour)
        y = top + 8 + i * 20
        canvas.line(left + plot_w + 20, y, left + plot_w + 44, y, stroke=colour, width=3)
        canvas.text(left + plot_w + 50, y, f"{cohort}({_int(members)}人)", size=12)
    return canvas.render() + ("<p class=note>コホートは初回購入月。各点はコホート会員1人あたりの累積売上の平均"
                              "(経過していない日数は描いていない)。</p>")


# --- scenario KPIs and lift ---------------------------------------------------------------------


def _entered(rows: list[dict]) -> list[dict]:
    return [r for r in rows if (_num(r.get("entered")) or 0) > 0]


def _significance(row: Mapping[str, Any]) -> str | None:
    """'up' / 'down' when the lift's 95 % CI excludes 0, else None."""
    low, high = _num(row.get("lift_ci_low")), _num(row.get("lift_ci_high"))
    if low is not None and low > 0:
        return "up"
    if high is not None and high < 0:
        return "down"
    return None


def _verdict(row: Mapping[str, Any]) -> str | None:
    """'good' / 'bad' for a lift whose CI excludes 0: up is good unless the KPI is one to lower (解約率)."""
    direction = _significance(row)
    if direction is None:
        return None
    lower_is_better = str(row.get("scenario")) in LOWER_IS_BETTER
    return "good" if (direction == "up") != lower_is_better else "bad"


def _caveat(row: Mapping[str, Any]) -> str:
    """※ where the normal-approximation interval cannot be trusted: a tiny group, or a rate of 0 or 1."""
    rates = [_num(row.get("rate")), _num(row.get("holdout_rate"))]
    small = (_num(row.get("holdout")) or 0) < SMALL_GROUP
    return " ※" if small or any(rate in (0.0, 1.0) for rate in rates if rate is not None) else ""


def _scenario_label(row: Mapping[str, Any]) -> str:
    variant = f" [{row['variant']}]" if row.get("variant") not in (None, "", "-") else ""  # '-': no variants
    return f"{row.get('scenario')} {row.get('name') or ''}{variant}"


def _lift_chart(rows: list[dict]) -> str:
    rows = [r for r in _entered(rows) if _num(r.get("lift")) is not None]
    if not rows:
        return _empty("リフトを計算できるシナリオはまだありません")
    bounds = [abs(_num(r.get(k)) or 0) for r in rows for k in ("lift", "lift_ci_low", "lift_ci_high")]
    ticks = svg.nice_ticks(-max(bounds + [0.05]), max(bounds + [0.05]), 8)
    label_w, plot_w, row_h, top = 250, 560, 26, 10
    canvas = svg.Canvas(label_w + plot_w + 40, top + row_h * len(rows) + 44, "シナリオ別リフトと95%信頼区間")
    low, high = ticks[0], ticks[-1]

    def x_of(value: float) -> float:
        return label_w + plot_w * (value - low) / (high - low)

    bottom = top + row_h * len(rows)
    for tick in ticks:
        canvas.line(x_of(tick), top, x_of(tick), bottom, stroke=svg.MUTED if tick == 0 else "#f0f2f5")
        canvas.text(x_of(tick), bottom + 14, f"{tick * 100:+.0f}pt" if tick else "0", size=11,
                    fill=svg.MUTED, anchor="middle")
    canvas.text(x_of(0), bottom + 32, "リフト = 配信群の転換率 − ホールドアウト群の転換率", size=11,
                fill=svg.MUTED, anchor="middle")
    colours = {"good": "#1a7f37", "bad": "#c62828", None: "#7b8794"}
    for i, row in enumerate(rows):
        y = top + i * row_h + row_h / 2
        colour = colours[_verdict(row)]
        canvas.text(0, y, _scenario_label(row), size=12)
        ci_low, ci_high = _num(row.get("lift_ci_low")), _num(row.get("lift_ci_high"))
        if ci_low is not None and ci_high is not None:
            canvas.line(x_of(max(ci_low, low)), y, x_of(min(ci_high, high)), y, stroke=colour, width=2.5)
        canvas.circle(x_of(_num(row["lift"]) or 0), y, 5, colour)
    return canvas.render()


def _scenario_table(rows: list[dict]) -> str:
    shown = _entered(rows)
    if not shown:
        return _empty("対象になった会員のいるシナリオはまだありません")
    head = ("<tr><th class=l>シナリオ</th><th class=l>KPI</th><th>計測日数</th><th>対象</th><th>配信/対象</th>"
            "<th>転換率</th><th>ホールドアウト</th><th>HO転換率</th><th>リフト</th><th>95%信頼区間</th></tr>")
    body = []
    for row in shown:
        marks = " ".join(m for m in ("sig" if _significance(row) else None, _significance(row), _verdict(row)) if m)
        entered, touched = _num(row.get("entered")) or 0, _num(row.get("touched")) or 0
        body.append(
            f"<tr class='{marks or 'flat'}' data-scenario='{escape(str(row.get('scenario')), quote=True)}'>"
            f"<td class=l>{escape(_scenario_label(row))}</td><td class=l>{escape(str(row.get('kpi') or ''))}</td>"
            f"<td>{_int(row.get('window_days'))}</td><td>{_int(entered)}</td>"
            f"<td>{_int(touched)} / {_int(entered)} ({_pct(touched / entered if entered else None, 0)})</td>"
            f"<td>{_pct(row.get('rate'))}</td><td>{_int(row.get('holdout'))}</td>"
            f"<td>{_pct(row.get('holdout_rate'))}</td><td class=lift>{_pt(row.get('lift'))}{_caveat(row)}</td>"
            f"<td>{_pt(row.get('lift_ci_low'))} 〜 {_pt(row.get('lift_ci_high'))}</td></tr>"
        )
    idle = sorted({str(r.get("scenario")) for r in rows} - {str(r.get("scenario")) for r in shown})
    note = ("<p class=note>緑: 95%信頼区間が0を含まず改善(配信群が良い)、赤: 悪化。"
            "解約率のように低いほど良いKPIでは、マイナスのリフトが改善。"
            "ホールドアウトは各シナリオで決定的に選ばれた10%の非配信群。"
            f"※: ホールドアウトが{SMALL_GROUP}人未満、または転換率が0%か100%の群があり、"
            "正規近似の信頼区間は実際より狭く出る(参考値)。"
            + (f" 対象者なし: {escape(', '.join(idle))}。" if idle else "") + "</p>")
    return f"<table class=scenarios><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>{note}"


# --- CPM ---------------------------------------------------------------------------------------------


def _cpm_table(rows: list[dict]) -> str:
    if not rows:
        return _empty()
    total = sum(_num(r.get("revenue")) or 0 for r in rows) or 1
    body = "".join(
        f"<tr><td class=l>{escape(str(r.get('segment')))}</td><td>{_int(r.get('members'))}</td>"
        f"<td class=l>{_bar(_num(r.get('share')))} {_pct(r.get('share'))}</td>"
        f"<td>{_yen(r.get('revenue'))}</td>"
        f"<td class=l>{_bar((_num(r.get('revenue')) or 0) / total)} {_pct((_num(r.get('revenue')) or 0) / total)}</td>"
        f"<td>{_yen(r.get('avg_revenue'))}</td></tr>" for r in rows
    )
    return ("<table class=cpm><thead><tr><th class=l>セグメント</th><th>会員数</th><th class=l>会員構成比</th>"
            f"<th>累計売上</th><th class=l>売上構成比</th><th>平均売上</th></tr></thead><tbody>{body}</tbody></table>"
            "<p class=note>購入のある会員を在籍期間・累計購入金額・最終購入からの日数で分類"
            "(離脱: 最終購入から90日超)。</p>")


def _bar(share: float | None) -> str:
    return f"<span class=bar style='width:{120 * min(max(share or 0, 0), 1):.0f}px'></span>"
