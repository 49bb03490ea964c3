"""``goldenroute broadcast``: list, send (or --dry-run), show, schedule, unschedule, cancel.

Exit status: 0 done; 1 no such broadcast, segment, run or schedule, a run already sent,
or Temporal / PostgreSQL out of reach; 2 an argument or configuration that cannot be used.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import datetime, timezone

from starter.broadcasts import text
from starter.broadcasts.runs import AlreadySent, configured, find, run_input, runs, segment_of, start_run
from starter.cli import emit
from starter.segments.cli import member_count, print_problems, shop_file_of
from starter.segments.store import SegmentError
from worker.settings import Settings
from worker.shop_config import ShopConfigError
from workflows.broadcast_messages import run_id

SAMPLE = 10
CONNECT_TIMEOUT = 5.0  # list and show ask Temporal about schedules, and print without them if it is away
_RUN = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_.:-]{0,47}$")  # workflows.events.RunId


def add_broadcast_commands(commands: argparse._SubParsersAction) -> None:
    broadcast = commands.add_parser(
        "broadcast", help="一斉配信: a template sent to a segment (メルマガ, campaigns, the monthly DM), once or on a "
                          "schedule: list, send (--dry-run), show, schedule, unschedule, cancel")
    actions = broadcast.add_subparsers(required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="the configured broadcasts and every run: audience, requested, sent, "
                                              "suppressed by reason, holdout")
    _config_option(listing)
    listing.set_defaults(command=_list)

    send = actions.add_parser("send", help="send a run now: its audience is the segment's members as it starts; "
                                           "each member is requested once, at the broadcast's rate")
    send.add_argument("name", metavar="NAME")
    send.add_argument("--run", type=_run, metavar="ID",
                      help="the run's id (default: now, 20261207T0100Z); a run is sent once, a second send is refused")
    send.add_argument("--dry-run", action="store_true", help="print the audience's count and a sample; send nothing")
    send.add_argument("--sample", type=member_count, default=SAMPLE, metavar="N", help=f"--dry-run: members listed ({SAMPLE})")
    _config_option(send)
    send.set_defaults(command=_send)

    show = actions.add_parser("show", help="a broadcast's definition and each run: progress and outcomes")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--run", type=_run, metavar="ID", help="only this run")
    _config_option(show)
    show.set_defaults(command=_show)

    scheduling = actions.add_parser(
        "schedule", help="create or update a Temporal Schedule per broadcast with a schedule (cron, shop's timezone; "
                         "a firing while the last run still sends is skipped); the segment's criteria are taken "
                         "now: schedule again after changing them")
    scheduling.add_argument("name", metavar="NAME", nargs="?", help="only this broadcast")
    _config_option(scheduling)
    scheduling.set_defaults(command=_schedule)

    unschedule = actions.add_parser("unschedule", help="delete a broadcast's schedule (runs under way go on)")
    unschedule.add_argument("name", metavar="NAME")
    unschedule.set_defaults(command=_unschedule)

    cancel = actions.add_parser("cancel", help="stop a run between two pages; members already requested keep "
                                               "their touch")
    cancel.add_argument("name", metavar="NAME")
    cancel.add_argument("--run", type=_run, metavar="ID", required=True)
    cancel.set_defaults(command=_cancel)


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="the broadcasts of this shop file instead of the "
                                                         "configuration applied last")


def _run(value: str) -> str:
    if not _RUN.match(value):
        raise argparse.ArgumentTypeError(f"a run id is letters, digits and _ . : - (at most 48), not {value!r}")
    return value


def _fail(message: str, code: int = 1) -> int:
    print(f"goldenroute: {message}", file=sys.stderr)
    return code


async def _list(settings: Settings, args: argparse.Namespace) -> int:
    from worker.main import database

    try:
        shop_file = shop_file_of(args)
        async with database(settings.with_dev_stack()) as pool:
            every = await configured(pool, shop_file)
            done = await runs(pool)
    except ShopConfigError as error:
        return print_problems(error)
    schedules = await _schedules(settings.with_dev_stack(), [f.name for f in every])
    emit("\n".join(text.listing(every, done, every[0].timezone if every else text.DEFAULT_TIMEZONE, schedules)))
    return 0


async def _schedules(settings: Settings, names: list[str]) -> text.Schedules:
    """Which of these broadcasts have a Temporal Schedule now; why not known, if Temporal is out of reach."""
    from temporalio.service import RPCError

    from starter.broadcasts.schedules import existing
    from worker.client import connect

    if not names:
        return text.Schedules({})
    try:
        client = await asyncio.wait_for(connect(settings), CONNECT_TIMEOUT)
        return text.Schedules(await asyncio.wait_for(existing(client, names), CONNECT_TIMEOUT * 2))
    except RPCError as error:
        return text.Schedules(unreachable=f"Temporal at {settings.temporal_address} answered {error.status.name}")
    except (RuntimeError, OSError, asyncio.TimeoutError) as error:
        if not settings.temporal_address:  # connect's own words: TEMPORAL_ADDRESS is not set and no dev stack …
            return text.Schedules(unreachable=str(error))
        return text.Schedules(unreachable=f"Temporal at {settings.temporal_address} is not reachable")


async def _send(settings: Settings, args: argparse.Namespace) -> int:
    from starter.segments.query import count, sample
    from worker.client import connect
    from worker.main import database

    settings = settings.with_dev_stack()
    now = datetime.now(timezone.utc)
    try:
        shop_file = shop_file_of(args)
        async with database(settings) as pool:
            found = await find(pool, args.name, shop_file)
            segment = await segment_of(pool, found, shop_file)
            total = await count(pool, segment.segment, as_of=now)
            if args.dry_run:
                rows = await sample(pool, segment.segment, args.sample, as_of=now)
                emit("\n".join(text.dry_run(found, segment, total, rows, now)))
                return 0
            run_input_ = run_input(found, segment, run=args.run or run_id(now), as_of=now)
            client = await connect(settings)
            wid = await start_run(client, pool, run_input_, settings.task_queue)
    except LookupError as error:
        return _fail(error.args[0])
    except AlreadySent as error:
        return _fail(str(error))
    except (SegmentError, ShopConfigError) as error:
        return print_problems(error)
    emit("\n".join(text.started(found, segment, run_input_.run, wid, total)))
    return 0


async def _show(settings: Settings, args: argparse.Namespace) -> int:
    from worker.client import connect
    from worker.main import database

    settings = settings.with_dev_stack()
    try:
        shop_file = shop_file_of(args)
        async with database(settings) as pool:
            try:
                found = await find(pool, args.name, shop_file)
            except LookupError as error:
                found, unknown = None, error.args[0]
            done = await runs(pool, args.name, args.run)
    except ShopConfigError as error:
        return print_problems(error)
    if found is None and not done:
        return _fail(unknown + (f"; and no run {args.run} of it was sent" if args.run else ", and none was sent"))
    if args.run and not done:
        return _fail(f"no run {args.run} of broadcast {args.name} (`goldenroute broadcast show {args.name}` "
                     "lists its runs)")
    progress = {}
    sending = [r for r in done if r.status == "sending"]
    if sending:
        progress = await text.live_progress(lambda: connect(settings), sending)
    zone = found.timezone if found else text.DEFAULT_TIMEZONE
    schedules = await _schedules(settings, [args.name])
    emit("\n".join(text.details(args.name, found, done, progress, zone, schedules)))
    return 0


async def _schedule(settings: Settings, args: argparse.Namespace) -> int:
    from starter.broadcasts.schedules import Wanted, next_runs, put, scheduled_names
    from worker.client import connect
    from worker.main import database

    settings = settings.with_dev_stack()
    lines = []
    try:
        shop_file = shop_file_of(args)
        async with database(settings) as pool:
            chosen = [await find(pool, args.name, shop_file)] if args.name else await configured(pool, shop_file)
            if args.name and not chosen[0].broadcast.schedule:
                return _fail(f"broadcast {args.name} has no schedule in {chosen[0].origin}: add schedule = "
                             f"\"0 10 * * MON\" (cron, the shop's timezone), or send it with "
                             f"`goldenroute broadcast send {args.name}`")
            client = await connect(settings)
            for found in chosen:
                if not found.broadcast.schedule:
                    lines.append(f"{found.name}: no schedule in its configuration (send it with "
                                 f"`goldenroute broadcast send {found.name}`)")
                    continue
                segment = await segment_of(pool, found, shop_file)
                wanted = Wanted(found.name, found.broadcast.schedule, found.timezone,
                                run_input(found, segment, run=None, as_of=None))
                done, changed = await put(client, wanted, settings.task_queue)
                lines.append(text.scheduled(wanted, done, changed, await next_runs(client, found.name)))
            if not args.name:
                configured_names = {f.name for f in chosen if f.broadcast.schedule}
                for name in await scheduled_names(client):
                    if name not in configured_names:
                        lines.append(f"{name}: scheduled in Temporal, but no schedule in the configuration: "
                                     f"`goldenroute broadcast unschedule {name}` stops it")
    except LookupError as error:
        return _fail(error.args[0])
    except (SegmentError, ShopConfigError) as error:
        return print_problems(error)
    emit("\n".join(lines) if lines else "no broadcasts configured: [broadcasts.NAME] in the shop file")
    return 0


async def _unschedule(settings: Settings, args: argparse.Namespace) -> int:
    from starter.broadcasts.schedules import remove
    from worker.client import connect

    client = await connect(settings.with_dev_stack())
    if not await remove(client, args.name):
        return _fail(f"no schedule for broadcast {args.name}")
    emit(f"{args.name}: schedule deleted; a run under way goes on (`goldenroute broadcast cancel {args.name} "
         "--run ID` stops it)")
    return 0


async def _cancel(settings: Settings, args: argparse.Namespace) -> int:
    from temporalio.service import RPCError, RPCStatusCode

    from worker.client import connect
    from worker.main import database
    from workflows.broadcast_messages import workflow_id

    settings = settings.with_dev_stack()
    async with database(settings) as pool:
        [figures] = await runs(pool, args.name, args.run) or [None]
    if figures is not None and figures.status != "sending":
        return _fail(f"run {args.run} of broadcast {args.name} is {figures.status}: nothing to cancel")
    client = await connect(settings)
    wid = figures.workflow_id if figures else workflow_id(args.name, args.run)
    try:
        await client.get_workflow_handle(wid).cancel()
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        return _fail(f"no run {args.run} of broadcast {args.name}")
    requested = f"{figures.requested:,} of {figures.audience:,}" if figures else "the"
    emit(f"{args.name} run {args.run}: cancel requested; it stops before its next page. "
         f"Members already requested ({requested}) still get their touch.")
    return 0
