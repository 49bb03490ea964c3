"""CSV rows/s: a generated EC-CUBE 受注CSV (CP932, every dtb_csv column) read into validated events.

``measure(rows)`` is the CSV figure for ``make bench``; ``python -m
starter.ingress.carts.benchmark [ROWS]`` prints it. Only the pure part is timed
(decode, parse, group, validate): storing is the event log's figure.
"""

from __future__ import annotations

import csv
import io
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from starter.ingress.carts import EC_CUBE, parse_catalogue, read_export

HEADER = ("注文ID,注文番号,会員ID,お名前(姓),お名前(名),メールアドレス,小計,対応状況(ID),対応状況(名称),受注日,入金日,"
          "注文詳細ID,商品名,商品コード,価格,個数,税率,明細区分(ID),明細区分(名称),出荷ID,配送先_住所1,発送日,配達用メモ")
CATALOGUE = """
[catalogue."KOSO-30"]
role = "main"
days_supply = 30
[catalogue."NYUSAN-30"]
role = "cross"
days_supply = 30
[catalogue."KOSO-TRIAL-10"]
role = "trial"
days_supply = 10
"""
_STATUS = [("1", "新規受付"), ("5", "発送済み"), ("5", "発送済み"), ("5", "発送済み"), ("3", "注文取消し")]


def generate_ec_cube(rows: int) -> bytes:
    """``rows`` rows: orders of two product lines and a 送料 row, one member per ten orders."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    writer.writerow(HEADER.split(","))
    start = datetime(2024, 1, 1, 9, 0)
    written = order = 0
    while written < rows:
        order += 1
        at = start + timedelta(minutes=7 * order)
        status_id, status = _STATUS[order % len(_STATUS)]
        shipped = f"{at + timedelta(days=1):%Y-%m-%d %H:%M:%S}" if status_id == "5" else ""
        common = [str(order), str(order), str(order // 10 + 1), "山田", "花子", f"m{order // 10}@example.jp",
                  "6460.00", status_id, status, f"{at:%Y-%m-%d %H:%M:%S}", ""]
        for sku, kind, price in (("KOSO-30", "商品", "3980.00"), ("NYUSAN-30", "商品", "2480.00"), ("", "送料", "500.00")):
            if written == rows:
                break
            written += 1
            writer.writerow([*common, str(written), sku or "送料", sku, price, "1", "8",
                             "1" if kind == "商品" else "2", kind, str(order), "東京都渋谷区神宮前1-2-3", shipped, ""])
    return out.getvalue().encode("cp932")


@dataclass(frozen=True)
class CsvBench:
    rows: int
    orders: int
    events: int
    seconds: float  # wall clock
    cpu_seconds: float  # this process's CPU time: steadier on a busy machine

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else float("inf")

    def __str__(self) -> str:
        return (f"CSV import (EC-CUBE, CP932): {self.rows:,} rows → {self.orders:,} orders, {self.events:,} events "
                f"in {self.seconds:.2f} s = {self.rows_per_second:,.0f} rows/s (CPU {self.cpu_seconds:.2f} s)")


def measure(rows: int = 100_000) -> CsvBench:
    data = generate_ec_cube(rows)
    catalogue = parse_catalogue(CATALOGUE)
    began, cpu = time.perf_counter(), time.process_time()
    result = read_export(data, EC_CUBE, catalogue, ZoneInfo("Asia/Tokyo"))
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    if result.rejects:
        raise AssertionError(f"the generated export has rejects: {result.rejects[:3]}")
    return CsvBench(result.rows, result.orders, len(result.events), seconds, cpu)


if __name__ == "__main__":
    print(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
