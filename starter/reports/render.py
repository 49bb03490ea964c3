"""A report's rows as the terminal shows them (an aligned table), as JSON and as CSV."""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any


@dataclass
class Report:
    name: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    start: date | None = None
    end: date | None = None
    as_of: datetime | None = None
    one_decimal: frozenset[str] = field(default=frozenset(), repr=False)

    def period(self) -> str:
        span = f"{self.start or '…'} 〜 {self.end or '…'}" if self.start or self.end else "全期間"
        return f"期間 {span}" + (f" / 基準日時 {self.as_of.isoformat(timespec='minutes')}" if self.as_of else "")

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
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return out.getvalue()

    def to_text(self) -> str:
        """An aligned table (East Asian wide characters count two columns); numbers right-aligned."""
        cells = [[self._cell(c, row.get(c)) for c in self.columns] for row in self.rows]
        widths = [max(_width(text) for text in (c, *(r[i] for r in cells))) for i, c in enumerate(self.columns)]
        numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in self.rows)
                   and any(row.get(c) is not None for row in self.rows) for c in self.columns]
        lines = [f"{self.title} — {self.period()}", "",
                 _line(self.columns, widths, numeric), _line(["-" * w for w in widths], widths, numeric)]
        lines += [_line(r, widths, numeric) for r in cells]
        if not cells:
            lines.append("(no rows)")
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


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _line(cells: list[str], widths: list[int], numeric: list[bool]) -> str:
    padded = [" " * (w - _width(c)) + c if right else c + " " * (w - _width(c))
              for c, w, right in zip(cells, widths, numeric)]
    return "  ".join(padded).rstrip()


