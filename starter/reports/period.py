"""The period and the "today" a report runs for, in the shop's timezone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from starter.reports.registry import ReportSpec

# The shop's timezone: report dates and cohort months are read in it and every time a
# report prints is shown in it. One constant until the shop's configuration carries it
# (worker.settings has no shop timezone yet); Asia/Tokyo, as the dashboard shows it.
SHOP_TIMEZONE = "Asia/Tokyo"


class ReportError(ValueError):
    """A report cannot be run as asked (unknown name, bad period); the message says why."""


@dataclass(frozen=True)
class Window:
    """The period and the 'today' a report runs for (bounds as timestamps; upper exclusive)."""

    start: datetime | None
    end: datetime | None
    as_of: datetime


def day_start(day: date) -> datetime:
    """00:00 of a calendar day in the shop's timezone."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(SHOP_TIMEZONE))


def shop_time(moment: datetime) -> datetime:
    """``moment`` on the shop's clock (``2026-12-02T00:49+00:00`` → ``2026-12-02T09:49+09:00``)."""
    return moment.astimezone(ZoneInfo(SHOP_TIMEZONE))


def window(spec: ReportSpec, start: date | None, end: date | None, as_of: datetime | None,
           now: datetime | None = None) -> Window:
    if start and end and start > end:
        raise ReportError(f"--from {start} is after --to {end}")
    if as_of is not None and as_of.tzinfo is None:
        raise ReportError("as_of needs a timezone offset")
    upper = day_start(end + timedelta(days=1)) if end else None
    if as_of is None:
        as_of = upper if spec.as_of == "to" and upper is not None else (now or datetime.now(timezone.utc))
    return Window(start=day_start(start) if start else None, end=upper, as_of=shop_time(as_of))
