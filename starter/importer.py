"""``goldenroute import FILE --format ec-cube|shopify|mapped``: a cart's CSV export into the engine.

The file is read by ``starter.ingress.carts`` (pure: rows → validated events or
rejects), then stored like every other path in: ``starter.ingress.log.accept``
commits the events to the event log in chunks (duplicates by event id, so a second
import of the same file adds nothing; an erased member's events are refused), and
the forwarder signals the members' workflows if Temporal is reachable — else the
events wait in the log for the running engine. Exit status 1 when anything was
rejected, 2 when the file, map or catalogue cannot be used at all.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starter.ingress.carts import (
    FORMATS, CartImport, CatalogueError, MapError, Reject, cart_map, load_catalogue, read_export,
)

CHUNK = 1000  # events per accept() transaction
SHOWN_REJECTS = 20  # printed on stderr; all of them go to --rejects FILE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the cart's CSV export (Shift_JIS/CP932 or UTF-8, with or without BOM)")
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="ec-cube: EC-CUBE 4 受注CSV; shopify: Shopify order export; mapped: any cart, with --map")
    parser.add_argument("--map", metavar="MAP.toml", help="the column map for --format mapped (examples/carts/)")
    parser.add_argument("--catalogue", default="catalogue.toml", metavar="CATALOGUE.toml",
                        help="SKU → role and days of supply (default ./catalogue.toml; see examples/catalogue.toml)")
    parser.add_argument("--timezone", default="Asia/Tokyo",
                        help="the shop's timezone, for dates without an offset (default Asia/Tokyo)")
    parser.add_argument("--encoding", help="force the file's encoding (utf-8 or cp932) instead of detecting it")
    parser.add_argument("--dry-run", action="store_true", help="read and validate only; store nothing")
    parser.add_argument("--rejects", metavar="FILE",
                        help="write every rejected row as CSV (row, column, reason; UTF-8 with BOM for Excel)")


@dataclass
class Stored:
    accepted: int = 0
    duplicate: int = 0
    refused: list[Reject] | None = None
    members: list[str] = field(default_factory=list)  # members with newly accepted events


async def run_import(settings, args: argparse.Namespace) -> int:
    try:
        shop_timezone = shop_zone(args.timezone)
        catalogue = load_catalogue(args.catalogue)
        cart = cart_map(args.format, args.map)
        data = Path(args.file).read_bytes()
        with _bar("reading", "rows") as bar:
            result = read_export(data, cart, catalogue, shop_timezone, encoding=args.encoding, progress=bar.update)
    except (MapError, CatalogueError, ValueError, OSError) as error:
        print(f"goldenroute: {error}", file=sys.stderr)
        return 2
    stored = Stored() if args.dry_run or not result.events else await _store(settings, result, cart.source)
    rejects = sorted([*result.rejects, *(stored.refused or [])], key=lambda r: r.row)
    _show_rejects(rejects, args.rejects)
    print(summary(result, stored, dry_run=args.dry_run))
    return 1 if rejects else 0


def shop_zone(name: str) -> ZoneInfo:
    # IANA names only, as for a member's timezone: "localtime" or a path is a file, not a zone.
    if len(name) > 64 or not name[:1].isalpha() or name in {"localtime", "posixrules", "Factory"}:
        raise ValueError(f"--timezone: unknown IANA timezone {name[:64]!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"--timezone: unknown IANA timezone {name!r}") from None


async def _store(settings, result: CartImport, source: str) -> Stored:
    from activities.db import create_pool, migrate

    settings = settings.with_dev_stack()
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set and no dev stack is running: start one with `goldenroute dev` "
                           "(or check the file with --dry-run)")
    pool = await create_pool(settings.database_url, max_size=2)
    try:
        await migrate(pool)
        with _bar("storing", "events", total=len(result.events)) as bar:
            stored = await store_events(pool, result.events, source, progress=bar.update)
        if stored.members:
            await _forward(settings, pool, stored.members)
    finally:
        await pool.close()
    return stored


async def store_events(pool, events: Sequence[tuple[int, object]], source: str, progress=None) -> Stored:
    """Commit the events to the event log, ``CHUNK`` to a transaction, numbered by their CSV row."""
    from starter.ingress.log import ACCEPTED, DUPLICATE, accept

    stored = Stored(refused=[])
    members: set[str] = set()
    for start in range(0, len(events), CHUNK):
        chunk = events[start:start + CHUNK]
        for verdict in await accept(pool, chunk, source=f"csv:{source}"):
            if verdict.status == ACCEPTED:
                stored.accepted += 1
                members.add(verdict.member_id)
            elif verdict.status == DUPLICATE:
                stored.duplicate += 1
            else:
                stored.refused.append(Reject(verdict.number, "", f"{verdict.event_id}: " + "; ".join(verdict.problems)))
        if progress is not None:
            progress(len(chunk))
    stored.members = sorted(members)
    return stored


async def _forward(settings, pool, member_ids: Sequence[str]) -> None:
    """Signal the members' workflows now if Temporal answers; else the events wait in the log."""
    from temporalio.service import RPCError

    from starter.ingress.forwarder import Forwarder
    from worker.client import connect

    try:
        client = await connect(settings)
    except (RuntimeError, RPCError, OSError) as error:
        print(f"goldenroute: Temporal is not reachable ({error}); the events are stored and the running "
              f"engine forwards them to the members' workflows", file=sys.stderr)
        return
    with _bar("forwarding", "members", len(member_ids)) as bar:
        result = await Forwarder(pool, client, settings.task_queue).forward_pending(member_ids, progress=bar.update)
    print(f"forwarded {result.forwarded} events to {result.members} members"
          + (f"; {result.waiting} members wait for the engine to forward theirs" if result.waiting else ""))
    for refusal in result.refused:
        print(f"refused {refusal}", file=sys.stderr)


def _show_rejects(rejects: list[Reject], path: str | None) -> None:
    for reject in rejects[:SHOWN_REJECTS]:
        print(f"rejected row {reject.row}" + (f", {reject.column}" if reject.column else "") + f": {reject.reason}",
              file=sys.stderr)
    if len(rejects) > SHOWN_REJECTS:
        print(f"… and {len(rejects) - SHOWN_REJECTS} more rejected rows"
              + (f" (all in {path})" if path else " (write them all with --rejects FILE)"), file=sys.stderr)
    if path:
        write_rejects(rejects, Path(path))


def write_rejects(rejects: list[Reject], path: Path) -> None:
    # UTF-8 with BOM and CRLF: Excel on Windows opens it with the Japanese intact.
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["row", "column", "reason"])
        writer.writerows([r.row, r.column, r.reason] for r in rejects)


def summary(result: CartImport, stored: Stored, dry_run: bool) -> str:
    imported = result.orders - result.skipped - result.rejected_orders
    lines = [
        f"read {result.rows} rows ({result.encoding}): {result.orders} orders — {imported} imported, "
        f"{result.skipped} skipped (not an order yet, or no lifecycle product), {result.rejected_orders} rejected",
        f"events: {len(result.events)} for {result.members} members",
    ]
    if dry_run:
        lines.append("dry run: nothing stored")
    else:
        lines.append(f"stored: {stored.accepted} accepted, {stored.duplicate} duplicate (already imported), "
                     f"{len(stored.refused or [])} rejected")
    return "\n".join(lines)


def _bar(desc: str, unit: str, total: int | None = None):
    from starter.progress import progress_bar

    return progress_bar(desc, unit, total)
