"""A report as the terminal shows it (an aligned table under Japanese headings, times in
the shop's timezone), as JSON and as CSV for Excel; JSON and CSV keep the identifiers."""

from __future__ import annotations

import codecs
import csv
import io
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from starter.reports.period import DEFAULT_TIMEZONE, shop_time
from starter.table import table


@dataclass
class Report:
    name: str
    title: str
    columns: list[str]  # identifiers: JSON keys and the CSV header
    rows: list[dict[str, Any]]
    start: date | None = None
    end: date | None = None
    as_of: datetime | None = None
    one_decimal: frozenset[str] = field(default=frozenset(), repr=False)
    headers: list[str] | None = field(default=None, repr=False)  # the terminal's headings (default: columns)
    timezone: str = DEFAULT_TIMEZONE  # the shop's: as_of is shown on its clock

    def period(self) -> str:
        """``期間 2026-01-01 〜 2026-06-30 / 基準日時 2026-12-02 09:49 JST``: as_of in the shop's timezone."""
        span = f"{self.start or '…'} 〜 {self.end or '…'}" if self.start or self.end else "全期間"
        as_of = f" / 基準日時 {shop_time(self.as_of, self.timezone).strftime('%Y-%m-%d %H:%M %Z')}" if self.as_of else ""
        return f"期間 {span}{as_of}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "report": self.name, "title": self.title,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "columns": self.columns, "rows": self.rows,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, indent=2)

    def to_csv(self) -> str:
        """The identifiers as the header row, then the rows; CRLF line ends, as Excel writes them."""
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.columns, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return out.getvalue()

    def csv_bytes(self) -> bytes:
        """``to_csv`` in UTF-8 with a BOM: without it Excel reads a CSV as Shift_JIS and garbles the Japanese."""
        return codecs.BOM_UTF8 + self.to_csv().encode("utf-8")

    def to_text(self) -> str:
        """The title and period, then an aligned table under the Japanese headings; numbers right-aligned."""
        cells = [[self._cell(c, row.get(c)) for c in self.columns] for row in self.rows]
        numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in self.rows)
                   and any(row.get(c) is not None for row in self.rows) for c in self.columns]
        lines = [f"{self.title} — {self.period()}", "", *table(self.headers or self.columns, cells, numeric)]
        if not cells:
            lines.append("(該当なし)")
        return "\n".join(lines)

    def _cell(self, column: str, value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, float):
            return f"{value:.1f}" if column in self.one_decimal else f"{value:.3f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)
