"""``goldenroute segment``: list, show, save and delete segments, and make one from a report's row.

Exit status: 0 done; 1 no such segment, or the database cannot be reached; 2 a definition
or argument that cannot be used (each problem on its own line, naming the field).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime, timedelta, timezone

from starter.cli import emit
from starter.reports.period import day_start, read_shop, shop_time
from starter.segments.query import count, members_in, sample
from starter.segments.store import (
    REPORTS, Found, SegmentError, delete, every, from_report, lookup, parse, save,
)
from starter.table import local_date, table
from worker.settings import Settings
from worker.shop_config import LoadedShop, ShopConfigError, load_shop_config
from workflows.segments import Range, Segment

SAMPLE = 10
_LISTS = ("stage", "subscription_status", "rfm", "cpm", "bought", "never_bought", "reachable", "consented",
          "contactable")
_RANGES = ("purchase_count", "days_since_last_purchase", "revenue")


def add_segment_commands(commands: argparse._SubParsersAction) -> None:
    segment = commands.add_parser(
        "segment", help="named selections of members (stage, F, RFM/CPM, products, recency, revenue, channels): "
                        "list, show (count and a sample, or --csv of member ids), save, from-report, delete")
    actions = segment.add_subparsers(required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="every segment: saved in the database, in the shop configuration "
                                              "applied last, or in --config FILE (in that lookup order)")
    _config_option(listing)
    listing.set_defaults(command=_list)

    show = actions.add_parser("show", help="how many members a segment holds, and a sample of them")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--sample", type=member_count, default=SAMPLE, metavar="N", help=f"members to list (default {SAMPLE})")
    show.add_argument("--csv", action="store_true", help="every member id, one a line under a member_id header")
    _as_of_option(show)
    _config_option(show)
    show.set_defaults(command=_show)

    made = actions.add_parser("from-report", help="a row of report rfm (a segment such as 優良 or champions, "
                                                  "or a cell such as R5F4) or report cpm (a class such as 優良客)")
    made.add_argument("report", choices=REPORTS)
    made.add_argument("row", metavar="ROW")
    made.add_argument("--save", metavar="NAME", help="keep it in the database under NAME")
    made.add_argument("--replace", action="store_true", help="overwrite a segment already saved under NAME")
    _as_of_option(made)
    made.set_defaults(command=_from_report)

    saving = actions.add_parser("save", help="define a segment in the database: --where KEY=VALUE for each "
                                             "criterion (lists a,b,c; ranges MIN..MAX, MIN.., ..MAX)")
    saving.add_argument("name", metavar="NAME")
    saving.add_argument("--where", action="append", default=[], metavar="KEY=VALUE", required=True,
                        help="stage=f2,f3  purchase_count=2..  days_since_last_purchase=60..89  bought=KOSO-30  "
                             "contactable=email,line  sales_channel=online  rfm=要注意  cpm=初回離脱客 …")
    saving.add_argument("--description", required=True, help="what it is for, in the marketers' words")
    saving.add_argument("--replace", action="store_true", help="overwrite a segment already saved under NAME")
    saving.set_defaults(command=_save)

    removing = actions.add_parser("delete", help="remove a segment saved in the database")
    removing.add_argument("name", metavar="NAME")
    removing.set_defaults(command=_delete)


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="also look in this shop file's [segments] (last)")


def _as_of_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--as-of", dest="as_of", type=_date, metavar="DATE",
                        help="read RFM, CPM and days since the last purchase as of the end of DATE (shop timezone), "
                             "as report rfm --to DATE does; default now")


def member_count(text: str) -> int:
    """``--sample N``: a number of members from 0 to 10,000 (shared by the broadcast commands)."""
    if not text.isdigit() or not 0 <= int(text) <= 10_000:
        raise argparse.ArgumentTypeError(f"a number of members from 0 to 10000, not {text!r}")
    return int(text)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def print_problems(error: SegmentError | ShopConfigError) -> int:
    """Each problem of a definition on its own line; exit status 2."""
    for problem in error.problems:
        print(f"goldenroute: {problem}", file=sys.stderr)
    return 2


def shop_file_of(args: argparse.Namespace) -> LoadedShop | None:
    return load_shop_config(args.config) if getattr(args, "config", None) else None


async def _list(settings: Settings, args: argparse.Namespace) -> int:
    from worker.main import database

    try:
        shop_file = shop_file_of(args)
        async with database(settings.with_dev_stack()) as pool:
            listed = await every(pool, shop_file)
    except (SegmentError, ShopConfigError) as error:
        return print_problems(error)
    if not listed:
        emit("no segments yet: `goldenroute segment save`, `segment from-report`, or [segments] in the shop file")
        return 0
    rows = [[f.name, f.origin + (f" (hidden by {hider.origin})" if hider else ""), f.segment.description,
             criteria_text(f.segment)] for f, hider in listed]
    emit("\n".join(table(["name", "defined in", "description", "criteria"], rows)))
    return 0


async def _show(settings: Settings, args: argparse.Namespace) -> int:
    from worker.main import database

    try:
        shop_file = shop_file_of(args)
        async with database(settings.with_dev_stack()) as pool:
            try:
                found = await lookup(pool, args.name, shop_file)
            except LookupError as error:
                print(f"goldenroute: {error.args[0]}", file=sys.stderr)
                return 1
            zone = (await read_shop(pool)).timezone
            as_of = _as_of(args.as_of, zone)
            if args.csv:
                emit("\n".join(["member_id", *await members_in(pool, found.segment, as_of=as_of)]))
                return 0
            total = await count(pool, found.segment, as_of=as_of)
            rows = await sample(pool, found.segment, args.sample, as_of=as_of)
    except (SegmentError, ShopConfigError) as error:
        return print_problems(error)
    emit("\n".join(describe(found, total, rows, as_of, zone)))
    return 0


def _as_of(day: date | None, zone: str) -> datetime:
    moment = day_start(day + timedelta(days=1), zone) if day else datetime.now(timezone.utc)
    return shop_time(moment, zone)


def describe(found: Found, total: int, rows: list, as_of: datetime, zone: str) -> list[str]:
    """``segment show``'s text: what the segment is, how many members, and the sample."""
    lines = [
        f"{found.name}: {found.segment.description}",
        f"  defined in  {found.origin}",
        f"  criteria    {criteria_text(found.segment)}",
        f"  as of       {as_of.isoformat(sep=' ', timespec='minutes')}",
        f"  members     {total:,}",
    ]
    if not rows:
        return lines
    body = [[r["member_id"], r["stage"], str(r["purchase_count"]),
             local_date(shop_time(r["last_purchase_at"], zone)) if r["last_purchase_at"] else "-",
             f"{r['revenue']:,}", ",".join(r["contactable"]) or "-"] for r in rows]
    shown = (f"{len(rows)} of {total:,} shown, by member id (--sample N for more, --csv for every member id)"
             if len(rows) < total else f"all {total:,} shown")
    return [*lines, "", *table(["会員ID", "ステージ", "F", "最終購入日", "累計売上", "届くチャネル"], body,
                               right=(False, False, True, False, True)), shown]


async def _from_report(settings: Settings, args: argparse.Namespace) -> int:
    from worker.main import database

    try:
        segment, source = from_report(args.report, args.row)
        async with database(settings.with_dev_stack()) as pool:
            if args.save:
                await save(pool, args.save, segment, source, replace=args.replace)
            zone = (await read_shop(pool)).timezone
            as_of = _as_of(args.as_of, zone)
            total = await count(pool, segment, as_of=as_of)
    except SegmentError as error:
        return print_problems(error)
    found = (Found(args.save, segment, f"database ({source})") if args.save else
             Found(source, segment, f"report {args.report} (not saved: --save NAME keeps it)"))
    emit("\n".join(describe(found, total, [], as_of, zone)))
    return 0


async def _save(settings: Settings, args: argparse.Namespace) -> int:
    from worker.main import database

    try:
        segment = parse(args.name, {"description": args.description, **where(args.where)})
        async with database(settings.with_dev_stack()) as pool:
            await save(pool, args.name, segment, "cli", replace=args.replace)
            total = await count(pool, segment)
    except SegmentError as error:
        return print_problems(error)
    emit(f"saved {args.name}: {criteria_text(segment)}; {total:,} members now")
    return 0


async def _delete(settings: Settings, args: argparse.Namespace) -> int:
    from worker.main import database

    async with database(settings.with_dev_stack()) as pool:
        deleted = await delete(pool, args.name)
    if not deleted:
        print(f"goldenroute: no segment {args.name!r} saved in the database", file=sys.stderr)
        return 1
    emit(f"deleted {args.name}")
    return 0


def where(pairs: list[str]) -> dict:
    """``["stage=f2,f3", "days_since_last_purchase=60..89"]`` → a definition's criteria."""
    definition: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SegmentError(f"--where {pair!r}: write KEY=VALUE")
        if key in definition:
            raise SegmentError(f"--where {key}: given twice (list the values once: {key}=a,b)")
        if key in _LISTS:
            definition[key] = [v.strip() for v in value.split(",") if v.strip()]
        elif key in _RANGES:
            low, dots, high = value.partition("..")
            bounds = {"min": low, "max": high} if dots else {"min": value, "max": value}
            try:
                definition[key] = {k: int(v) for k, v in bounds.items() if v.strip()}
            except ValueError:
                raise SegmentError(f"--where {key}: {value!r} is not a range such as 2.., ..89 or 60..89") from None
        else:
            definition[key] = value.strip()  # sales_channel, or a key the model names as unknown
    return definition


_LABELS = {"stage": "stage", "purchase_count": "F", "subscription_status": "subscription", "rfm": "RFM",
           "cpm": "CPM", "bought": "bought", "never_bought": "never bought",
           "days_since_last_purchase": "days since last purchase", "revenue": "revenue (yen)",
           "sales_channel": "sales channel", "reachable": "reachable by", "consented": "consented to",
           "contactable": "contactable by"}


def criteria_text(segment: Segment) -> str:
    """``F ≥ 2; days since last purchase 60–89; contactable by email or line`` ("everyone" if none)."""
    parts = []
    for key in _LABELS:
        value = getattr(segment, key)
        if value is None:
            continue
        if isinstance(value, Range):
            shown = (f"{value.min}–{value.max}" if value.min is not None and value.max is not None
                     else f"≥ {value.min}" if value.min is not None else f"≤ {value.max}")
        elif isinstance(value, tuple):
            shown = (", " if key == "never_bought" else " or ").join(str(v) for v in value)
        else:
            shown = str(value)
        parts.append(f"{_LABELS[key]} {shown}")
    return "; ".join(parts) or "every member"

