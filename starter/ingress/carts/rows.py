"""Rows of an export gathered into orders: one row per order line, grouped by order id.

Each row gives its line (SKU, quantity, price) and whatever order-level cells it
fills; an order takes the first non-empty value of each (Shopify leaves them empty
on an order's second line; EC-CUBE repeats them), except the shipment, which is the
earliest 発送日 of the order's parcels. A cell that cannot be read rejects its order,
with the row and the column, and the order's other rows are not imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from starter.ingress.carts.cartmap import CartMap, resolve
from starter.ingress.carts.catalogue import Catalogue, Product
from starter.ingress.carts.csvfile import Row, has_undecodable
from starter.ingress.carts.values import CellProblem, parse_interval_days, parse_quantity, parse_time, parse_yen


@dataclass(frozen=True)
class Reject:
    row: int
    column: str
    reason: str


@dataclass(frozen=True)
class Line:
    row: int
    sku: str
    quantity: int
    unit_price: int
    product: Product


@dataclass
class OrderRows:
    order_id: str
    first_row: int
    lines: list[Line] = field(default_factory=list)
    problems: list[Reject] = field(default_factory=list)
    member_id: str | None = None
    email: str | None = None
    ordered_at: datetime | None = None
    shipped_at: datetime | None = None
    cancelled_at: datetime | None = None
    shipped: bool = False
    cancelled: bool = False
    skipped: bool = False
    offline: bool = False
    subscription_id: str | None = None
    subscription_status: str | None = None  # "paused" or "cancelled" from 継続ステータス
    subscription_changed_at: datetime | None = None
    interval_days: int | None = None


_ORDER_TIMES = ("ordered_at", "shipped_at", "cancelled_at")


class RowReader:
    """Reads rows of one export with one map; ``read`` files each row under its order."""

    def __init__(self, header: list[str], cart: CartMap, catalogue: Catalogue, shop_timezone: tzinfo) -> None:
        self.header, self.cart, self.catalogue, self.tz = header, cart, catalogue, shop_timezone
        lenient = cart.missing_optional == "ignore"
        c, m, s = cart.columns, cart.member, cart.subscription

        def at(column, name, required=False):
            return resolve(header, column, name, required or not lenient)

        self.order_id, self.ordered_at = at(c.order_id, "order_id", True), at(c.ordered_at, "ordered_at", True)
        self.sku, self.quantity = at(c.sku, "sku", True), at(c.quantity, "quantity", True)
        self.unit_price, self.shipped_at = at(c.unit_price, "unit_price"), at(c.shipped_at, "shipped_at")
        self.cancelled_at = at(c.cancelled_at, "cancelled_at")
        self.member_column = at(m.column, "member.column", m.guests == "reject")
        self.email = at(m.email, "member.email", m.guests == "email" and m.column is None)
        self.statuses = [(at(rule.column, "status.column"), rule) for rule in cart.status]
        self.line_kind = at(cart.lines.column, "lines.column", True) if cart.lines else None
        self.channel = at(cart.sales_channel.column, "sales_channel.column") if cart.sales_channel else None
        self.sub_id = at(s.id, "subscription.id") if s else None
        self.sub_status = at(s.status, "subscription.status") if s else None
        self.sub_changed_at = at(s.changed_at, "subscription.changed_at") if s else None
        self.sub_interval = at(s.interval, "subscription.interval") if s else None
        self.orders: dict[str, OrderRows] = {}
        self._times: dict[str, datetime] = {}  # an order's dates repeat on each of its rows
        self.rejects: list[Reject] = []

    def name(self, field_name: str) -> str:
        """The header of the column that gave ``field_name`` ("" when none did)."""
        found = getattr(self, field_name, None)
        return found[1] if found else ""

    def read(self, row: Row, check_bytes: bool) -> None:
        if row.problem:
            self.rejects.append(Reject(row.number, "", row.problem))
            return
        if not any(cell.strip() for cell in row.cells):
            return  # a blank line
        cells = row.cells
        order_id = self._cell(cells, self.order_id)
        if check_bytes:
            broken = [i for i, cell in enumerate(cells) if has_undecodable(cell)]
            if broken:
                problems = [Reject(row.number, self._header(i), "bytes that are not valid in the file's encoding")
                            for i in broken]
                if not order_id or self.order_id[0] in broken:
                    self.rejects.extend(problems)
                    return
                self._order(order_id, row.number).problems.extend(problems)
                return
        if not order_id:
            self.rejects.append(Reject(row.number, self.order_id[1], "no order id"))
            return
        order = self._order(order_id, row.number)
        self._order_cells(order, row.number, cells)
        if self.line_kind is None or self._cell(cells, self.line_kind) in self.cart.lines.products:
            self._line(order, row.number, cells)

    def _order(self, order_id: str, number: int) -> OrderRows:
        order = self.orders.get(order_id)
        if order is None:
            order = self.orders[order_id] = OrderRows(order_id, number)
        return order

    def _header(self, index: int) -> str:
        return self.header[index] if index < len(self.header) else f"column {index + 1}"

    @staticmethod
    def _cell(cells: list[str], found: tuple[int, str] | None) -> str:
        if found is None or found[0] >= len(cells):
            return ""
        return cells[found[0]].strip()

    def _order_cells(self, order: OrderRows, number: int, cells: list[str]) -> None:
        def time_of(found):
            text = self._cell(cells, found)
            if not text:
                return None
            if text in self._times:
                return self._times[text]
            if len(self._times) > 10_000:
                self._times.clear()
            try:
                when = self._times[text] = parse_time(text, self.tz)
                return when
            except CellProblem as problem:
                order.problems.append(Reject(number, found[1], str(problem)))
                return None

        member = self._cell(cells, self.member_column)
        if member and order.member_id is None:
            order.member_id = member
        elif member and member != order.member_id:
            order.problems.append(Reject(number, self.member_column[1],
                                         f"order {order.order_id} names two members on its rows"))
        order.email = order.email or self._cell(cells, self.email) or None
        for name in _ORDER_TIMES:
            when, current = time_of(getattr(self, name)), getattr(order, name)
            if when is not None and (current is None or (name == "shipped_at" and when < current)):
                setattr(order, name, when)
        for found, rule in self.statuses:
            value = self._cell(cells, found)
            order.shipped |= value in rule.shipped
            order.cancelled |= value in rule.cancelled
            order.skipped |= value in rule.skipped
        if self.channel is not None:
            order.offline |= self._cell(cells, self.channel) in self.cart.sales_channel.offline
        if self.sub_id is not None:
            self._subscription_cells(order, number, cells, time_of)

    def _subscription_cells(self, order: OrderRows, number: int, cells: list[str], time_of) -> None:
        rule = self.cart.subscription
        order.subscription_id = order.subscription_id or self._cell(cells, self.sub_id) or None
        status = self._cell(cells, self.sub_status)
        if status in rule.paused:
            order.subscription_status = "paused"
        elif status in rule.cancelled:
            order.subscription_status = "cancelled"
        order.subscription_changed_at = order.subscription_changed_at or time_of(self.sub_changed_at)
        interval = self._cell(cells, self.sub_interval)
        if interval and order.interval_days is None:
            try:
                order.interval_days = parse_interval_days(interval)
            except CellProblem as problem:
                order.problems.append(Reject(number, self.sub_interval[1], str(problem)))

    def _line(self, order: OrderRows, number: int, cells: list[str]) -> None:
        problems = order.problems
        sku = self._cell(cells, self.sku)
        product = self.catalogue.get(sku) if sku else None
        if not sku:
            problems.append(Reject(number, self.sku[1], "no SKU on this line (give the product a code)"))
        elif product is None:
            problems.append(Reject(number, self.sku[1], f"unknown SKU {sku[:128]!r} (add it to the catalogue)"))
        try:
            quantity = parse_quantity(self._cell(cells, self.quantity))
        except CellProblem as problem:
            problems.append(Reject(number, self.quantity[1], str(problem)))
            quantity = 0
        try:
            unit_price = parse_yen(self._cell(cells, self.unit_price))
        except CellProblem as problem:
            problems.append(Reject(number, self.unit_price[1], str(problem)))
            unit_price = 0
        if product is not None and quantity:
            order.lines.append(Line(number, sku, quantity, unit_price, product))
