"""The reference members of the cost benchmark, and the event stream of the ingest benchmark.

Each persona is a year of one member's order-system events at member-local
(Asia/Tokyo) times, as offsets from a local midnight ``t0``; registrations carry
contact data, which the ingress stores in PostgreSQL and strips, as in production.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable
from zoneinfo import ZoneInfo

from workflows.events import MemberEvent, parse_event

JST = ZoneInfo("Asia/Tokyo")
YEAR = timedelta(days=365)
KOSO = {"sku": "KOSO-30", "role": "main", "quantity": 1, "days_supply": 30, "unit_price": 3980}
NYUSAN = {"sku": "NYUSAN-30", "role": "cross", "quantity": 1, "days_supply": 30, "unit_price": 2480}


class _Builder:
    """Events of one member; each ``add`` at day ``day`` after ``t0``, local time ``hhmm``."""

    def __init__(self, member_id: str, t0: datetime) -> None:
        self.member_id, self.t0, self.events = member_id, t0, []
        self._ids = itertools.count(1)

    def add(self, type: str, day: int, hhmm: str, **fields) -> None:
        hours, minutes = (int(p) for p in hhmm.split(":"))
        at = self.t0 + timedelta(days=day, hours=hours, minutes=minutes)
        self.events.append(parse_event({
            "type": type, "event_id": f"{self.member_id}-ev{next(self._ids):02d}", "member_id": self.member_id,
            "occurred_at": at.isoformat(), **fields,
        }))

    def register(self, day: int, hhmm: str, *, email: bool = True, line: bool = False, sms: bool = False) -> None:
        contact = {}
        if email:
            contact["email"] = f"{self.member_id}@example.jp"
        if line:
            contact["line_user_id"] = f"U{self.member_id}"
        if sms:
            contact["phone"] = "090-0000-0000"
        self.add("member_registered", day, hhmm, sales_channel="online",
                 consent={"email": email, "line": line, "sms": sms, "push": False, "dm": False}, contact=contact)

    def order(self, day: int, hhmm: str, order_id: str, *, cross: bool = False, subscription_id: str | None = None,
              ship_day: int | None = None, ship_hhmm: str = "15:00") -> None:
        fields = {"order_id": order_id, "lines": [KOSO, NYUSAN] if cross else [KOSO]}
        if subscription_id:
            fields["subscription_id"] = subscription_id
        self.add("order_placed", day, hhmm, **fields)
        if ship_day is not None:
            self.add("order_shipped", ship_day, ship_hhmm, order_id=order_id)


@dataclass(frozen=True)
class Persona:
    name: str
    description: str
    build: Callable[[str, datetime], list[MemberEvent]]

    def events(self, t0: datetime, member_id: str | None = None) -> list[MemberEvent]:
        return self.build(member_id or f"bench-{self.name}", t0)


def sample_non_converter(member_id: str, t0: datetime) -> list[MemberEvent]:
    b = _Builder(member_id, t0)
    b.register(0, "12:30")
    b.add("sample_requested", 0, "12:31", order_id="SMP-1", sku="KOSO-SAMPLE-14", days_supply=14)
    b.add("order_shipped", 1, "16:00", order_id="SMP-1")
    return b.events


def f1_dropout(member_id: str, t0: datetime) -> list[MemberEvent]:
    b = _Builder(member_id, t0)
    b.register(0, "08:47", email=False, sms=True)
    b.order(0, "08:49", "ORD-1", ship_day=1)
    return b.events


# The days of the loyal buyer's twelve orders (about every 29–30 days, as examples/preview/07).
LOYAL_DAYS = (0, 29, 58, 88, 117, 147, 176, 206, 236, 265, 295, 324)


def loyal_buyer(member_id: str, t0: datetime) -> list[MemberEvent]:
    b = _Builder(member_id, t0)
    b.register(0, "20:41", line=True)
    for n, day in enumerate(LOYAL_DAYS, start=1):
        b.order(day, "20:44" if n == 1 else ("19:05", "07:58", "12:22", "20:03")[n % 4], f"ORD-{n}",
                cross=True, ship_day=day + 1)
    return b.events


def subscriber_pause_churn(member_id: str, t0: datetime) -> list[MemberEvent]:
    b = _Builder(member_id, t0)
    sub = "SUB-1"
    b.register(0, "12:15", line=True)
    b.order(0, "12:18", "ORD-1", subscription_id=sub, ship_day=1, ship_hhmm="14:00")
    b.add("subscription_started", 0, "12:19", subscription_id=sub, sku="KOSO-30", interval_days=30)
    b.order(30, "06:00", "ORD-2", subscription_id=sub, ship_day=31, ship_hhmm="13:00")
    b.order(60, "06:00", "ORD-3", subscription_id=sub, ship_day=61, ship_hhmm="13:00")
    b.add("churn_signal", 72, "23:18", signal="cancel_page_viewed")
    b.add("subscription_paused", 80, "10:15", subscription_id=sub)
    b.add("subscription_resumed", 150, "21:48", subscription_id=sub)  # day 70 of the pause: after S07
    for n, day in enumerate(range(151, 365, 30), start=4):
        b.order(day, "06:00", f"ORD-{n}", subscription_id=sub, ship_day=day + 1, ship_hhmm="13:00")
    return b.events


def dormant_reactivated(member_id: str, t0: datetime) -> list[MemberEvent]:
    b = _Builder(member_id, t0)
    b.register(0, "19:00", line=True)
    b.order(0, "19:05", "ORD-1", ship_day=1)
    b.order(30, "12:00", "ORD-2", ship_day=31)
    # Dormant 90 days after the 2nd order (day 120): S11 comeback offer, then new product.
    b.order(200, "09:30", "ORD-3", ship_day=201)
    b.order(230, "21:10", "ORD-4", ship_day=231)
    return b.events


PERSONAS = (
    Persona("sample_non_converter", "sample request, never buys", sample_non_converter),
    Persona("f1_dropout", "one purchase (F1), then nothing", f1_dropout),
    Persona("loyal_buyer", "twelve normal purchases a year, with cross product", loyal_buyer),
    Persona("subscriber", "subscriber: churn signal, 70-day pause, resumes", subscriber_pause_churn),
    Persona("dormant_reactivated", "two purchases, dormant, buys again on day 200", dormant_reactivated),
)
BY_NAME = {p.name: p for p in PERSONAS}


def local_midnight_after(moment: datetime) -> datetime:
    """The next member-local midnight after ``moment`` (events start the day after the server's now)."""
    local = moment.astimezone(JST)
    return datetime(local.year, local.month, local.day, tzinfo=JST) + timedelta(days=1)


def ingest_stream(member_id: str, now: datetime) -> list[MemberEvent]:
    """Eight events of a live member, in order over the last minutes: registration, four orders, three shipments."""
    b = _Builder(member_id, now - timedelta(minutes=10))
    b.register(0, "00:00", line=True)
    b.order(0, "00:01", "ORD-1", ship_day=0, ship_hhmm="00:02")
    b.order(0, "00:03", "ORD-2", cross=True, ship_day=0, ship_hhmm="00:04")
    b.order(0, "00:05", "ORD-3", ship_day=0, ship_hhmm="00:06")
    b.order(0, "00:07", "ORD-4")
    return b.events


def memory_stream(member_id: str, now: datetime) -> list[MemberEvent]:
    """A registration and an order: a realistic state for a member in the worker's cache."""
    b = _Builder(member_id, now - timedelta(minutes=2))
    b.register(0, "00:00", line=True)
    b.order(0, "00:01", "ORD-1", cross=True)
    return b.events
