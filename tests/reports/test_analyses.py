"""The product analyses of issue 13 (seed 004: 購入フロー, 商品別新規・リピート, クロスセル分析)
on small fixed datasets whose numbers are worked out by hand in the comments.

Each dataset has a cancelled order that must not count and a trial line that is not a
main purchase (SPEC §3). SKUs: KOSO-30 and AOJIRU-30 are main products, NYUSAN-30 and
COLLAGEN-30 cross products (as in examples/shop.toml); SERUM-30 is in no catalogue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from starter import dashboard_products
from starter.cli import main
from starter.dashboard import render_dashboard, write_dashboard
from starter.reports import run_report
from tests.factories import cancelled, days, event, jst
from tests.reports.conftest import write
from worker.shop_config import parse_shop_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KOSO, AOJIRU, NYUSAN, COLLAGEN, SERUM = "KOSO-30", "AOJIRU-30", "NYUSAN-30", "COLLAGEN-30", "SERUM-30"
PRICES = {KOSO: 3980, AOJIRU: 2980, NYUSAN: 1980, COLLAGEN: 4980, SERUM: 5980}


def bought(member_id, at, order_id, *lines):
    """An order_placed with lines (sku, role[, quantity]); each SKU at its price in PRICES."""
    return event("order_placed", member_id, at, order_id=order_id, lines=[
        {"sku": sku, "role": role, "quantity": rest[0] if rest else 1, "days_supply": 30,
         "unit_price": PRICES[sku]} for sku, role, *rest in lines])


def main_line(member_id, at, order_id, sku, quantity=1):
    return bought(member_id, at, order_id, (sku, "main", quantity))


async def apply_example_shop(pool) -> None:
    """examples/shop.toml as version 1, as ``config apply`` stores it: its catalogue names the SKUs."""
    loaded = parse_shop_config((EXAMPLES / "shop.toml").read_text(encoding="utf-8"), "shop.toml", EXAMPLES)
    await pool.execute(
        "INSERT INTO config_versions (version, digest, applied_at, effective_at, source, body, templates)"
        " VALUES (1, $1, $2, $2, $3, $4::jsonb, '{}')",
        loaded.digest, jst(2025, 11, 1), loaded.source, json.dumps(loaded.config.model_dump(mode="json")))


def rows_of(report, *keys):
    return [tuple(r[k] for k in keys) for r in report.rows]


# --- 購入フロー ----------------------------------------------------------------------------------

AS_OF = jst(2026, 6, 1)


def flow_members() -> list:
    """First, second and third main purchase of each member (- = none yet by AS_OF):

    m1 KOSO → KOSO → KOSO
    m2 KOSO → AOJIRU → KOSO
    m3 KOSO → AOJIRU → -
    m4 KOSO → -
    m5 AOJIRU → KOSO → AOJIRU
    m6 AOJIRU → AOJIRU → -   (a trial KOSO before, and a cancelled KOSO in between: neither counts)
    m7 KOSO → AOJIRU → -     (a cross-only order first: no main line; the 2nd order's first main line is AOJIRU)
    m8 SERUM → -             (December 2025: outside --from 2026-01-01)
    m9 KOSO → -              (its second KOSO is after AS_OF)
    """
    p = "pf-"
    return [
        main_line(p + "m1", jst(2026, 1, 5), "m1-1", KOSO), main_line(p + "m1", jst(2026, 2, 5), "m1-2", KOSO),
        main_line(p + "m1", jst(2026, 3, 5), "m1-3", KOSO),
        main_line(p + "m2", jst(2026, 1, 6), "m2-1", KOSO), main_line(p + "m2", jst(2026, 2, 6), "m2-2", AOJIRU),
        main_line(p + "m2", jst(2026, 3, 6), "m2-3", KOSO),
        main_line(p + "m3", jst(2026, 1, 7), "m3-1", KOSO), main_line(p + "m3", jst(2026, 2, 7), "m3-2", AOJIRU),
        main_line(p + "m4", jst(2026, 1, 8), "m4-1", KOSO),
        main_line(p + "m5", jst(2026, 1, 9), "m5-1", AOJIRU), main_line(p + "m5", jst(2026, 2, 9), "m5-2", KOSO),
        main_line(p + "m5", jst(2026, 3, 9), "m5-3", AOJIRU),
        bought(p + "m6", jst(2026, 1, 1), "m6-t", (KOSO, "trial")),
        main_line(p + "m6", jst(2026, 1, 10), "m6-1", AOJIRU),
        cancelled(p + "m6", jst(2026, 2, 2), "m6-x"),  # the cancellation arrives first
        main_line(p + "m6", jst(2026, 2, 1), "m6-x", KOSO),
        main_line(p + "m6", jst(2026, 3, 10), "m6-2", AOJIRU),
        bought(p + "m7", jst(2026, 1, 2), "m7-c", (NYUSAN, "cross")),
        bought(p + "m7", jst(2026, 1, 12), "m7-1", (KOSO, "main"), (NYUSAN, "cross")),
        bought(p + "m7", jst(2026, 2, 12), "m7-2", (NYUSAN, "cross"), (AOJIRU, "main"), (KOSO, "main")),
        main_line(p + "m8", jst(2025, 12, 20), "m8-1", SERUM),
        main_line(p + "m9", jst(2026, 1, 20), "m9-1", KOSO), main_line(p + "m9", jst(2026, 7, 1), "m9-2", KOSO),
    ]


async def test_product_flow_by_hand(report_pool):
    await write(report_pool, flow_members())
    await apply_example_shop(report_pool)
    report = await run_report(report_pool, "product-flow", as_of=AS_OF)
    assert report.columns == ["step", "from_sku", "from_name", "from_members", "to_sku", "to_name", "members",
                              "rate"]
    # F1→F2. First KOSO: m1 m2 m3 m4 m7 m9 = 6; second AOJIRU m2 m3 m7 = 3 (0.5), KOSO m1 = 1 (1/6),
    #        none yet m4 m9 = 2 (1/3) — shown last. First AOJIRU: m5 m6 = 2; KOSO m5, AOJIRU m6 (0.5 each;
    #        m6's cancelled KOSO is not its second). First SERUM: m8 = 1, none yet.
    # F2→F3. Second AOJIRU: m2 m3 m6 m7 = 4; third KOSO m2 = 1 (0.25), none m3 m6 m7 = 3 (0.75).
    #        Second KOSO: m1 m5 = 2; third AOJIRU m5, KOSO m1 (0.5 each).
    assert rows_of(report, "step", "from_sku", "from_members", "to_sku", "members", "rate") == [
        ("F1→F2", KOSO, 6, AOJIRU, 3, 0.5),
        ("F1→F2", KOSO, 6, KOSO, 1, 0.1667),
        ("F1→F2", KOSO, 6, None, 2, 0.3333),
        ("F1→F2", AOJIRU, 2, AOJIRU, 1, 0.5),
        ("F1→F2", AOJIRU, 2, KOSO, 1, 0.5),
        ("F1→F2", SERUM, 1, None, 1, 1.0),
        ("F2→F3", AOJIRU, 4, KOSO, 1, 0.25),
        ("F2→F3", AOJIRU, 4, None, 3, 0.75),
        ("F2→F3", KOSO, 2, AOJIRU, 1, 0.5),
        ("F2→F3", KOSO, 2, KOSO, 1, 0.5),
    ]
    # Names from the catalogue of the applied version; SERUM-30 is not in it: its SKU.
    names = {(r["from_sku"], r["to_sku"]): (r["from_name"], r["to_name"]) for r in report.rows}
    assert names[(KOSO, AOJIRU)] == ("酵素サプリ 30日分", "国産大麦若葉の青汁 30包")
    assert names[(KOSO, None)] == ("酵素サプリ 30日分", "(まだなし)")
    assert names[(SERUM, None)] == (SERUM, "(まだなし)")

    # The cohort of --from/--to: first main purchase in January 2026 — m8 (December) leaves; the rest stay.
    january = await run_report(report_pool, "product-flow", date(2026, 1, 1), date(2026, 1, 31), as_of=AS_OF)
    assert [r for r in report.rows if r["from_sku"] != SERUM] == january.rows
    # As of 1 July 13:00 m9's second KOSO has happened: first KOSO → KOSO 2 of 6, none yet 1.
    later = await run_report(report_pool, "product-flow", as_of=jst(2026, 7, 1, 13))
    assert rows_of(later, "from_sku", "to_sku", "members")[:3] == [(KOSO, AOJIRU, 3), (KOSO, KOSO, 2),
                                                                   (KOSO, None, 1)]


async def test_product_flow_names_are_the_skus_before_a_shop_applies_its_catalogue(report_pool):
    await write(report_pool, [main_line("pn-1", jst(2026, 1, 5), "pn-1", KOSO)])
    report = await run_report(report_pool, "product-flow", as_of=AS_OF)
    assert rows_of(report, "from_name", "to_name", "members") == [(KOSO, "(まだなし)", 1)]


# --- 商品別新規・リピート ------------------------------------------------------------------------

def product_members() -> list:
    p = "pr-"
    return [
        main_line(p + "a", jst(2025, 12, 10), "a-1", KOSO),
        main_line(p + "a", jst(2026, 1, 10), "a-2", KOSO),
        main_line(p + "a", jst(2026, 2, 1, 0, 30), "a-3", KOSO),  # 31 Jan 15:30 UTC: February in Tokyo
        main_line(p + "b", jst(2026, 1, 5), "b-1", KOSO, quantity=2),
        main_line(p + "b", jst(2026, 1, 31, 23, 30), "b-2", KOSO),
        bought(p + "c", jst(2026, 1, 3), "c-t", (KOSO, "trial")),  # a trial line: not a purchase of KOSO
        main_line(p + "c", jst(2026, 2, 10), "c-1", KOSO),
        main_line(p + "d", jst(2026, 1, 15), "d-x", KOSO),
        cancelled(p + "d", jst(2026, 1, 16), "d-x"),
        main_line(p + "d", jst(2026, 2, 15), "d-1", KOSO),
        bought(p + "e", jst(2026, 1, 20), "e-1", (KOSO, "main"), (NYUSAN, "cross")),  # the cross line: not here
        main_line(p + "e", jst(2026, 2, 20), "e-2", AOJIRU),
        main_line(p + "f", jst(2026, 1, 25), "f-1", AOJIRU, quantity=3),
        main_line(p + "f", jst(2026, 3, 1), "f-2", AOJIRU),
    ]


async def test_products_new_and_repeat_by_month_by_hand(report_pool):
    await write(report_pool, product_members())
    report = await run_report(report_pool, "products")
    assert report.columns == ["sku", "name", "month", "new_buyers", "repeat_buyers", "orders", "units", "revenue",
                              "repeat_rate"]
    # KOSO-30 (3,980 yen)
    #  2025-12: a's first KOSO: new 1, 1 order, 1 unit, 3,980.
    #  2026-01: a (2nd KOSO: repeat); b (first on 5 Jan ×2, again on 31 Jan 23:30: one new buyer, 2 orders);
    #           e (first: new). c's trial line and d's cancelled order do not count.
    #           new 2, repeat 1, orders 4, units 1 + 2 + 1 + 1 = 5, revenue 5 × 3,980 = 19,900, rate 1/3.
    #  2026-02: a (00:30 on 1 Feb in Tokyo: repeat), c (first main KOSO: new), d (first non-cancelled: new).
    #           new 2, repeat 1, orders 3, units 3, revenue 11,940, rate 1/3.
    # AOJIRU-30 (2,980 yen): 2026-01 f new ×3 (8,940); 2026-02 e new; 2026-03 f repeat (rate 1).
    assert rows_of(report, "sku", "month", "new_buyers", "repeat_buyers", "orders", "units", "revenue",
                   "repeat_rate") == [
        (AOJIRU, "2026-01", 1, 0, 1, 3, 8940, 0.0),
        (AOJIRU, "2026-02", 1, 0, 1, 1, 2980, 0.0),
        (AOJIRU, "2026-03", 0, 1, 1, 1, 2980, 1.0),
        (KOSO, "2025-12", 1, 0, 1, 1, 3980, 0.0),
        (KOSO, "2026-01", 2, 1, 4, 5, 19900, 0.3333),
        (KOSO, "2026-02", 2, 1, 3, 3, 11940, 0.3333),
    ]
    assert {r["name"] for r in report.rows} == {KOSO, AOJIRU}  # no catalogue applied: the SKUs

    # A period (Tokyo days): January and February 2026. a's KOSO of January is still a repeat (its first
    # was in December); 00:30 on 1 February is in it, NYUSAN-30 (cross only) never is.
    period = await run_report(report_pool, "products", date(2026, 1, 1), date(2026, 2, 28))
    assert rows_of(period, "sku", "month", "new_buyers", "repeat_buyers") == [
        (AOJIRU, "2026-01", 1, 0), (AOJIRU, "2026-02", 1, 0), (KOSO, "2026-01", 2, 1), (KOSO, "2026-02", 2, 1)]


# --- クロスセル分析 ------------------------------------------------------------------------------

def cross_members() -> list:
    """Ten members. K = KOSO-30, A = AOJIRU-30 (main); N = NYUSAN-30, C = COLLAGEN-30 (cross).

    x1 K + N in one order          x6 A; an N order cancelled (does not count)
    x2 K; N 31 days later          x7 a trial KOSO line + N: N only (the trial is not K)
    x3 K; N exactly 30 days later  x8 K
    x4 K + C in one order          x9, x10 A
    x5 A + N in one order
    Buyers N = 10; K: x1 x2 x3 x4 x8 = 5; A: x5 x6 x9 x10 = 4; N: x1 x2 x3 x5 x7 = 5; C: x4 = 1.
    """
    p, t = "xs-", jst(2026, 1, 1)
    return [
        bought(p + "x1", t, "x1-1", (KOSO, "main"), (NYUSAN, "cross")),
        main_line(p + "x2", t, "x2-1", KOSO), bought(p + "x2", t + days(31), "x2-2", (NYUSAN, "cross")),
        main_line(p + "x3", t, "x3-1", KOSO), bought(p + "x3", t + days(30), "x3-2", (NYUSAN, "cross")),
        bought(p + "x4", t, "x4-1", (KOSO, "main"), (COLLAGEN, "cross")),
        bought(p + "x5", t, "x5-1", (AOJIRU, "main"), (NYUSAN, "cross")),
        main_line(p + "x6", t, "x6-1", AOJIRU), bought(p + "x6", t + days(2), "x6-2", (NYUSAN, "cross")),
        cancelled(p + "x6", t + days(3), "x6-2"),
        bought(p + "x7", t, "x7-1", (KOSO, "trial"), (NYUSAN, "cross")),
        main_line(p + "x8", t, "x8-1", KOSO),
        main_line(p + "x9", t, "x9-1", AOJIRU), main_line(p + "x10", t, "x10-1", AOJIRU),
    ]


CROSS = ("sku_a", "sku_b", "members_a", "members_b", "members_both", "attach_rate", "confidence", "lift",
         "main_to_cross")


async def test_cross_sell_by_hand(report_pool):
    await write(report_pool, cross_members())
    report = await run_report(report_pool, "cross-sell")
    assert report.columns == ["sku_a", "name_a", "role_a", "sku_b", "name_b", "role_b", "members_a", "members_b",
                              "members_both", "attach_rate", "confidence", "lift", "main_to_cross"]
    assert report.title == "クロスセル分析 (同じ会員が期間内に両方購入・3人以上)"
    # At least 3 members: only K and N (x1 x2 x3). K → N: 3/5 = 0.6, P(N) = 5/10 → lift 1.2;
    # N → K: 3/5 = 0.6, P(K) = 5/10 → lift 1.2. K–C (x4) and A–N (x5) have one member each.
    assert rows_of(report, *CROSS) == [
        (KOSO, NYUSAN, 5, 5, 3, 0.6, 0.6, 1.2, True),
        (NYUSAN, KOSO, 5, 5, 3, 0.6, 0.6, 1.2, False),
    ]
    assert rows_of(report, "role_a", "role_b", "name_a") == [("main", "cross", KOSO), ("cross", "main", NYUSAN)]

    # Every pair: C → K 1/1, P(K) 0.5 → lift 2.0; K → C 1/5 = 0.2, P(C) 0.1 → 2.0 (C first: by SKU);
    # A → N 1/4 = 0.25, P(N) 0.5 → 0.5; N → A 1/5 = 0.2, P(A) 0.4 → 0.5.
    everything = await run_report(report_pool, "cross-sell", options={"min_members": 1})
    assert rows_of(everything, *CROSS) == [
        (COLLAGEN, KOSO, 1, 5, 1, 1.0, 1.0, 2.0, False),
        (KOSO, COLLAGEN, 5, 1, 1, 0.2, 0.2, 2.0, True),
        (KOSO, NYUSAN, 5, 5, 3, 0.6, 0.6, 1.2, True),
        (NYUSAN, KOSO, 5, 5, 3, 0.6, 0.6, 1.2, False),
        (AOJIRU, NYUSAN, 4, 5, 1, 0.25, 0.25, 0.5, True),
        (NYUSAN, AOJIRU, 5, 4, 1, 0.2, 0.2, 0.5, False),
    ]

    # Within 30 days of each other: x1 (one order) and x3 (exactly 30 days); x2's 31 days do not.
    # K → N 2/5 = 0.4, / P(N) 0.5 → 0.8; N → K 2/5 → 0.8. Under 3 members: nothing.
    within = await run_report(report_pool, "cross-sell", options={"within": 30, "min_members": 2})
    assert rows_of(within, *CROSS) == [
        (KOSO, NYUSAN, 5, 5, 2, 0.4, 0.4, 0.8, True),
        (NYUSAN, KOSO, 5, 5, 2, 0.4, 0.4, 0.8, False),
    ]
    assert within.title == "クロスセル分析 (同じ会員が30日以内に両方購入・2人以上)"
    assert (await run_report(report_pool, "cross-sell", options={"within": 30})).rows == []

    # January only: x2's N (February) is out. N: x1 x3 x5 x7 = 4; buyers still 10.
    # K → N: 2/5 = 0.4, P(N) 0.4 → 1.0; N → K: 2/4 = 0.5, P(K) 0.5 → 1.0.
    january = await run_report(report_pool, "cross-sell", date(2026, 1, 1), date(2026, 1, 31),
                               options={"min_members": 2})
    assert rows_of(january, *CROSS) == [
        (KOSO, NYUSAN, 5, 4, 2, 0.4, 0.4, 1.0, True),
        (NYUSAN, KOSO, 4, 5, 2, 0.5, 0.5, 1.0, False),
    ]


async def test_cross_sell_names_come_from_the_catalogue(report_pool):
    await write(report_pool, cross_members())
    await apply_example_shop(report_pool)
    report = await run_report(report_pool, "cross-sell")
    assert rows_of(report, "name_a", "name_b") == [("酵素サプリ 30日分", "乳酸菌サプリ 30日分"),
                                                   ("乳酸菌サプリ 30日分", "酵素サプリ 30日分")]


# --- the CLI -------------------------------------------------------------------------------------

@pytest.fixture
async def shop(report_pool, report_database_url, monkeypatch, tmp_path) -> str:
    """The cross-sell members and product-flow members in a fresh database; DATABASE_URL points the CLI at it."""
    await write(report_pool, [*cross_members(), *flow_members()])
    monkeypatch.setenv("DATABASE_URL", report_database_url)
    monkeypatch.setenv("GOLDENROUTE_HOME", str(tmp_path))  # no dev stack file from elsewhere
    return report_database_url


@pytest.mark.parametrize("name, first", [
    ("product-flow", {"step": "F1→F2", "from_sku": KOSO, "from_name": KOSO}),
    ("products", {"sku": AOJIRU, "month": "2026-01"}),
    ("cross-sell", {"sku_a": KOSO, "sku_b": NYUSAN, "main_to_cross": True}),
])
def test_json_of_each_analysis(shop, capsys, name, first):
    assert main(["report", name, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report) == ["report", "title", "start", "end", "as_of", "columns", "rows"]
    assert report["report"] == name and report["rows"]
    assert all(list(row) == report["columns"] for row in report["rows"])
    assert {k: report["rows"][0][k] for k in first} == first


def test_cross_sell_options_on_the_command_line(shop, capsys):
    # Both datasets, any time: buyers 10 + 9 = 19. K: x1 x2 x3 x4 x8 + m1 m2 m3 m4 m5 m7 m9 = 12 (m6's KOSO
    # is a trial and a cancelled order); A: x5 x6 x9 x10 + m2 m3 m5 m6 m7 = 9; N: x1 x2 x3 x5 x7 + m7 = 6.
    # Within 30 days: K–N x1, x3, m7 (one order) = 3; K–A m2 (A 6 Feb, K 6 Mar: 28 days; 6 Jan → 6 Feb is
    # 31), m5 (K 9 Feb, A 9 Mar), m7 (one order) = 3; A–N x5, m7 = 2; K–C 1.
    # K → N 3/12 = 0.25 × 19/6 = 0.7917; N → K 3/6 × 19/12 = 0.7917 (tie: by SKU);
    # A → K 3/9 × 19/12 = 0.5278; K → A 3/12 × 19/9 = 0.5278.
    assert main(["report", "cross-sell", "--json", "--within", "30", "--min-members", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["title"] == "クロスセル分析 (同じ会員が30日以内に両方購入・3人以上)"
    assert [tuple(r[k] for k in ("sku_a", "sku_b", "members_both", "attach_rate", "lift", "main_to_cross"))
            for r in report["rows"]] == [
        (KOSO, NYUSAN, 3, 0.25, 0.7917, True), (NYUSAN, KOSO, 3, 0.5, 0.7917, False),
        (AOJIRU, KOSO, 3, 0.3333, 0.5278, False), (KOSO, AOJIRU, 3, 0.25, 0.5278, False)]
    # Any time: K–N x1 x2 x3 m7 = 4 → K → N 4/12 × 19/6 = 1.0556, the highest lift (no catalogue: SKUs).
    assert main(["report", "cross-sell", "--csv"]) == 0
    lines = capsys.readouterr().out.removeprefix("\ufeff").splitlines()
    assert lines[:2] == [
        "sku_a,name_a,role_a,sku_b,name_b,role_b,members_a,members_b,members_both,attach_rate,confidence,lift,"
        "main_to_cross",
        f"{KOSO},{KOSO},main,{NYUSAN},{NYUSAN},cross,12,6,4,0.3333,0.3333,1.0556,True"]


def test_the_text_table_has_japanese_headings(shop, capsys):
    assert main(["report", "product-flow"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("購入フロー (1回目→2回目→3回目の購入商品) — 期間 全期間 / 基準日時 ")
    assert lines[2].split() == ["ステップ", "購入商品", "商品名", "購入会員数", "次の購入商品", "次の商品名", "会員数",
                                "割合"]


@pytest.mark.parametrize("argv, message", [
    (["report", "funnel", "--within", "30"], "report funnel takes no --within"),
    (["report", "products", "--min-members", "2"], "report products takes no --min-members"),
    (["report", "dashboard", "--within", "30"], "are for report cross-sell"),
])
def test_options_of_cross_sell_only_exit_2(shop, capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["report", "cross-sell", "--within", "-1"],
                                  ["report", "cross-sell", "--min-members", "0"],
                                  ["report", "cross-sell", "--within", "a week"]])
def test_bad_option_values_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2


# --- the dashboard --------------------------------------------------------------------------------

async def test_the_dashboard_has_a_section_per_analysis(report_pool, tmp_path):
    await write(report_pool, [*cross_members(), *product_members()])
    await apply_example_shop(report_pool)
    out = tmp_path / "dashboard.html"
    await write_dashboard(report_pool, out, as_of=AS_OF)
    html = out.read_text(encoding="utf-8")
    for name, title in dashboard_products.SECTIONS.items():
        assert f"<section id={name}><h2>{title}</h2>" in html
    # 購入フロー: the product-members' KOSO buyers (a b c d e) and the cross members' x1–x4, x8 first bought KOSO.
    flow = await run_report(report_pool, "product-flow", as_of=AS_OF)
    koso = next(r for r in flow.rows if r["from_sku"] == KOSO)
    assert "<table class=product-flow data-step='F1→F2'>" in html
    assert f"<tr data-from='{KOSO}'><td class=l>酵素サプリ 30日分</td><td class=members>{koso['from_members']}</td>" in html
    # 商品別: KOSO-30 in January 2026: new 2 + the x-members' 5 first KOSO = 7, repeat 1.
    assert (f"<tr data-sku='{KOSO}' data-month='2026-01'><td class=l>酵素サプリ 30日分</td><td>2026-01</td>"
            "<td class=new-buyers>7</td><td class=repeat-buyers>1</td>") in html
    # クロスセル: KOSO → NYUSAN highlighted as main → cross, NYUSAN → KOSO not.
    assert f"<tr class=main-cross data-pair='{KOSO}&gt;{NYUSAN}'>" in html
    assert f"<tr class=pair data-pair='{NYUSAN}&gt;{KOSO}'>" in html


def test_the_product_sections_escape_every_text():
    @dataclass
    class Fake:
        rows: list

    evil = "<script>alert('x')</script>"
    html = render_dashboard({
        "product-flow": Fake([{"step": evil, "from_sku": evil, "from_name": evil, "from_members": 1, "to_sku": evil,
                               "to_name": evil, "members": 1, "rate": 1.0}]),
        "products": Fake([{"sku": evil, "name": evil, "month": evil, "new_buyers": 1, "repeat_buyers": 0,
                           "orders": 1, "units": 1, "revenue": 1, "repeat_rate": 0.0}]),
        "cross-sell": Fake([{"sku_a": evil, "name_a": evil, "role_a": evil, "sku_b": evil, "name_b": evil,
                             "role_b": evil, "members_a": 3, "members_b": 3, "members_both": 3, "attach_rate": 1.0,
                             "confidence": 1.0, "lift": 1.0, "main_to_cross": True}]),
    })
    assert "<script" not in html and "&lt;script&gt;" in html


def test_empty_product_sections_say_so():
    html = render_dashboard({})
    for title in dashboard_products.SECTIONS.values():
        assert f"<h2>{title}</h2><p class=empty>" in html
