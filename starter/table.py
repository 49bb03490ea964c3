"""The plain-text tables of ``preview`` and ``member``: local dates with a Japanese
weekday, scenario labels, and columns padded by display width (a kanji takes two)."""

from __future__ import annotations

import unicodedata
from datetime import datetime

from workflows.scenarios import BY_SCENARIO, Scenario

WEEKDAYS_JA = "月火水木金土日"


def local_date(moment: datetime) -> str:
    """``2026-03-02(月)``: the date of an already local ``moment``, with its weekday."""
    return f"{moment.date().isoformat()}({WEEKDAYS_JA[moment.weekday()]})"


def local_time(moment: datetime) -> str:
    return moment.strftime("%H:%M")


def scenario_name(scenario: str) -> str:
    """The scenario's Japanese name (``サンプル→本品引上``), or "" for an id the engine does not know."""
    try:
        return BY_SCENARIO[Scenario(scenario)].name_ja
    except ValueError:
        return ""


def scenario_label(scenario: str) -> str:
    return f"{scenario} {scenario_name(scenario)}"


def width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def row(cells: tuple[str, ...], widths: list[int]) -> str:
    padded = [c + " " * (w - width(c)) for c, w in zip(cells, widths)]
    return "  ".join(padded).rstrip()


def table(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """The header, a rule under it and one line a row, each column as wide as its widest cell."""
    widths = [max(width(str(r[i])) for r in (columns, *rows)) for i in range(len(columns))]
    return [row(columns, widths), row(tuple("-" * w for w in widths), widths), *(row(r, widths) for r in rows)]
