"""The plain-text tables of ``preview``, ``member`` and ``report``: local dates with a
Japanese weekday, scenario labels, and columns padded by display width (a kanji takes
two, a combining mark or a zero-width character none: ``wcwidth``)."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from wcwidth import wcswidth, wcwidth

from workflows.scenarios import BY_SCENARIO, Scenario

WEEKDAYS_JA = "月火水木金土日"


def local_date(moment: datetime) -> str:
    """``2026-03-02(月)``: the date of an already local ``moment``, with its weekday."""
    return f"{moment.date().isoformat()}({WEEKDAYS_JA[moment.weekday()]})"


def local_time(moment: datetime) -> str:
    return moment.strftime("%H:%M")


def scenario_name(scenario: str) -> str:
    """The scenario's Japanese name (``サンプル→本品引上``), or "" for an id the engine does not know."""
    if scenario == "BC":
        return "一斉配信"
    try:
        return BY_SCENARIO[Scenario(scenario)].name_ja
    except ValueError:
        return ""


def scenario_label(scenario: str) -> str:
    return f"{scenario} {scenario_name(scenario)}"


def width(text: str) -> int:
    """The terminal columns ``text`` takes: パ is two whether composed or written ハ + ゚ (NFD,
    as macOS writes it), a zero-width space or joiner none, a control character none."""
    columns = wcswidth(text)
    return columns if columns >= 0 else sum(max(wcwidth(c), 0) for c in text)


def row(cells: Sequence[str], widths: Sequence[int], right: Sequence[bool] = ()) -> str:
    """The cells padded to their columns' widths, two spaces apart; a ``right`` column is right-aligned."""
    padded = [" " * (w - width(c)) + c if r else c + " " * (w - width(c))
              for c, w, r in zip(cells, widths, [*right, *[False] * (len(cells) - len(right))])]
    return "  ".join(padded).rstrip()


def table(columns: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] = ()) -> list[str]:
    """The header, a rule under it and one line a row, each column as wide as its widest cell
    (``right``: which columns are right-aligned, numbers; the others are left-aligned)."""
    widths = [max(width(str(r[i])) for r in (columns, *rows)) for i in range(len(columns))]
    return [row(columns, widths, right), row(["-" * w for w in widths], widths, right),
            *(row(r, widths, right) for r in rows)]
