"""Cart CSV import: each format's fixture → the expected events; bad rows at their row and column.

The fixtures are exports in the carts' real shapes (EC-CUBE's dtb_csv 受注CSV columns
in CP932 as Excel re-saves it and in UTF-8 with BOM; Shopify's order export; a
サブスクストア-style export read through examples/carts/subscstore.toml), each with a
cancelled order, a shipped one and bad rows. All but the last tests are pure: no
PostgreSQL, no Temporal.
"""

from __future__ import annotations

import codecs
import hashlib
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from starter.importer import store_events, write_rejects
from starter.ingress.carts import (
    EC_CUBE, SHOPIFY, CatalogueError, MapError, cart_map, load_catalogue, parse_catalogue, parse_map, read_export,
)
from starter.ingress.carts.benchmark import measure
from starter.ingress.carts.csvfile import decode
from starter.ingress.carts.values import CellProblem, parse_interval_days, parse_time, parse_yen

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
TOKYO = ZoneInfo("Asia/Tokyo")
CATALOGUE = load_catalogue(ROOT / "examples" / "catalogue.toml")
SUBSCSTORE = ROOT / "examples" / "carts" / "subscstore.toml"


def read(name: str, cart=EC_CUBE, **options):
    return read_export((FIXTURES / name).read_bytes(), cart, CATALOGUE, TOKYO, **options)


def summary(result) -> list[tuple]:
    return [(number, e.type, e.event_id, e.member_id, e.occurred_at.isoformat()) for number, e in result.events]


def rejects(result) -> list[tuple]:
    return [(r.row, r.column, r.reason.split(" — ")[0]) for r in result.rejects]


def hashed(prefix: str, email: str) -> str:
    return prefix + hashlib.sha256(email.lower().encode()).hexdigest()[:32]


GUEST = hashed("ec-cube-guest:", "misaki.guest@example.jp")

EC_CUBE_EVENTS = [
    (2, "order_placed", "ec-cube:1001:placed", "1", "2026-04-01T10:15:00+09:00"),
    (2, "order_shipped", "ec-cube:1001:shipped", "1", "2026-04-02T14:00:00+09:00"),
    (4, "order_placed", "ec-cube:1002:placed", "2", "2026-04-03T21:40:05+09:00"),
    (7, "order_placed", "ec-cube:1003:placed", "3", "2026-04-04T08:00:00+09:00"),
    (7, "order_cancelled", "ec-cube:1003:cancelled", "3", "2026-04-04T08:00:00+09:00"),
    (8, "order_placed", "ec-cube:1004:placed", "1", "2026-04-05T12:30:00+09:00"),
    (8, "order_shipped", "ec-cube:1004:shipped", "1", "2026-04-06T09:00:00+09:00"),
    (8, "order_cancelled", "ec-cube:1004:cancelled", "1", "2026-04-06T09:00:00+09:00"),  # 返品 after shipping
    (9, "sample_requested", "ec-cube:1005:sample", GUEST, "2026-04-07T19:00:00+09:00"),
    (9, "order_shipped", "ec-cube:1005:shipped", GUEST, "2026-04-08T00:00:00+09:00"),  # a date-only 発送日
    (15, "order_placed", "ec-cube:1010:placed", "8", "2026-04-10T09:05:00+09:00"),  # Excel's 2026/4/10 9:05
]
EC_CUBE_REJECTS = [
    (11, "受注日", "not a date: '2026/13/45 25:00:00' (month must be in 1..12)"),
    (13, "商品コード", "unknown SKU 'MYSTERY-1' (add it to the catalogue)"),
    (14, "個数", "not a whole number: 'abc'"),
]


@pytest.mark.parametrize("name, encoding", [("ec-cube_cp932.csv", "cp932"), ("ec-cube_utf8_bom.csv", "utf-8-sig")])
def test_ec_cube_orders_become_events(name: str, encoding: str) -> None:
    result = read(name)
    assert result.encoding == encoding
    assert summary(result) == EC_CUBE_EVENTS
    assert rejects(result) == EC_CUBE_REJECTS
    # 15 data rows (送料 and 手数料 rows among them; a 配達用メモ spanning two lines is one row),
    # 10 orders: 6 imported, 1 購入処理中 skipped, 3 rejected.
    assert (result.rows, result.orders, result.skipped, result.rejected_orders, result.members) == (15, 10, 1, 3, 5)
    placed = {e.order_id: e for _, e in result.events if e.type == "order_placed"}
    assert [(l.sku, l.role.value, l.quantity, l.days_supply, l.unit_price) for l in placed["1002"].lines] == [
        ("KOSO-TRIAL-10", "trial", 1, 10, 980), ("NYUSAN-30", "cross", 1, 30, 2480)]
    assert [(l.sku, l.quantity, l.unit_price) for l in placed["1003"].lines] == [("KOSO-30", 2, 3980)]
    # The ノベルティ (ignore = true) rides along without becoming a line; "3,980" is 3980 yen.
    assert [(l.sku, l.unit_price) for l in placed["1010"].lines] == [("KOSO-30", 3980)]
    sample = next(e for _, e in result.events if e.type == "sample_requested")
    assert (sample.sku, sample.days_supply, sample.order_id) == ("KOSO-SAMPLE-7", 7, "1005")


def test_shopify_orders_become_events() -> None:
    result = read("shopify_orders_export.csv", SHOPIFY)
    hanako, taro, ichiro = (hashed("shopify:", f"{name}@example.jp") for name in ("hanako", "taro", "ichiro"))
    assert result.encoding == "utf-8"
    assert summary(result) == [
        (2, "order_placed", "shopify:#1001:placed", hanako, "2026-04-01T21:00:00+09:00"),
        (2, "order_shipped", "shopify:#1001:shipped", hanako, "2026-04-02T15:00:00+09:00"),
        (4, "order_placed", "shopify:#1002:placed", taro, "2026-04-03T09:30:00+09:00"),
        (5, "order_placed", "shopify:#1003:placed", ichiro, "2026-04-04T10:00:00+09:00"),
        (5, "order_cancelled", "shopify:#1003:cancelled", ichiro, "2026-04-05T10:00:00+09:00"),
        # Created at "2026-04-06 01:30:00 +0000": the same instant, shown in the shop's timezone.
        (9, "order_placed", "shopify:#1007:placed", hanako, "2026-04-06T10:30:00+09:00"),
        (9, "order_shipped", "shopify:#1007:shipped", hanako, "2026-04-07T08:00:00+09:00"),
        (9, "order_cancelled", "shopify:#1007:cancelled", hanako, "2026-04-07T08:00:00+09:00"),  # refunded
    ]
    # "Hanako@Example.jp" and "hanako@example.jp" are one member, and no address is in clear.
    assert all("@" not in e.member_id for _, e in result.events)
    first = result.events[0][1]
    assert [(l.sku, l.role.value, l.days_supply, l.unit_price) for l in first.lines] == [
        ("KOSO-30", "main", 30, 3980), ("NYUSAN-30", "cross", 30, 2480)]  # its second line on a continuation row
    assert rejects(result) == [
        (6, "Email", "no e-mail address: the export has no customer id, so the order has no member"),
        (7, "Lineitem sku", "unknown SKU 'MYSTERY-1' (add it to the catalogue)"),
        (8, "Created at", "not a date: 'yesterday' (expected YYYY/MM/DD HH:MM:SS or YYYY-MM-DD HH:MM:SS)"),
        (10, "Lineitem quantity", "not a whole number: 'abc'"),
    ]


def test_mapped_subscription_export_becomes_events() -> None:
    result = read("subscstore_orders.csv", cart_map("mapped", SUBSCSTORE))
    assert result.encoding == "cp932"
    assert summary(result) == [
        (2, "order_placed", "subsc:T-0001:placed", "C001", "2026-03-01T09:00:00+09:00"),
        (2, "subscription_started", "subsc:sub:S-1:started", "C001", "2026-03-01T09:00:00+09:00"),
        (2, "order_shipped", "subsc:T-0001:shipped", "C001", "2026-03-02T00:00:00+09:00"),
        (4, "order_placed", "subsc:T-0003:placed", "C002", "2026-03-05T14:20:00+09:00"),
        (4, "subscription_started", "subsc:sub:S-2:started", "C002", "2026-03-05T14:20:00+09:00"),
        (4, "order_shipped", "subsc:T-0003:shipped", "C002", "2026-03-06T00:00:00+09:00"),
        # 解約 without a ステータス更新日時: dated at the latest time its orders show (the shipment).
        (4, "subscription_cancelled", "subsc:sub:S-2:cancelled:20260306", "C002", "2026-03-06T00:00:00+09:00"),
        (6, "order_placed", "subsc:T-0004:placed", "C003", "2026-03-10T16:45:00+09:00"),
        (6, "order_cancelled", "subsc:T-0004:cancelled", "C003", "2026-03-10T16:45:00+09:00"),
        (3, "order_placed", "subsc:T-0002:placed", "C001", "2026-03-31T09:00:00+09:00"),
        (3, "subscription_interval_changed", "subsc:sub:S-1:interval:20260331:45", "C001",
         "2026-03-31T09:00:00+09:00"),
        (3, "order_shipped", "subsc:T-0002:shipped", "C001", "2026-04-01T00:00:00+09:00"),
        (3, "subscription_paused", "subsc:sub:S-1:paused:20260420", "C001", "2026-04-20T12:00:00+09:00"),
    ]
    events = {e.event_id: e for _, e in result.events}
    assert events["subsc:T-0001:placed"].subscription_id == "S-1"
    assert events["subsc:sub:S-1:started"].interval_days == 30  # お届け周期 30日
    assert (events["subsc:sub:S-2:started"].sku, events["subsc:sub:S-2:started"].interval_days) == (
        "AOJIRU-30-TEIKI", 30)  # 1ヶ月; the main line, not the シェイカー
    assert events["subsc:T-0004:placed"].sales_channel.value == "offline"  # 受注経路 電話
    assert rejects(result) == [(8, "数量", "not a whole number: 'abc'")]
    assert (result.orders, result.skipped, result.rejected_orders) == (6, 1, 1)  # 仮受注 skipped


def test_importing_twice_builds_the_same_event_ids() -> None:
    once, again = read("ec-cube_cp932.csv"), read("ec-cube_utf8_bom.csv")
    assert [e for _, e in once.events] == [e for _, e in again.events]


def test_encodings_are_detected() -> None:
    text = "注文番号,受注日\r\n1,2026/04/01\r\n"
    assert decode(text.encode("cp932")).encoding == "cp932"
    assert decode(text.encode("utf-8")).encoding == "utf-8"
    assert decode(codecs.BOM_UTF8 + text.encode("utf-8")).encoding == "utf-8-sig"
    assert decode(codecs.BOM_UTF8 + text.encode("utf-8")).text == text
    assert decode("㈱①髙".encode("cp932")).text == "㈱①髙"  # CP932, not plain Shift_JIS
    assert decode(text.encode("cp932"), encoding="shift_jis").encoding == "cp932"


def test_an_undecodable_row_is_rejected_with_its_row_and_column() -> None:
    good = (FIXTURES / "ec-cube_utf8_bom.csv").read_bytes()
    lines = good.split(b"\r\n")
    # Row 2 (order 1001's product line) gets a byte that is valid in no encoding at its 商品名.
    lines[1] = lines[1].replace("酵素サプリ".encode(), b"\xff\xfe", 1)
    result = read_export(b"\r\n".join(lines), EC_CUBE, CATALOGUE, TOKYO)
    assert result.encoding == "utf-8-sig"
    assert rejects(result)[0] == (2, "商品名", "bytes that are not valid in the file's encoding")
    assert "order 1001 not imported" in result.rejects[0].reason
    assert [e.order_id for _, e in result.events if e.type == "order_placed"] == ["1002", "1003", "1004", "1010"]


def test_a_control_character_in_an_id_is_rejected_at_its_column() -> None:
    text = ("注文番号,会員ID,受注日,商品コード,個数,明細区分(ID)\r\n"
            "A\x001,1,2026-04-01 10:00:00,KOSO-30,1,1\r\n"
            "A2,1,2026-04-01 10:00:00,KOSO-30,1,1\r\n")
    result = read_export(text.encode(), EC_CUBE, CATALOGUE, TOKYO)
    assert [(r.row, r.column) for r in result.rejects] == [(2, "注文番号"), (2, "注文番号")]  # event_id, order_id
    assert [e.order_id for _, e in result.events] == ["A2"]


def test_a_quantity_beyond_the_contract_is_rejected_at_its_line() -> None:
    text = ("注文番号,会員ID,受注日,商品コード,個数,明細区分(ID)\r\n"
            "A1,1,2026-04-01 10:00:00,KOSO-30,1,1\r\n"
            "A1,1,2026-04-01 10:00:00,NYUSAN-30,5000,1\r\n")
    result = read_export(text.encode(), EC_CUBE, CATALOGUE, TOKYO)
    assert [(r.row, r.column) for r in result.rejects] == [(3, "個数")]
    assert result.rejects[0].reason.startswith("order_placed lines.1.quantity:")
    assert result.events == []


def test_broken_quoting_is_rejected_at_its_row() -> None:
    header = "注文番号,会員ID,受注日,商品コード,個数,明細区分(ID)\r\n"
    good = "A{n},1,2026-04-01 10:00:00,KOSO-30,1,1\r\n"
    stray = header + good.format(n=1) + 'A2,1,"2026-04-01"x,KOSO-30,1,1\r\n' + good.format(n=3)
    result = read_export(stray.encode(), EC_CUBE, CATALOGUE, TOKYO)
    assert [(r.row, r.column) for r in result.rejects] == [(3, "")]
    assert [e.order_id for _, e in result.events] == ["A1", "A3"]
    unclosed = header + good.format(n=1) + 'A2,1,"2026-04-01,KOSO-30,1,1\r\n' + good.format(n=3)
    result = read_export(unclosed.encode(), EC_CUBE, CATALOGUE, TOKYO)
    assert [(r.row, r.reason) for r in result.rejects] == [
        (3, "a quoted cell is never closed: this row and all after it are unread")]
    assert [e.order_id for _, e in result.events] == ["A1"]


def test_a_missing_column_stops_the_file_before_any_row() -> None:
    text = "注文番号,会員ID,受注日,商品コード,明細区分(ID)\r\n1,1,2026-04-01,KOSO-30,1\r\n"
    with pytest.raises(MapError, match=r"no column 個数 \(quantity\)"):
        read_export(text.encode(), EC_CUBE, CATALOGUE, TOKYO)
    with pytest.raises(MapError, match="empty"):
        read_export(b"", EC_CUBE, CATALOGUE, TOKYO)


def test_a_map_names_its_problems() -> None:
    with pytest.raises(MapError, match="columns.quantity: Field required"):
        parse_map('source = "x"\n[columns]\norder_id = "a"\nordered_at = "b"\nsku = "c"\n[member]\ncolumn = "d"\n')
    cart = parse_map(SUBSCSTORE.read_text(encoding="utf-8").replace('"お届け周期"', '"お届け間隔"'))
    with pytest.raises(MapError, match=r"no column お届け間隔 \(subscription.interval\)"):
        read("subscstore_orders.csv", cart)


def test_the_catalogue_names_its_problems() -> None:
    with pytest.raises(CatalogueError, match=r'catalogue.X-1: Value error, role is required'):
        parse_catalogue('[catalogue."X-1"]\ndays_supply = 30\n')
    with pytest.raises(CatalogueError, match=r"catalogue.X-1.days_supply: Input should be greater than 0"):
        parse_catalogue('[catalogue."X-1"]\nrole = "main"\ndays_supply = 0\n')
    with pytest.raises(CatalogueError, match="no catalogue at"):
        load_catalogue("/nonexistent/catalogue.toml")


@pytest.mark.parametrize("text, expected", [
    ("2026/04/01 10:15:00", "2026-04-01T10:15:00+09:00"),
    ("2026-04-01 10:15:00", "2026-04-01T10:15:00+09:00"),
    ("2026/4/1 9:05", "2026-04-01T09:05:00+09:00"),
    ("2026-04-01", "2026-04-01T00:00:00+09:00"),
    ("2026-04-01 10:15:00 +0900", "2026-04-01T10:15:00+09:00"),
    ("2026-04-01 01:15:00 +0000", "2026-04-01T10:15:00+09:00"),
    ("2026-04-01T10:15:00.123+09:00", "2026-04-01T10:15:00+09:00"),
])
def test_dates_as_the_carts_write_them(text: str, expected: str) -> None:
    assert parse_time(text, TOKYO).isoformat() == expected


def test_values_as_the_carts_write_them() -> None:
    assert [parse_yen(t) for t in ("3980", "3,980", "3980.00", "¥3,980", "3980円", "")] == [3980] * 5 + [0]
    assert [parse_interval_days(t) for t in ("30", "30日", "1ヶ月", "2か月", "4週間")] == [30, 30, 30, 60, 28]
    for bad in ("soon", "2026/02/30"):
        with pytest.raises(CellProblem):
            parse_time(bad, TOKYO)


def test_rejects_file_opens_in_excel(tmp_path: Path) -> None:
    path = tmp_path / "rejects.csv"
    write_rejects(read("ec-cube_cp932.csv").rejects, path)
    data = path.read_bytes()
    assert data.startswith(codecs.BOM_UTF8)
    assert data.decode("utf-8-sig").splitlines()[:2] == [
        "row,column,reason",
        "11,受注日,not a date: '2026/13/45 25:00:00' (month must be in 1..12) — order 1007 not imported"]


def test_the_command_checks_a_file_without_storing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from starter.cli import main

    rejects_file = tmp_path / "rejects.csv"
    code = main(["import", str(FIXTURES / "subscstore_orders.csv"), "--format", "mapped", "--map", str(SUBSCSTORE),
                 "--catalogue", str(ROOT / "examples" / "catalogue.toml"), "--dry-run", "--rejects", str(rejects_file)])
    out, err = capsys.readouterr()
    assert code == 1  # a row was rejected
    assert "read 7 rows (cp932): 6 orders — 4 imported, 1 skipped" in out
    assert "events: 13 for 3 members" in out and "dry run: nothing stored" in out
    assert "rejected row 8, 数量: not a whole number: 'abc' — order T-0006 not imported" in err
    assert len(rejects_file.read_text(encoding="utf-8-sig").splitlines()) == 2
    assert main(["import", str(FIXTURES / "subscstore_orders.csv"), "--format", "mapped", "--dry-run",
                 "--catalogue", str(ROOT / "examples" / "catalogue.toml")]) == 2  # no --map
    assert main(["import", str(FIXTURES / "shopify_orders_export.csv"), "--format", "shopify", "--dry-run",
                 "--catalogue", str(ROOT / "examples" / "catalogue.toml"), "--timezone", "localtime"]) == 2
    assert "--map" in capsys.readouterr().err


def test_benchmark_runs() -> None:
    bench = measure(3_000)  # make bench measures 100,000 rows; here only that it runs clean
    assert (bench.rows, bench.orders) == (3_000, 1_000)
    assert bench.events > bench.orders and bench.rows_per_second > 0


async def test_a_second_import_adds_nothing(pool) -> None:
    result = read("ec-cube_cp932.csv")
    first = await store_events(pool, result.events, "ec-cube")
    assert (first.accepted, first.duplicate, first.refused) == (len(EC_CUBE_EVENTS), 0, [])
    assert len(first.members) == 5
    again = await store_events(pool, read("ec-cube_utf8_bom.csv").events, "ec-cube")
    assert (again.accepted, again.duplicate, again.refused, again.members) == (0, len(EC_CUBE_EVENTS), [], [])
    logged = await pool.fetchval("SELECT count(*) FROM member_events WHERE event_id LIKE 'ec-cube:10%'")
    assert logged == len(EC_CUBE_EVENTS)
