"""The preview's two timelines: the input's, and the test server's, whole days apart.

The test server's clock starts at the real now and only moves forward, so a
member's whole timeline is shifted by a whole number of days ``D`` — the fewest
that put the first event at or after the server's now — in the member's
wall-clock time: every event keeps its local time of day, and so does every
touch, shifted back by the same ``D`` days for the report.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

DAY = timedelta(days=1)


def shift(moment: datetime, days: int, zone: ZoneInfo) -> datetime:
    """``moment`` moved by whole days on the member's wall clock, keeping its local time of day."""
    local = moment.astimezone(zone)
    return (local.replace(tzinfo=None) + timedelta(days=days)).replace(tzinfo=zone)


def days_to_shift(first: datetime, now: datetime, zone: ZoneInfo) -> int:
    """The fewest whole days that put ``first`` at or after ``now`` (negative if it lies ahead)."""
    days = math.ceil((now - first) / DAY)
    while shift(first, days, zone) < now:
        days += 1
    while shift(first, days - 1, zone) >= now:
        days -= 1
    return days


def shift_occurrence(occurrence: str, days: int, zone: ZoneInfo) -> str:
    """An occurrence that names its moment (a pause: ``SUB-1@2026-05-01T09:00:00+09:00``; a churn
    signal: ``signal@…``) with that moment shifted too, in the offset it was written in.

    Shifted back, it names the moment of the input's event again, so the same touch has the
    same key whatever day the test server's clock was on (both sides of a compare)."""
    head, at, tail = occurrence.rpartition("@")
    if not at:
        return occurrence
    try:
        moment = datetime.fromisoformat(tail)
    except ValueError:
        return occurrence
    if moment.tzinfo is None:
        return occurrence
    return f"{head}@{shift(moment, days, zone).astimezone(moment.tzinfo).isoformat()}"
