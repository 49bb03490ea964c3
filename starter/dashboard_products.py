"""The dashboard's product sections (issue 13): 購入フロー, 商品別新規・リピート, クロスセル.

Each function turns one report's rows (``starter.reports``: product-flow, products,
cross-sell) into an HTML fragment for ``starter.dashboard``: tables with inline
colour, no script, every text escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any, Iterable, Mapping

from starter import svg

SECTIONS = {
    "product-flow": "購入フロー(1回目→2回目→3回目の購入商品)",
    "products": "商品別 新規・リピート(本商品・月別)",
    "cross-sell": "クロスセル分析(同じ会員の併買・リフト順)",
}
CROSS_SELL_SHOWN = 30  # pairs in the table, highest lift first
NEW, REPEAT = svg.CATEGORICAL[0], svg.CATEGORICAL[1]
NONE_YET = "#eef2f6"
CSS = f"""
tr.main-cross td{{background:#fff7e0}} .heat{{text-align:center}}
.stack{{display:inline-block;height:10px;vertical-align:middle}}
.new{{background:{NEW}}} .repeat{{background:{REPEAT}}}
"""


def _pct(value: Any) -> str:
    return "—" if value is None else f"{float(value) * 100:.1f}%"


def _int(value: Any) -> str:
    return "—" if value is None else f"{float(value):,.0f}"


def _text(value: Any) -> str:
    return escape(str(value if value is not None else "—"))


def _empty(message: str = "この期間のデータはありません") -> str:
    return f"<p class=empty>{escape(message)}</p>"


def _unique(values: Iterable) -> list:
    return list(dict.fromkeys(values))


# --- 購入フロー: one matrix per step, n-th product (rows) × next product (columns) ------------


def product_flow(rows: list[Mapping[str, Any]]) -> str:
    if not rows:
        return _empty()
    tables = [_flow_matrix(step, [r for r in rows if r.get("step") == step])
              for step in _unique(r.get("step") for r in rows)]
    return "".join(tables) + (
        "<p class=note>行: n回目に購入した本商品(初回購入が集計期間内の会員)、列: その次に購入した本商品。"
        "セルはその行の会員のうちの割合と人数。「(まだなし)」は次の購入がまだない会員。"
        "キャンセルされた注文・お試しのみの注文は数えない。</p>")


def _flow_matrix(step: str, rows: list[Mapping[str, Any]]) -> str:
    froms = _unique((r.get("from_sku"), r.get("from_name"), r.get("from_members")) for r in rows)
    totals: dict[Any, float] = {}
    for r in rows:
        totals[r.get("to_sku")] = totals.get(r.get("to_sku"), 0) + float(r.get("members") or 0)
    tos = sorted(totals, key=lambda sku: (sku is None, -totals[sku], str(sku)))
    names = {r.get("to_sku"): r.get("to_name") for r in rows}
    cell = {(r.get("from_sku"), r.get("to_sku")): r for r in rows}
    head = (f"<tr><th class=l>{escape(_step_heading(step))}</th><th>会員数</th>"
            + "".join(f"<th>{_text(names.get(sku))}</th>" for sku in tos) + "</tr>")
    body = []
    for sku, name, members in froms:
        cells = []
        for to in tos:
            row = cell.get((sku, to))
            if row is None:
                cells.append("<td class=heat>—</td>")
                continue
            rate = float(row.get("rate") or 0)
            fill = svg.ramp(rate) if to is not None else NONE_YET  # not a product: no colour scale
            cells.append(f"<td class=heat style='background:{fill};color:{svg.readable_on(fill)}'>"
                         f"{_pct(rate)} ({_int(row.get('members'))}人)</td>")
        body.append(f"<tr data-from='{escape(str(sku), quote=True)}'><td class=l>{_text(name)}</td>"
                    f"<td class=members>{_int(members)}</td>{''.join(cells)}</tr>")
    return (f"<table class=product-flow data-step='{escape(str(step), quote=True)}'><thead>{head}</thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _step_heading(step: Any) -> str:
    """``F1→F2`` → ``1回目 → 2回目``."""
    first, _, then = str(step).partition("→")
    return f"{first.removeprefix('F')}回目 → {then.removeprefix('F')}回目" if then else str(step)


# --- 商品別新規・リピート -----------------------------------------------------------------------


def products(rows: list[Mapping[str, Any]]) -> str:
    if not rows:
        return _empty()
    most = max(float(r.get("new_buyers") or 0) + float(r.get("repeat_buyers") or 0) for r in rows) or 1
    body = "".join(
        f"<tr data-sku='{escape(str(r.get('sku')), quote=True)}'"
        f" data-month='{escape(str(r.get('month')), quote=True)}'>"
        f"<td class=l>{_text(r.get('name'))}</td><td>{_text(r.get('month'))}</td>"
        f"<td class=new-buyers>{_int(r.get('new_buyers'))}</td><td class=repeat-buyers>{_int(r.get('repeat_buyers'))}</td>"
        f"<td class=l>{_stack(r, most)}</td><td>{_int(r.get('orders'))}</td><td>{_int(r.get('units'))}</td>"
        f"<td>¥{_int(r.get('revenue'))}</td><td>{_pct(r.get('repeat_rate'))}</td></tr>"
        for r in rows
    )
    return ("<table class=products><thead><tr><th class=l>商品</th><th>月</th><th>新規</th><th>リピート</th>"
            "<th class=l>購入者(<span class='stack new' style='width:10px'></span>新規 "
            "<span class='stack repeat' style='width:10px'></span>リピート)</th><th>注文数</th><th>個数</th>"
            f"<th>売上</th><th>リピート率</th></tr></thead><tbody>{body}</tbody></table>"
            "<p class=note>本商品(main 行)の購入者を月別に集計。新規: その商品をその月に初めて買った会員、"
            "リピート: それ以前にも買っていた会員。リピート率 = リピート ÷ (新規 + リピート)。</p>")


def _stack(row: Mapping[str, Any], most: float) -> str:
    new, repeat = float(row.get("new_buyers") or 0), float(row.get("repeat_buyers") or 0)
    return (f"<span class='stack new' style='width:{160 * new / most:.0f}px'></span>"
            f"<span class='stack repeat' style='width:{160 * repeat / most:.0f}px'></span>")


# --- クロスセル ----------------------------------------------------------------------------


def cross_sell(rows: list[Mapping[str, Any]]) -> str:
    if not rows:
        return _empty("3人以上が併買した商品の組み合わせはまだありません")
    shown = rows[:CROSS_SELL_SHOWN]
    body = "".join(_pair(r) for r in shown)
    more = f" 上位{CROSS_SELL_SHOWN}組を表示(全{len(rows)}組)。" if len(rows) > len(shown) else ""
    return ("<table class=cross-sell><thead><tr><th class=l>商品A → 商品B</th><th class=l>区分</th>"
            "<th>A購入会員</th><th>B購入会員</th><th>両方購入</th><th>併買率(信頼度)</th><th>リフト</th></tr></thead>"
            f"<tbody>{body}</tbody></table>"
            "<p class=note>併買率 = 両方買った会員 ÷ Aを買った会員、リフト = 併買率 ÷ (Bを買った会員の割合): "
            "1を超えるとAの購入者はBを買いやすい。黄色の行は本商品 → クロスセル商品の組み合わせ。"
            f"3人以上が両方買った組のみ。{more}</p>")


def _pair(row: Mapping[str, Any]) -> str:
    pair = f"{row.get('sku_a')}>{row.get('sku_b')}"
    lift = row.get("lift")
    return (f"<tr class={'main-cross' if row.get('main_to_cross') else 'pair'}"
            f" data-pair='{escape(pair, quote=True)}'>"
            f"<td class=l>{_text(row.get('name_a'))} → {_text(row.get('name_b'))}</td>"
            f"<td class=l>{_text(row.get('role_a'))} → {_text(row.get('role_b'))}</td>"
            f"<td>{_int(row.get('members_a'))}</td><td>{_int(row.get('members_b'))}</td>"
            f"<td>{_int(row.get('members_both'))}</td><td>{_pct(row.get('attach_rate'))}</td>"
            f"<td class=lift>{'—' if lift is None else format(float(lift), '.2f')}</td></tr>")
