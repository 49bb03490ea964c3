"""Orders of a cart export → order-system events, validated through the one event contract.

Per order (event ids are deterministic, so importing a file again adds nothing):

- ``{source}:{order}:placed`` — ``order_placed`` at the order time, its lines' roles and
  days of supply from the catalogue; an order of samples only is ``{…}:sample``, one
  ``sample_requested``; sample lines riding on a paid order, and ``ignore`` SKUs, are left
  out (a free sample in the parcel of a purchase is not a request for one).
- ``{…}:shipped`` — when the order has a 発送日 / Fulfilled at, or its status says shipped
  (then dated at the order time, the anchor it would have had anyway).
- ``{…}:cancelled`` — when its status says cancelled or returned, or it has a cancel
  date; without one it is dated at the latest time the order shows.
- ``{source}:sub:{定期受注番号}:…`` — ``subscription_started`` at the subscription's first
  order in the file (its main line's SKU; お届け周期, else that line's supply);
  ``interval_changed`` when a later order shows another お届け周期; ``paused`` /
  ``cancelled`` from 継続ステータス, the date in the id so a later pause is a new event.

Every event is built as JSON and validated by ``workflows.events.parse_event``; a
problem it finds is reported at the row and column it came from.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from starter.ingress.carts.rows import Line, OrderRows, Reject, RowReader
from starter.ingress.carts.values import CellProblem, email_member_id
from workflows.events import InvalidEvent, LineRole, MemberEvent, parse_event

# Within one instant: the order before its shipment before its cancellation.
_RANK = {"order_placed": 0, "sample_requested": 0, "subscription_started": 1, "order_shipped": 2,
         "subscription_interval_changed": 3, "order_cancelled": 4, "subscription_paused": 5,
         "subscription_cancelled": 5}
# Which column an event field came from (RowReader attribute names).
_FIELD_COLUMN = {"member_id": "member_column", "order_id": "order_id", "event_id": "order_id", "sku": "sku",
                 "quantity": "quantity", "unit_price": "unit_price", "subscription_id": "sub_id",
                 "interval_days": "sub_interval"}
_TIME_COLUMN = {"order_placed": "ordered_at", "sample_requested": "ordered_at", "order_shipped": "shipped_at",
                "order_cancelled": "cancelled_at", "subscription_started": "ordered_at",
                "subscription_interval_changed": "ordered_at", "subscription_paused": "sub_changed_at",
                "subscription_cancelled": "sub_changed_at"}


@dataclass(frozen=True)
class Draft:
    number: int  # the CSV row of the order's first line
    payload: dict
    lines: tuple[Line, ...] = ()


@dataclass(frozen=True)
class Numbered:
    number: int
    event: MemberEvent


@dataclass
class Built:
    events: list[tuple[int, MemberEvent]]
    rejects: list[Reject]
    orders: int
    skipped: int
    rejected_orders: int


def build_events(reader: RowReader) -> Built:
    source = reader.cart.source
    valid: list[Numbered] = []
    rejects = list(reader.rejects)
    skipped = rejected = 0
    subscriptions: dict[str, list[OrderRows]] = defaultdict(list)
    for order in reader.orders.values():
        if order.skipped:  # not an order yet (購入処理中): whatever its rows hold, nothing to import
            skipped += 1
            continue
        if not order.problems:
            _complete(order, reader)
        if order.problems:
            rejects.extend(_whole_order(order.problems, order))
            rejected += 1
            continue
        drafts = _order_drafts(source, order)
        if not drafts:
            skipped += 1  # only ignored SKUs, or only 送料 / 手数料 rows
            continue
        events, problems = _validate(drafts, reader)
        if problems:
            rejects.extend(_whole_order(problems, order))
            rejected += 1
            continue
        valid.extend(events)
        if order.subscription_id and drafts[0].payload["type"] == "order_placed":
            subscriptions[order.subscription_id].append(order)
    for subscription_id, orders in subscriptions.items():
        events, problems = _validate(_subscription_drafts(source, subscription_id, orders), reader)
        valid.extend(events)
        rejects.extend(problems)
    valid.sort(key=lambda v: (v.event.occurred_at, v.number, _RANK[v.event.type]))
    return Built([(v.number, v.event) for v in valid], sorted(rejects, key=lambda r: r.row),
                 len(reader.orders), skipped, rejected)


def _whole_order(problems: list[Reject], order: OrderRows) -> list[Reject]:
    return [Reject(p.row, p.column, f"{p.reason} — order {order.order_id} not imported") for p in problems]


def _complete(order: OrderRows, reader: RowReader) -> None:
    """The order's member id and order time, or the problems that it lacks them."""
    if order.ordered_at is None:
        order.problems.append(Reject(order.first_row, reader.name("ordered_at"), "no order date"))
    if order.member_id:
        return
    rule = reader.cart.member
    if rule.guests == "email" and order.email:
        try:
            order.member_id = email_member_id(rule.email_prefix, order.email)
        except CellProblem as problem:
            order.problems.append(Reject(order.first_row, reader.name("email"), str(problem)))
        return
    why = ("no e-mail address: the export has no customer id, so the order has no member"
           if rule.column is None else
           "no member id: a guest order is not imported (guests = \"reject\")" if rule.guests == "reject" else
           "no member id and no e-mail address to make one from")
    order.problems.append(Reject(order.first_row, reader.name("member_column") or reader.name("email"), why))


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _order_drafts(source: str, order: OrderRows) -> list[Draft]:
    key = f"{source}:{order.order_id}"
    active = [line for line in order.lines if not line.product.ignore]
    goods = tuple(line for line in active if not line.product.sample)
    samples = [line for line in active if line.product.sample]
    common = {"member_id": order.member_id, "order_id": order.order_id}
    ordered_at = order.ordered_at
    if goods:
        first = {"type": "order_placed", "event_id": f"{key}:placed", "occurred_at": _iso(ordered_at), **common,
                 "lines": [{"sku": line.sku, "role": line.product.role.value, "quantity": line.quantity,
                            "days_supply": line.product.days_supply, "unit_price": line.unit_price}
                           for line in goods],
                 "sales_channel": "offline" if order.offline else "online"}
        if order.subscription_id:
            first["subscription_id"] = order.subscription_id
    elif samples:
        first = {"type": "sample_requested", "event_id": f"{key}:sample", "occurred_at": _iso(ordered_at), **common,
                 "sku": samples[0].sku, "days_supply": samples[0].product.days_supply}
    else:
        return []
    drafts = [Draft(order.first_row, first, goods)]
    shipped_at = None
    if order.shipped_at is not None or order.shipped:
        # A date-only 発送日 (midnight) must not come before the order it ships.
        shipped_at = max(order.shipped_at or ordered_at, ordered_at)
        drafts.append(Draft(order.first_row, {"type": "order_shipped", "event_id": f"{key}:shipped",
                                              "occurred_at": _iso(shipped_at), **common}))
    if order.cancelled or order.cancelled_at is not None:
        cancelled_at = max(filter(None, (order.cancelled_at, ordered_at, shipped_at)))
        drafts.append(Draft(order.first_row, {"type": "order_cancelled", "event_id": f"{key}:cancelled",
                                              "occurred_at": _iso(cancelled_at), **common}))
    return drafts


def _subscription_drafts(source: str, subscription_id: str, orders: list[OrderRows]) -> list[Draft]:
    orders = sorted(orders, key=lambda o: o.ordered_at)
    first = orders[0]
    goods = [line for line in first.lines if not (line.product.ignore or line.product.sample)]
    line = next((g for g in goods if g.product.role is LineRole.MAIN), goods[0])
    interval = first.interval_days or line.product.days_supply * line.quantity
    key = f"{source}:sub:{subscription_id}"
    common = {"member_id": first.member_id, "subscription_id": subscription_id}
    drafts = [Draft(first.first_row, {"type": "subscription_started", "event_id": f"{key}:started",
                                      "occurred_at": _iso(first.ordered_at), **common,
                                      "sku": line.sku, "interval_days": interval})]
    for order in orders[1:]:
        if order.interval_days and order.interval_days != interval:
            interval = order.interval_days
            drafts.append(Draft(order.first_row, {
                "type": "subscription_interval_changed", "occurred_at": _iso(order.ordered_at), **common,
                "event_id": f"{key}:interval:{order.ordered_at:%Y%m%d}:{interval}", "interval_days": interval}))
    told = [order for order in orders if order.subscription_status]
    if told:
        latest = told[-1]
        shown = max(filter(None, (t for o in orders for t in (o.ordered_at, o.shipped_at))))
        at = max(latest.subscription_changed_at or shown, first.ordered_at)
        status = latest.subscription_status
        drafts.append(Draft(latest.first_row, {"type": f"subscription_{status}", "occurred_at": _iso(at), **common,
                                               "event_id": f"{key}:{status}:{at:%Y%m%d}"}))
    return drafts


def _validate(drafts: list[Draft], reader: RowReader) -> tuple[list[Numbered], list[Reject]]:
    """Every draft through ``parse_event``; its problems at their row and column."""
    valid, rejects = [], []
    for draft in drafts:
        try:
            event = parse_event(draft.payload)
        except InvalidEvent as error:
            kind = draft.payload["type"]
            rejects.extend(Reject(*_locate(problem, kind, draft, reader), f"{kind} {problem}")
                           for problem in error.problems)
            continue
        valid.append(Numbered(draft.number, event))
    return valid, rejects


def _locate(problem: str, kind: str, draft: Draft, reader: RowReader) -> tuple[int, str]:
    path = problem.split(":", 1)[0].split(".")
    if path[0] == "lines" and len(path) > 1 and path[1].isdigit() and int(path[1]) < len(draft.lines):
        line = draft.lines[int(path[1])]
        name = path[2] if len(path) > 2 else "quantity"  # quantity × days_supply
        return line.row, ("catalogue days_supply" if name == "days_supply" else
                          reader.name(_FIELD_COLUMN.get(name, "sku")))
    if path[0] == "occurred_at":
        return draft.number, reader.name(_TIME_COLUMN[kind]) or reader.name("ordered_at")
    column = reader.name(_FIELD_COLUMN.get(path[0], ""))
    if path[0] == "member_id" and not column:
        column = reader.name("email")
    return draft.number, column
