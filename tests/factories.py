"""Events as order systems send them, for tests and examples."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from activities.contacts import CHANNEL_OF_FIELD
from workflows.events import Channel, MemberEvent, parse_event

JST = ZoneInfo("Asia/Tokyo")
_ids = itertools.count(1)


def event(type: str, member_id: str, at: datetime, **fields) -> MemberEvent:
    return parse_event({
        "type": type, "event_id": f"{type}-{next(_ids)}", "member_id": member_id,
        "occurred_at": at.isoformat(), **fields,
    })


# Fake contact data per reachable channel (the ingress turns it back into `reachable`).


def contact_for(member_id: str, reachable) -> dict:
    fake = {"email": f"{member_id}@example.jp", "line_user_id": f"U{member_id}",
            "phone": "090-0000-0000", "postal_address": "東京都千代田区千代田1-1"}
    field_of = {channel.value: name for name, channel in CHANNEL_OF_FIELD.items()}
    return {field_of[c]: fake[field_of[c]] for c in reachable}


def registered(member_id: str, at: datetime, *, line=True, email=True, sales_channel="online",
               reachable=("line", "email", "dm")) -> MemberEvent:
    """A registration with contact data; ``reachable`` is also set, as the ingress would, for pure tests."""
    e = event("member_registered", member_id, at, sales_channel=sales_channel,
              consent={"email": email, "line": line, "sms": False, "push": False, "dm": True},
              contact=contact_for(member_id, reachable))
    return e.model_copy(update={"reachable": frozenset(Channel(c) for c in reachable)})


def order(member_id: str, at: datetime, order_id: str, *, role="main", days_supply=30,
          quantity=1, price=3980, subscription_id=None, extra_lines=()) -> MemberEvent:
    lines = [{"sku": "KOSO-30", "role": role, "quantity": quantity, "days_supply": days_supply,
              "unit_price": price}, *extra_lines]
    fields = {"order_id": order_id, "lines": lines}
    if subscription_id:
        fields["subscription_id"] = subscription_id
    return event("order_placed", member_id, at, **fields)


def shipped(member_id: str, at: datetime, order_id: str) -> MemberEvent:
    return event("order_shipped", member_id, at, order_id=order_id)


def sample(member_id: str, at: datetime, order_id: str, days_supply=7) -> MemberEvent:
    return event("sample_requested", member_id, at, order_id=order_id, sku="KOSO-SAMPLE", days_supply=days_supply)


def jst(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=JST)


def days(n: float) -> timedelta:
    return timedelta(days=n)


def cancelled(member_id: str, at: datetime, order_id: str) -> MemberEvent:
    return event("order_cancelled", member_id, at, order_id=order_id)


def subscription(type: str, member_id: str, at: datetime, subscription_id: str = "sub-1", **fields) -> MemberEvent:
    """A ``subscription_*`` event (started, paused, resumed, cancelled, interval_changed)."""
    return event(type, member_id, at, subscription_id=subscription_id, **fields)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)
