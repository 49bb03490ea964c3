"""A report's text, JSON and CSV, without a database: headings, the shop's time, widths."""

from __future__ import annotations

import codecs
import csv
import io
import json
from datetime import datetime, timezone

from starter.reports import REPORTS, Report, shop_time, window
from starter.table import width

UTC_AS_OF = datetime(2026, 12, 2, 0, 49, tzinfo=timezone.utc)  # the 基準日時 2026-12-02T00:49+00:00


def report(rows: list[dict], **fields) -> Report:
    spec = REPORTS["scenarios"]
    return Report(name=spec.name, title=spec.title, columns=list(spec.columns), rows=rows,
                  headers=list(spec.headers), **fields)


def scenario_row(variant: str, entered: int) -> dict:
    return {"scenario": "S01", "name": "サンプル→本品引上", "variant": variant, "kpi": "本商品引上率",
            "window_days": 37, "entered": entered, "holdout": 1, "touched": 3, "converted": 2, "rate": 0.5,
            "holdout_converted": 0, "holdout_rate": 0.0, "lift": 0.5, "lift_ci_low": -0.1, "lift_ci_high": 0.8}


def test_as_of_is_shown_on_the_shops_clock():
    text = report([], as_of=UTC_AS_OF).to_text()
    assert text.splitlines()[0] == "シナリオ別KPI (ホールドアウト比較) — 期間 全期間 / 基準日時 2026-12-02 09:49 JST"
    assert shop_time(UTC_AS_OF).isoformat() == "2026-12-02T09:49:00+09:00"
    # the window a report runs for carries it on the shop's clock, so --json says +09:00 too
    w = window(REPORTS["ltv"], None, None, None, now=UTC_AS_OF)
    assert w.as_of == UTC_AS_OF and w.as_of.isoformat() == "2026-12-02T09:49:00+09:00"
    assert json.loads(report([], as_of=w.as_of).to_json())["as_of"] == "2026-12-02T09:49:00+09:00"


def test_headings_are_japanese_on_the_terminal_and_identifiers_in_json_and_csv():
    r = report([scenario_row("A", 12)], as_of=UTC_AS_OF)
    header = r.to_text().splitlines()[2]
    assert "ホールドアウト転換" in header and "リフト下限" in header and "リフト上限" in header
    assert "holdout_converted" not in header and "lift_ci_low" not in header
    assert json.loads(r.to_json())["columns"] == list(REPORTS["scenarios"].columns)
    assert next(csv.reader(io.StringIO(r.to_csv()))) == list(REPORTS["scenarios"].columns)
    assert r.csv_bytes().startswith(codecs.BOM_UTF8 + b"scenario,name,variant,")
    assert r.to_csv() == r.csv_bytes().decode("utf-8-sig")


def test_every_report_has_a_heading_for_each_column():
    for spec in REPORTS.values():
        assert len(spec.headers) == len(spec.columns) == len(set(spec.headers)), spec.name


def test_columns_line_up_whatever_the_japanese_cells_are_made_of():
    # パック composed, decomposed (ハ + ゚, as macOS writes it), with a zero-width space, and
    # half-width, with the terminal columns each shows in: the padding after each makes up the
    # variant column's width (its heading パターン: 8) and the two spaces between columns.
    shown = {"パック": 6, "ハ\u309aック": 6, "パッ\u200bク": 6, "ﾊﾟｯｸ": 4, "A": 1}
    lines = report([scenario_row(v, 12_345) for v in shown]).to_text().splitlines()
    header, rows = lines[2], lines[4:]
    for variant, row in zip(shown, rows):
        after = row.split(" " + variant, 1)[1]
        assert len(after) - len(after.lstrip(" ")) == 8 + 2 - shown[variant], row
    kpi = {width(line[:line.index(marker)]) for line, marker in [(header, "KPI"), *((r, "本商品引上率") for r in rows)]}
    assert len(kpi) == 1, lines
    # numbers are right-aligned under their heading
    ends = {width(row[:row.index("12,345") + len("12,345")]) for row in rows}
    assert ends == {width(header[:header.index("対象") + len("対象")])}
