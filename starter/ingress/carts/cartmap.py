"""How one cart's order export is read: which column holds what, and what its status values mean.

EC-CUBE and Shopify are built-in maps (``eccube.py``, ``shopify.py``); any other
cart is described by the same model in a TOML file (``mapped.py``). A column is
named by its header, or by a list of headers of which the first present is used
(carts rename columns between versions, and shops switch columns off).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Column = str | list[str]
Values = list[Annotated[str, Field(max_length=200)]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Columns(_Strict):
    order_id: Column
    ordered_at: Column
    sku: Column
    quantity: Column
    unit_price: Column | None = None
    shipped_at: Column | None = None
    cancelled_at: Column | None = None


class MemberRule(_Strict):
    """Where the member id comes from. ``column`` is the shop's own member id; an order
    without one (a guest) takes an id made from ``email`` when ``guests = "email"``
    (see ``values.email_member_id``) or is rejected when ``guests = "reject"``."""

    column: Column | None = None
    email: Column | None = None
    guests: Literal["email", "reject"] = "reject"
    email_prefix: Annotated[str, Field(max_length=32)] = "guest:"


class StatusRule(_Strict):
    """One status column and which of its values mean shipped, cancelled (取消・返品) or
    skipped (not an order yet: 購入処理中, 仮受注 …). Other values: an order as it is."""

    column: Column
    shipped: Values = []
    cancelled: Values = []
    skipped: Values = []


class LineRule(_Strict):
    """Which rows are product lines: a row whose ``column`` holds none of ``products``
    (送料, 手数料, 割引 rows …) is left out."""

    column: Column
    products: Values


class SalesChannelRule(_Strict):
    column: Column
    offline: Values  # e.g. 電話, FAX, ハガキ: orders that did not come in online


class SubscriptionRule(_Strict):
    """定期 columns. ``id`` (定期受注番号) links an order to its subscription: the order
    carries ``subscription_id`` and the subscription's first order in the file starts it.
    ``status`` (継続ステータス) with its ``paused`` / ``cancelled`` values gives
    subscription_paused / subscription_cancelled, dated by ``changed_at`` when the cart
    exports that date, else by the latest time its orders in the file show (order or
    shipment). subscription_resumed is not derivable from a status snapshot."""

    id: Column
    status: Column | None = None
    paused: Values = []
    cancelled: Values = []
    changed_at: Column | None = None
    interval: Column | None = None  # お届け周期: "30日", "1ヶ月" …; else the main line's supply


class CartMap(_Strict):
    source: Annotated[str, Field(min_length=1, max_length=24, pattern=r"^[a-z0-9][a-z0-9-]*$")]
    columns: Columns
    member: MemberRule
    status: list[StatusRule] = []
    lines: LineRule | None = None
    sales_channel: SalesChannelRule | None = None
    subscription: SubscriptionRule | None = None
    # "error": every column the map names must be in the export (a typo is caught at once);
    # "ignore": an optional column may be missing (the built-in maps: shops switch columns off).
    missing_optional: Literal["error", "ignore"] = "error"

    @field_validator("status", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        # TOML: a single [status] table or several [[status]] tables.
        return [value] if isinstance(value, dict) else value


class MapError(ValueError):
    """The export does not fit its map (a required column is missing)."""


def resolve(header: list[str], column: Column | None, field: str, required: bool = True) -> tuple[int, str] | None:
    """The index and header name of ``column`` in the export, or None when optional and absent."""
    if column is None:
        return None
    names = [column] if isinstance(column, str) else column
    positions = {}
    for index, name in enumerate(header):
        positions.setdefault(name, index)
    for name in names:
        if name in positions:
            return positions[name], name
    if not required:
        return None
    shown = ", ".join(header[:12]) + (" …" if len(header) > 12 else "")
    raise MapError(f"no column {' or '.join(names)} ({field}) in the header: {shown}")
