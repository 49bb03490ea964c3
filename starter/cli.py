"""``goldenroute``: run the engine and talk to it from outside."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import structlog
from temporalio.service import RPCError

from worker.logging import configure_logging
from worker.settings import Settings, SettingsError

log = structlog.get_logger(__name__)


def run() -> None:
    """The console script. Exits without interpreter finalisation: the Temporal
    client's native threads can abort a finalising interpreter after the command
    has done its work (temporalio/sdk-python#300), which would turn success into
    exit status 134."""
    code = main()
    _flush_stdout()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(_member_show_by_default(sys.argv[1:] if argv is None else argv))
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"goldenroute: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    try:
        code = asyncio.run(args.command(settings, args))
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, RPCError, OSError) as error:
        print(f"goldenroute: {error}", file=sys.stderr)
        return 1
    _flush_stdout()  # a short output reaches a closed pipe only here
    return code


def emit(output: str | bytes) -> None:
    """Print a command's result on standard output (bytes as they are, text with a newline)
    and flush it. If its reader has gone (``goldenroute report … | head -1``), it took what
    it wanted: the command goes on to exit as it would have, without a traceback."""
    try:
        if isinstance(output, bytes):
            sys.stdout.flush()
            sys.stdout.buffer.write(output)
        else:
            print(output)
        sys.stdout.flush()
    except BrokenPipeError:
        _reader_gone()


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _reader_gone()


def _reader_gone() -> None:
    """Standard output's reader closed it. As the Python docs advise (signal module, "Note on
    SIGPIPE"), standard output is pointed at /dev/null, so that what is left in its buffer
    cannot fail again on the way out."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):  # a stdout without a file descriptor: nothing to point
        pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="goldenroute", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    dev = commands.add_parser("dev", help="run the embedded dev stack: Temporal dev server + Web UI, PostgreSQL, worker")
    dev.set_defaults(command=_dev)

    serve = commands.add_parser("serve", help="run the HTTP ingress (POST /v1/events, HMAC-signed) and its forwarder")
    serve.add_argument("--host", help="address to listen on (default INGRESS_HOST, 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port (default INGRESS_PORT, 8080)")
    serve.add_argument("--insecure-dev", action="store_true",
                       help="accept unsigned requests, on 127.0.0.1 only (no GOLDENROUTE_INGRESS_SECRETS needed)")
    serve.set_defaults(command=_serve)

    worker = commands.add_parser("worker", help="run a worker against TEMPORAL_ADDRESS and DATABASE_URL")
    worker.set_defaults(command=_worker)

    send = commands.add_parser("send", help="validate events (JSON or NDJSON) and forward the valid ones")
    send.add_argument("file", help="event file, or - for standard input")
    send.add_argument(
        "--now", action="store_true",
        help="shift the file's whole timeline (spacing and UTC offsets kept) so its last event was 15 minutes "
             "ago: its 'at once' touches go out on arrival and steps due in the last 3 days are sent, not "
             "expired. The shifted events are new events: their ids get @DAY appended (m-1-ev01@2026-12-02), "
             "so re-sending the same file the same day adds nothing (duplicates); on another day it adds "
             "the events again, to the same members")
    send.set_defaults(command=_send)

    cart_import = commands.add_parser(
        "import", help="import a cart's CSV order export (EC-CUBE 受注CSV, Shopify, or any cart with a column map)")
    from starter.importer import add_arguments as add_import_arguments

    add_import_arguments(cart_import)
    cart_import.set_defaults(command=_import)

    state = commands.add_parser("state", help="show one member's lifecycle state and planned touches")
    state.add_argument("member_id")
    state.add_argument("--json", action="store_true", help="print the state as JSON")
    state.set_defaults(command=_state)

    preview = commands.add_parser(
        "preview", help="run example members' events through the real workflow on the time-skipping test server, "
                        "channels dry, and list every touch with its outcome; or compare two shop configurations")
    preview.add_argument("files", nargs="+", metavar="EVENTS",
                         help="one member's events per file (NDJSON or JSON), a directory of *.ndjson files, "
                              "or - for standard input")
    preview.add_argument("--days", type=_days, default=365, metavar="N",
                         help="how many days after the first event to run (default 365)")
    preview.add_argument("--json", action="store_true",
                         help="print JSON: one file, the touches as one array; several, {members: [...]}; "
                              "--compare, {members: [{member_id, appeared, disappeared, moved, unchanged}]}")
    shop = preview.add_mutually_exclusive_group()
    shop.add_argument("--config", metavar="FILE", help="decide under this shop configuration file "
                                                       "(default: the SPEC's policy and scenarios)")
    shop.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"),
                      help="run each member under both configuration files and list the touches that appear, "
                           "disappear or move under NEW")
    preview.set_defaults(command=_preview)

    from starter.config_cli import add_config_commands

    add_config_commands(commands)  # config check / show (and the actions added to it)

    from starter.calls import add_calls_commands
    from starter.exports import add_export_command

    add_export_command(commands)  # export dm|inserts|calls: the day's files for the print house, warehouse, agents
    add_calls_commands(commands)  # calls list / done: the agents' queue and each call's result

    from starter.segments.cli import add_segment_commands

    add_segment_commands(commands)  # segment list / show / save / from-report / delete

    from starter.broadcasts.cli import add_broadcast_commands

    add_broadcast_commands(commands)  # broadcast list / send / show / schedule / unschedule / cancel

    db = commands.add_parser("db", help="the PostgreSQL read models: apply migrations, or rebuild members")
    db.add_argument("action", choices=["migrate", "rebuild"],
                    help="migrate: apply pending migrations; rebuild: recompute members from member_events")
    db.set_defaults(command=_db)

    report = commands.add_parser(
        "report", help="marketers' reports from PostgreSQL: scenarios (KPI + holdout lift), funnel, "
                       "subscription-flow (定期フロー), rfm, cpm, ltv; product-flow (購入フロー), products "
                       "(商品別新規・リピート), cross-sell (クロスセル); channels (sends per channel and day, "
                       "uncertain ones to check); or dashboard (HTML)")
    report.add_argument("name", type=_report_name, metavar="NAME",
                        help="scenarios, funnel, subscription-flow, rfm, cpm, ltv, product-flow, products, "
                             "cross-sell, channels or dashboard")
    report.add_argument("--from", "--since", dest="start", type=_date, metavar="DATE",
                        help="first day (YYYY-MM-DD, shop timezone) of the period, inclusive")
    report.add_argument("--to", dest="end", type=_date, metavar="DATE",
                        help="last day of the period, inclusive (RFM/CPM: also the day they are taken as of)")
    output = report.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the report as JSON")
    output.add_argument("--csv", action="store_true", help="print the report as CSV with a header row")
    report.add_argument("--out", metavar="FILE", help="dashboard only: the HTML file to write (default report.html)")
    report.add_argument("--within", type=_whole(0), metavar="DAYS",
                        help="cross-sell only: count a pair when both were bought at most DAYS apart (default: any time)")
    report.add_argument("--min-members", type=_whole(1), metavar="N",
                        help="cross-sell only: show pairs bought by at least N members (default 3)")
    report.add_argument("--runs", action="store_const", const=True, default=None,
                        help="scenarios only: a row per broadcast and run (default: one per broadcast)")
    report.set_defaults(command=_report)

    member = commands.add_parser(
        "member", help="one member: `member ID` shows its history, `member restore ID` starts its workflow again")
    member_commands = member.add_subparsers(required=True, metavar="ACTION")
    show = member_commands.add_parser(
        "show", help="(the default: `goldenroute member ID`) stage, F, subscription, channels, then every event "
                     "and touch in time order with its outcome and rule, in the member's timezone")
    show.add_argument("member_id")
    show.add_argument("--json", action="store_true", help="print {member, timeline} as JSON")
    show.set_defaults(command=_member_show)
    restore = member_commands.add_parser(
        "restore", help="start a member whose run failed or was terminated again, from its event log and "
                        "decided touches in PostgreSQL")
    restore.add_argument("member_id")
    restore.set_defaults(command=_member_restore)
    return parser


MEMBER_ACTIONS = ("show", "restore", "-h", "--help")


def _member_show_by_default(argv: list[str]) -> list[str]:
    """``member ID`` means ``member show ID``."""
    if len(argv) >= 2 and argv[0] == "member" and argv[1] not in MEMBER_ACTIONS:
        return ["member", "show", *argv[1:]]
    return argv


def _report_name(text: str) -> str:
    from starter.reports import REPORTS

    if text not in REPORTS and text != "dashboard":
        raise argparse.ArgumentTypeError(f"unknown report {text!r} (choose from {', '.join([*REPORTS, 'dashboard'])})")
    return text


def _date(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _whole(low: int):
    """An argparse type: a whole number of at least ``low``."""
    def whole(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if number < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more, not {number}")
        return number
    return whole


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}") from None
    if not 1 <= days <= 3650:
        raise argparse.ArgumentTypeError(f"must be between 1 and 3650, not {days}")
    return days


async def _dev(settings: Settings, args: argparse.Namespace) -> int:
    from starter.config_store import apply_at_start
    from worker.devstack import DevStack
    from worker.discovery import user_stack_file
    from worker.main import run_worker

    async with DevStack(settings, user_file=user_stack_file()) as stack:
        running = stack.settings
        shop = await apply_at_start(running)  # GOLDENROUTE_SHOP_CONFIG, when it names a file
        channels = await stack.start_channels()  # the vendors' stand-ins, unless the environment names vendors
        ingress = await stack.start_ingress(channels)
        signing = (f"source {ingress.source}, secret {ingress.secret}" if ingress.secret
                   else "secrets from GOLDENROUTE_INGRESS_SECRETS")
        print(
            f"goldenroute dev stack is up\n"
            f"  Temporal:  {running.temporal_address} (namespace {running.temporal_namespace})\n"
            f"  Web UI:    {stack.ui_url or '(external Temporal)'}\n"
            f"  Postgres:  {running.database_url}\n"
            f"  Worker:    task queue {running.task_queue}\n"
            f"  Shop:      {shop}\n"
            f"  HTTP:      {ingress.url}/v1/events ({signing}); OpenAPI {ingress.url}/docs\n"
            f"{channels.banner()}\n"
            f"  Received:  {ingress.received} (what each member received)\n"
            f"  Loop back: unsubscribe links {stack.loopback['public_base_url']}/u/…; "
            f"LINE webhook {ingress.url}/line/webhook\n"
            f"Send events with `goldenroute send examples/sample_converts.ndjson --now`; Ctrl-C stops everything.",
            file=sys.stderr, flush=True,
        )
        await run_worker(channels.settings.model_copy(update=stack.loopback))
    return 0


async def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from starter.serve import serve

    await serve(settings.with_dev_stack(), args.host, args.port, args.insecure_dev)
    return 0


async def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from worker.main import run_worker

    await run_worker(settings.with_dev_stack())
    return 0


async def _send(settings: Settings, args: argparse.Namespace) -> int:
    import logging
    from datetime import datetime

    from starter.ingress.send import details, send, summary

    # The summary below says what the forwarder did; its log lines would say it twice.
    logging.getLogger("starter.ingress.forwarder").setLevel(logging.ERROR)
    # Bytes, not text: a line that is not UTF-8 is rejected on its own, the others go on.
    data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    now = datetime.now().astimezone() if args.now else None
    sent = await send(settings.with_dev_stack(), data, now)
    for line in details(sent):
        print(line, file=sys.stderr)
    print("\n".join(summary(sent)))
    return sent.exit_status


async def _import(settings: Settings, args: argparse.Namespace) -> int:
    from starter.importer import run_import

    return await run_import(settings, args)


async def _db(settings: Settings, args: argparse.Namespace) -> int:
    from activities.db import create_pool, migrate
    from starter.rebuild import rebuild

    settings = settings.with_dev_stack()
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set and no dev stack is running: start one with `goldenroute dev`")
    pool = await create_pool(settings.database_url, max_size=2)
    try:
        applied = await migrate(pool)
        print(f"migrations applied: {', '.join(applied) or 'none pending'}")
        if args.action == "rebuild":
            result = await rebuild(pool)
            print(f"rebuilt {result.members} members from {result.events} events"
                  + (f"; skipped {result.skipped} logged events that no longer parse (see the log)"
                     if result.skipped else ""))
    finally:
        await pool.close()
    return 0


async def _report(settings: Settings, args: argparse.Namespace) -> int:
    from activities.db import create_pool, migrate
    from starter.reports import ReportError, run_report

    dashboard = args.name == "dashboard"
    if args.start and args.end and args.start > args.end:
        print(f"goldenroute: --from {args.start} is after --to {args.end}", file=sys.stderr)
        return 2
    if dashboard and (args.json or args.csv):
        print("goldenroute: the dashboard is HTML: --json and --csv are for the other reports", file=sys.stderr)
        return 2
    if not dashboard and args.out:
        print("goldenroute: --out is for the dashboard only", file=sys.stderr)
        return 2
    if dashboard and (args.within is not None or args.min_members is not None):
        print("goldenroute: --within and --min-members are for report cross-sell", file=sys.stderr)
        return 2
    if dashboard and args.runs:
        print("goldenroute: --runs is for report scenarios", file=sys.stderr)
        return 2
    settings = settings.with_dev_stack()
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set and no dev stack is running: start one with `goldenroute dev`")
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        await migrate(pool)  # the read-model views, on a fresh database too
        if dashboard:
            from starter.dashboard import write_dashboard

            out = Path(args.out or "report.html")
            await write_dashboard(pool, out, args.start, args.end)
            print(f"wrote {out}")
            return 0
        try:
            options = {"within": args.within, "min_members": args.min_members, "runs": args.runs}
            report = await run_report(pool, args.name, args.start, args.end, options=options)
        except ReportError as error:
            print(f"goldenroute: {error}", file=sys.stderr)
            return 2
    finally:
        await pool.close()
    # --csv as bytes: UTF-8 with a BOM for Excel, whatever the terminal's encoding.
    emit(report.to_json() if args.json else report.csv_bytes() if args.csv else report.to_text())
    return 0


async def _state(settings: Settings, args: argparse.Namespace) -> int:
    from worker.client import connect
    from workflows.member import MemberWorkflow, workflow_id

    from temporalio.service import RPCStatusCode

    client = await connect(settings.with_dev_stack())
    handle = client.get_workflow_handle(workflow_id(args.member_id))
    try:
        view = await handle.query(MemberWorkflow.state)
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        print(f"goldenroute: no member {args.member_id!r}: none of its events has reached a workflow yet",
              file=sys.stderr)
        return 1
    if args.json:
        print(view.model_dump_json(indent=2))
        return 0
    print(f"member        {view.member_id}")
    print(f"stage         {view.stage.value}")
    print(f"F             {view.purchase_count}")
    print(f"subscription  {view.subscription_status.value}")
    print(f"registered    {_when(view.registered_at)}")
    print(f"last purchase {_when(view.last_main_purchase_at)}")
    print(f"channels      consented {_names(view.consented_channels)}, reachable {_names(view.reachable_channels)}")
    print(f"next touch    {_when(view.next_touch_at)}")
    for touch in sorted(view.planned, key=lambda t: t.due_at):
        print(f"  {_when(touch.due_at)}  {touch.scenario} {touch.step}")
    return 0


async def _member_show(settings: Settings, args: argparse.Namespace) -> int:
    from starter.member_view import UnknownMember, member_view, reach_temporal, to_json, to_text
    from worker.main import database

    settings = settings.with_dev_stack()
    client, unreachable = await reach_temporal(settings)
    async with database(settings) as pool:
        try:
            view = await member_view(pool, client, args.member_id, unreachable)
        except UnknownMember as error:
            print(f"goldenroute: {error}", file=sys.stderr)
            return 1
    emit(to_json(view) if args.json else to_text(view))
    return 0


async def _member_restore(settings: Settings, args: argparse.Namespace) -> int:
    from activities.db import create_pool
    from starter.restore import Restart, restore_member
    from worker.client import connect
    from workflows.member import workflow_id

    settings = settings.with_dev_stack()
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set and no dev stack is running: start one with `goldenroute dev`")
    client = await connect(settings)
    pool = await create_pool(settings.database_url, max_size=2)
    try:
        restored = await restore_member(client, pool, args.member_id, settings.task_queue)
    finally:
        await pool.close()
    print(f"member {restored.member_id}: PostgreSQL holds {restored.logged.events} events "
          f"and {restored.logged.touches} decided touches")
    run = f"{workflow_id(restored.member_id)} (run {restored.run_id})"
    print({
        Restart.STARTED: f"started {run} on task queue {settings.task_queue}; it restores them before anything else",
        Restart.ALREADY_RUNNING: f"{run} is already running: nothing to restore",
        Restart.ERASED: f"{run} completed: the member was erased and is never started again",
        Restart.NOTHING_LOGGED: "nothing to restore (is the member id right?): no workflow started",
    }[restored.outcome], file=sys.stderr if restored.refused else sys.stdout)
    return 1 if restored.refused else 0


async def _preview(settings: Settings, args: argparse.Namespace) -> int:
    """Needs no dev stack: its own time-skipping test server, dry channels, no PostgreSQL."""
    from starter.preview.command import run_preview

    return await run_preview(args)


def _when(moment) -> str:
    return moment.isoformat(timespec="minutes") if moment else "-"


def _names(channels) -> str:
    return ",".join(c.value for c in channels) or "none"


if __name__ == "__main__":
    run()
