"""The dashboard's broadcasts section (issue 13): メルマガ・キャンペーン・DM, each against its holdout.

``broadcasts`` turns the BC rows of the scenario report (``starter.reports.broadcasts``: one
per broadcast) into an HTML fragment for ``starter.dashboard``: who the broadcast reached
and what became of each touch (a bar of sent, suppressed, expired and held out), and its
14-day main-purchase rate against the holdout's, with the lift and its 95 % interval.
Inline colour, no script, every text escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any, Mapping

from starter import svg
from starter.reports.broadcasts import BROADCAST_KPI_DAYS
from workflows.broadcasts import BROADCAST

SECTIONS = {"broadcasts": "ブロードキャスト別KPI(メルマガ・キャンペーン・DM、ホールドアウト比較)"}
OUTCOMES = (  # (column, label, colour) of the bar, in the order a touch is decided
    ("touched", "配信", svg.CATEGORICAL[0]), ("suppressed", "抑止", svg.CATEGORICAL[1]),
    ("expired", "期限切れ", "#b0b8c1"), ("holdout", "ホールドアウト", svg.CATEGORICAL[2]),
)
BAR_WIDTH = 180  # px for the broadcast that reached the most members
CSS = ".outcomes{display:inline-block;height:10px;vertical-align:middle}"


def is_broadcast_row(row: Mapping[str, Any]) -> bool:
    return row.get("scenario") == BROADCAST


def _n(value: Any) -> float:
    return float(value) if value is not None else 0.0


def _int(value: Any) -> str:
    return "—" if value is None else f"{float(value):,.0f}"


def _pct(value: Any) -> str:
    return "—" if value is None else f"{float(value) * 100:.1f}%"


def _pt(value: Any) -> str:
    return "—" if value is None else f"{float(value) * 100:+.1f}pt"


def _verdict(row: Mapping[str, Any]) -> str:
    """'good' / 'bad' when the lift's 95 % interval excludes 0 (more purchases is better), else 'flat'."""
    low, high = row.get("lift_ci_low"), row.get("lift_ci_high")
    if low is not None and low > 0:
        return "good sig"
    if high is not None and high < 0:
        return "bad sig"
    return "flat"


def broadcasts(rows: list[Mapping[str, Any]]) -> str:
    """The section's table: one row per broadcast (or run), those not run yet named below it."""
    shown = [r for r in rows if _n(r.get("entered")) > 0]
    idle = [str(r.get("name")) for r in rows if _n(r.get("entered")) == 0]
    if not shown:
        return (f"<p class=empty>{escape('この期間に配信されたブロードキャストはまだありません')}</p>"
                + _idle(idle))
    most = max(_n(r.get("entered")) for r in shown) or 1
    legend = " ".join(f"<span class=outcomes style='width:10px;background:{colour}'></span>{escape(label)}"
                      for _, label, colour in OUTCOMES)
    head = ("<tr><th class=l>ブロードキャスト</th><th>対象</th>"
            f"<th class=l>タッチの結果({legend})</th><th>配信</th><th class=l>抑止(理由)</th><th>期限切れ</th>"
            "<th>ホールドアウト</th><th>転換率</th><th>HO転換率</th><th>リフト</th><th>95%信頼区間</th></tr>")
    body = "".join(_row(r, most) for r in shown)
    return (f"<table class=broadcasts><thead>{head}</thead><tbody>{body}</tbody></table>"
            f"<p class=note>対象: ブロードキャストの回が届いた会員(1回につき1タッチ)。転換: タッチの判断から"
            f"{BROADCAST_KPI_DAYS}日以内の本品購入(キャンセルを除く)。転換率は配信群(送信+抑止)、"
            "HO転換率は各ブロードキャストで決定的に選ばれたホールドアウト群のもの。期限切れはどちらの群にも数えない。"
            "緑: 95%信頼区間が0を含まず改善、赤: 悪化。</p>" + _idle(idle))


def _row(row: Mapping[str, Any], most: float) -> str:
    name = str(row.get("name"))
    run = row.get("run")
    label = f"{name}(回 {run})" if run else name
    entered = _n(row.get("entered"))
    bar = "".join(f"<span class=outcomes title='{escape(text)} {_int(row.get(column))}' "
                  f"style='width:{BAR_WIDTH * _n(row.get(column)) / most:.0f}px;background:{colour}'></span>"
                  for column, text, colour in OUTCOMES)
    reasons = f" ({escape(str(row['suppressed_by']))})" if row.get("suppressed_by") else ""
    sent = f"{_int(row.get('touched'))} ({_pct(_n(row.get('touched')) / entered if entered else None)})"
    run_attribute = f" data-run='{escape(str(run), quote=True)}'" if run else ""
    return (f"<tr class='{_verdict(row)}' data-broadcast='{escape(name, quote=True)}'{run_attribute}>"
            f"<td class=l>{escape(label)}</td><td>{_int(entered)}</td><td class=l>{bar}</td><td>{sent}</td>"
            f"<td class=l>{_int(row.get('suppressed'))}{reasons}</td><td>{_int(row.get('expired'))}</td>"
            f"<td>{_int(row.get('holdout'))}</td><td>{_pct(row.get('rate'))}</td><td>{_pct(row.get('holdout_rate'))}</td>"
            f"<td class=lift>{_pt(row.get('lift'))}</td>"
            f"<td>{_pt(row.get('lift_ci_low'))} 〜 {_pt(row.get('lift_ci_high'))}</td></tr>")


def _idle(names: list[str]) -> str:
    return f"<p class=note>この期間の配信なし: {escape(', '.join(names))}。</p>" if names else ""
