"""Shopify's order export (注文管理 > エクスポート, "Export orders" as CSV for Excel or plain CSV).

UTF-8 (with a BOM in the Excel variant), English headers whatever the admin's
language. One row per line item; the order's columns (Email, Created at, Financial
Status …) are filled on its first row only, and the rows share ``Name`` (#1001).
Times carry their offset (``2024-05-01 10:00:00 +0900``) and are kept as instants,
shown in the shop's timezone.

- Member: the export has no customer id, only ``Email``. The member id is
  ``shopify:`` and a SHA-256 of the lower-cased address (``values.email_member_id``):
  stable across imports and computable by the shop's other systems, without putting
  the address itself into workflow histories. An order without an e-mail (a POS sale
  to nobody) has no member and is rejected with that reason.
- Shipped: ``Fulfilled at`` set, or ``Fulfillment Status`` = fulfilled.
- Cancelled: ``Cancelled at`` set, or ``Financial Status`` refunded (a return) or
  voided (an authorisation that was never paid). partially_refunded stays an order.
"""

from __future__ import annotations

from starter.ingress.carts.cartmap import CartMap, Columns, MemberRule, StatusRule

SHOPIFY = CartMap(
    source="shopify",
    columns=Columns(
        order_id="Name",
        ordered_at="Created at",
        sku="Lineitem sku",
        quantity="Lineitem quantity",
        unit_price="Lineitem price",
        shipped_at="Fulfilled at",
        cancelled_at="Cancelled at",
    ),
    member=MemberRule(email="Email", guests="email", email_prefix="shopify:"),
    status=[
        StatusRule(column="Fulfillment Status", shipped=["fulfilled"]),
        StatusRule(column="Financial Status", cancelled=["refunded", "voided"]),
    ],
    missing_optional="ignore",
)
