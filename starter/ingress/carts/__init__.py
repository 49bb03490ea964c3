"""Cart CSV exports → order-system events: the CSV path of the ingress (SPEC §6).

Pure: bytes in, validated events and rejects out, no database and no Temporal, so
each format is tested on its fixtures alone. ``starter.importer`` stores the events
through ``starter.ingress.log.accept`` like every other path in.

    csvfile    encoding (CP932 / UTF-8 ± BOM), header, rows numbered as Excel shows them
    cartmap    the model of how one cart's export is read (columns, status values)
    eccube     EC-CUBE 4 受注CSV          shopify   Shopify order export
    mapped     any other cart, from a TOML column map
    catalogue  SKU → role, days of supply, sample / ignore
    rows       rows → orders (one row per order line)
    orders     orders → events, through workflows.events.parse_event
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path

from starter.ingress.carts.cartmap import CartMap, MapError
from starter.ingress.carts.catalogue import Catalogue, CatalogueError, load_catalogue, parse_catalogue
from starter.ingress.carts.csvfile import decode, read_rows
from starter.ingress.carts.eccube import EC_CUBE
from starter.ingress.carts.mapped import load_map, parse_map
from starter.ingress.carts.orders import build_events
from starter.ingress.carts.rows import Reject, RowReader
from starter.ingress.carts.shopify import SHOPIFY
from workflows.events import MemberEvent

__all__ = ["EC_CUBE", "FORMATS", "SHOPIFY", "CartImport", "CartMap", "Catalogue", "CatalogueError", "MapError",
           "Reject", "cart_map", "load_catalogue", "parse_catalogue", "parse_map", "read_export"]

FORMATS = ("ec-cube", "shopify", "mapped")
PROGRESS_EVERY = 1000  # rows between progress callbacks


@dataclass(frozen=True)
class CartImport:
    encoding: str
    rows: int  # data rows read (the header not counted)
    orders: int  # distinct order ids seen
    skipped: int  # orders not imported by rule: 購入処理中, or holding only ignored SKUs
    rejected_orders: int
    events: list[tuple[int, MemberEvent]]  # (the CSV row of the order's first line, event), in time order
    rejects: list[Reject]

    @property
    def members(self) -> int:
        return len({event.member_id for _, event in self.events})


def cart_map(format_name: str, map_path: str | Path | None = None) -> CartMap:
    if format_name == "ec-cube":
        return EC_CUBE
    if format_name == "shopify":
        return SHOPIFY
    if format_name == "mapped":
        if map_path is None:
            raise MapError("--format mapped needs --map MAP.toml (see examples/carts/)")
        return load_map(map_path)
    raise MapError(f"unknown format {format_name!r} (choose from {', '.join(FORMATS)})")


def read_export(data: bytes, cart: CartMap, catalogue: Catalogue, shop_timezone: tzinfo, *,
                encoding: str | None = None, progress: Callable[[int], None] | None = None) -> CartImport:
    """Read one export: every row either becomes part of an order's events or a reject.

    Raises ``MapError`` when the file as a whole does not fit (empty, or a required
    column missing); a bad row never raises.
    """
    decoded = decode(data, encoding)
    header, rows = read_rows(decoded.text)
    if not header:
        raise MapError("the file is empty: no header row")
    reader = RowReader(header, cart, catalogue, shop_timezone)
    check_bytes = decoded.undecodable > 0
    count = 0
    for row in rows:
        reader.read(row, check_bytes)
        count += 1
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
    if progress is not None:
        progress(count % PROGRESS_EVERY)
    built = build_events(reader)
    return CartImport(decoded.encoding, count, built.orders, built.skipped, built.rejected_orders,
                      built.events, built.rejects)
