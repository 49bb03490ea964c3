"""``goldenroute send FILE --now``: a file's whole timeline moved to the present.

The example files (and any export replayed for a try-out) are dated in the past, and
a touch more than 3 days overdue when it is planned is ``expired``, never sent
(SPEC §5): sent as they are, their scenarios only record what would have happened.
``--now`` moves every event by one and the same amount, so spacing and each
timestamp's UTC offset are kept, and the latest event lands ``LEAD`` (15 minutes)
before now: its burst's grace period (10 minutes, SPEC §4) has passed, so its "at
once" touches go out on arrival, and steps due within the last 3 days are sent
rather than expired.

Shifted events are new facts, not the file's events again: each gets a new
``event_id``, the original one plus ``@`` and the day it was sent
(``m-sample-001-ev04@2026-12-02``), so the same file shifted again the same day is a
duplicate (nothing is stored twice), while on another day it is new events of the
same members. Every shifted event is validated again through ``parse_event``, as any
input is; a line rejected before the shift stays rejected with its number.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from starter.ingress.parse import Parsed, Rejected
from workflows.events import InvalidEvent, MemberEvent, parse_event

LEAD = timedelta(minutes=15)
MAX_EVENT_ID = 128  # workflows.events.NonEmpty


@dataclass(frozen=True)
class Shift:
    by: timedelta  # added to every occurred_at
    latest: datetime  # the latest event after the shift (its own UTC offset)
    suffix: str  # appended to every event_id: "@2026-12-02"
    events: int  # how many events were shifted

    def describe(self, now: datetime) -> str:
        ago = round((now - self.latest).total_seconds() / 60)
        return (f"shifted {self.events} event{'s' if self.events != 1 else ''} by {_duration(self.by)}: "
                f"the last at {self.latest.isoformat(timespec='minutes')} ({ago} minutes ago); "
                f"event ids end in {self.suffix}")


def shift_to_now(parsed: Parsed, now: datetime, lead: timedelta = LEAD) -> tuple[Parsed, Shift | None]:
    """``parsed`` with every valid event moved so that the latest is ``lead`` before ``now``.

    ``now`` must be timezone-aware; the day in its timezone names the shift in the event
    ids. The amount is whole seconds (the latest event lands up to a second earlier), so
    timestamps given in whole seconds stay so. No valid event: nothing to shift (None).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not parsed.numbered:
        return parsed, None
    latest = max(event.occurred_at for _, event in parsed.numbered)
    by = timedelta(seconds=math.floor(((now - lead) - latest).total_seconds()))
    suffix = f"@{now.date().isoformat()}"
    numbered: list[tuple[int, MemberEvent]] = []
    rejected = list(parsed.rejected)
    for number, event in parsed.numbered:
        try:
            numbered.append((number, _shifted(event, by, suffix)))
        except InvalidEvent as error:  # e.g. moved past the contract's calendar
            rejected.append(Rejected(number, error.problems, parsed.unit))
    rejected.sort(key=lambda r: r.line)
    shift = Shift(by, latest + by, suffix, len(numbered))
    return Parsed(numbered, rejected, parsed.unit), shift


def shifted_event_id(event_id: str, suffix: str) -> str:
    """``{event_id}{suffix}``; an id too long for that keeps its start and a hash of the whole."""
    if len(event_id) + len(suffix) <= MAX_EVENT_ID:
        return event_id + suffix
    digest = hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{event_id[:MAX_EVENT_ID - len(suffix) - 13]}~{digest}{suffix}"


def _shifted(event: MemberEvent, by: timedelta, suffix: str) -> MemberEvent:
    # Only the fields the input named (exclude_unset): an explicit null, e.g. a contact
    # address removed, stays explicit, and one left out stays left out.
    raw = event.model_dump(mode="json", exclude_unset=True)
    raw["occurred_at"] = (event.occurred_at + by).isoformat()
    raw["event_id"] = shifted_event_id(event.event_id, suffix)
    return parse_event(raw)


def _duration(delta: timedelta) -> str:
    sign = "-" if delta < timedelta(0) else "+"
    seconds = abs(int(delta.total_seconds()))
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes = seconds // 60
    return f"{sign}{days}d {hours:02d}h{minutes:02d}m"
