"""``goldenroute calls list`` and ``calls done``: the agents' queue, and how each call ended.

A task is closed once. ``done`` stores its result, when and by whom in the transaction
that appends the event the result means for the member's journey through the ingress's
one door (``accept``): both are stored, or neither.

- ``cancel_requested`` → ``churn_signal`` "call_cancel_requested": the member asked on the
  phone to cancel, and S12 follows;
- ``resumed`` on an S07 task → ``subscription_resumed`` for the subscription the task was
  about (its touch's occurrence names it: ``subscription@paused_at``);
- any other result, or ``resumed`` on another task → no event; the result is stored.

The event's id comes from the task (``call:`` + sha256 of the touch key), so closing a task
twice cannot log two events. After the commit the event is forwarded to the member's
workflow as ``goldenroute send`` does; when Temporal cannot be reached it waits in the
event log for the running engine.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import hashlib
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import asyncpg

from starter.ingress.log import DUPLICATE, REJECTED, accept
from starter.reports.period import DEFAULT_TIMEZONE, read_shop
from starter.table import local_date, local_time, table
from worker.settings import Settings
from workflows.events import ChurnSignal, MemberEvent, SubscriptionResumed

RESULTS = ("reached", "no_answer", "resumed", "cancel_requested", "declined")
CANCEL_SIGNAL = "call_cancel_requested"
SOURCE = "call_center"  # member_events.source of the events an agent's result logs
CONNECT_TIMEOUT = 10.0

_TASK = """
SELECT c.task_id, c.idempotency_key, c.member_id, c.scenario, c.status, c.result, c.closed_at, c.closed_by,
       t.occurrence
FROM call_center_tasks c LEFT JOIN touches t USING (idempotency_key) WHERE c.task_id = $1
"""
_CLOSE = """
UPDATE call_center_tasks SET status = 'done', result = $2, closed_at = $3, closed_by = $4, note = $5
WHERE task_id = $1 AND status = 'open' RETURNING task_id
"""
_LIST = """
SELECT task_id, priority, due_at, member_id, scenario, reason, status, result, closed_by, closed_at
FROM call_center_tasks WHERE status = 'open' OR NOT $2
ORDER BY status <> 'open', CASE WHEN status = 'open' THEN priority END, CASE WHEN status = 'open' THEN due_at END,
         closed_at DESC NULLS LAST, task_id DESC
LIMIT $1
"""


class TaskRefused(Exception):
    """The task cannot be closed as asked; the message says why."""


@dataclass(frozen=True)
class Closed:
    task_id: int
    member_id: str
    result: str
    closed_at: datetime
    closed_by: str | None
    event: MemberEvent | None
    why_no_event: str = ""
    duplicate: bool = False  # the event was in the log already


def event_id(touch_key: str) -> str:
    return "call:" + hashlib.sha256(touch_key.encode()).hexdigest()[:32]


def event_for(task: asyncpg.Record, result: str, at: datetime) -> tuple[MemberEvent | None, str]:
    """The event an agent's result means for the member, or None and why none."""
    common = dict(event_id=event_id(task["idempotency_key"]), member_id=task["member_id"], occurred_at=at)
    if result == "cancel_requested":
        return ChurnSignal(type="churn_signal", signal=CANCEL_SIGNAL, **common), ""
    if result != "resumed":
        return None, ""
    if task["scenario"] != "S07":
        return None, f"no event: resumed on an {task['scenario']} task names no subscription to resume"
    subscription = subscription_of(task["occurrence"] or "")
    if not subscription:
        return None, ("no subscription_resumed logged: the task does not name its subscription; "
                      "the order system's own event will tell the engine")
    return SubscriptionResumed(type="subscription_resumed", subscription_id=subscription, **common), ""


def subscription_of(occurrence: str) -> str | None:
    """The subscription of an S07 touch's occurrence, ``sub-1@2026-03-01T00:00:00+09:00``."""
    subscription, at, paused_at = occurrence.rpartition("@")
    try:
        datetime.fromisoformat(paused_at)
    except ValueError:
        return None
    return subscription if at and subscription else None


class _ThisConnection:
    """Lends ``accept`` (which takes a pool) the connection of the transaction that closes the
    task: the event and the result commit together (accept's own transaction is a savepoint)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        yield self._conn


async def close_task(pool: asyncpg.Pool, task_id: int, result: str, by: str | None = None,
                     note: str | None = None, now: datetime | None = None, zone: str = DEFAULT_TIMEZONE) -> Closed:
    """Close an open task with ``result`` and log its event; ``zone``: the shop's, for the messages."""
    if result not in RESULTS:
        raise TaskRefused(f"unknown result {result!r} (choose from {', '.join(RESULTS)})")
    at = now or datetime.now(timezone.utc)
    task = await pool.fetchrow(_TASK, task_id)
    if task is None:
        raise TaskRefused(f"no call-centre task {task_id}")
    if task["status"] != "open":
        raise TaskRefused(_closed_already(task, zone))
    event, why = event_for(task, result, at)
    duplicate = False
    async with pool.acquire() as conn, conn.transaction():
        if event is not None:  # first, as an erasure does: the member's lock, then the task's row
            (verdict,) = await accept(_ThisConnection(conn), [(1, event)], source=SOURCE)  # type: ignore[arg-type]
            if verdict.status == REJECTED:
                raise TaskRefused(f"task {task_id}: {'; '.join(verdict.problems)}")
            duplicate = verdict.status == DUPLICATE
        if await conn.fetchval(_CLOSE, task_id, result, at, by, note) is None:  # another agent was first
            raise TaskRefused(_closed_already(await conn.fetchrow(_TASK, task_id), zone))
    return Closed(task_id, task["member_id"], result, at, by, event, why, duplicate)


def _closed_already(task: asyncpg.Record, zone: str) -> str:
    if task["status"] == "cancelled":
        return f"task {task['task_id']} was cancelled (the member was erased, or the touch withdrawn): nothing to close"
    who = f" by {task['closed_by']}" if task["closed_by"] else ""
    when = f" at {_when(task['closed_at'], ZoneInfo(zone))}" if task["closed_at"] else ""
    return f"task {task['task_id']} is closed already: {task['result'] or task['status']}{who}{when}"


# --- the commands ------------------------------------------------------------------------------

def add_calls_commands(commands: argparse._SubParsersAction) -> None:
    calls = commands.add_parser("calls", help="the call centre's tasks: list them, close one with its result")
    actions = calls.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="tasks, open ones first (most urgent first), then closed ones")
    listing.add_argument("--open", action="store_true", help="open tasks only")
    listing.add_argument("--limit", type=_positive, default=200, metavar="N", help="at most N tasks (default 200)")
    listing.set_defaults(command=run_list)
    done = actions.add_parser("done", help="close a task with the call's result; a result that changes the "
                                           "member's journey is logged as its event")
    done.add_argument("task_id", type=int, metavar="TASK_ID", help="the task's number (タスクID)")
    done.add_argument("--result", required=True, choices=RESULTS,
                      help="cancel_requested logs a churn_signal (S12 follows); resumed on an S07 task logs "
                           "subscription_resumed")
    done.add_argument("--note", metavar="TEXT", help="the agent's note (no personal data: the member is found by id)")
    done.add_argument("--by", metavar="AGENT", help="who made the call (default: the login name)")
    done.set_defaults(command=run_done)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return int(text)


async def run_list(settings: Settings, args: argparse.Namespace) -> int:
    from starter.cli import emit
    from worker.main import database

    async with database(settings.with_dev_stack()) as pool:
        zone = ZoneInfo((await read_shop(pool)).timezone)
        rows = await pool.fetch(_LIST, args.limit, args.open)
    cells = [[str(r["task_id"]), str(r["priority"]), _when(r["due_at"], zone), r["member_id"], r["scenario"],
              r["reason"], r["status"], r["result"] or "", r["closed_by"] or "", _when(r["closed_at"], zone)]
             for r in rows]
    lines = table(["タスクID", "優先度", "期限", "会員ID", "施策", "理由", "状態", "結果", "担当", "終了"], cells,
                  right=[True, True])
    emit("\n".join(lines if cells else [*lines, "(該当なし)"]))
    return 0


def _when(moment: datetime | None, zone: ZoneInfo) -> str:
    if moment is None:
        return ""
    local = moment.astimezone(zone)
    return f"{local_date(local)} {local_time(local)}"


async def run_done(settings: Settings, args: argparse.Namespace) -> int:
    from worker.main import database

    settings = settings.with_dev_stack()
    async with database(settings) as pool:
        zone = (await read_shop(pool)).timezone
        try:
            closed = await close_task(pool, args.task_id, args.result, args.by or _login(), args.note, zone=zone)
        except TaskRefused as refused:
            print(f"goldenroute: {refused}", file=sys.stderr)
            return 1
        by = f" by {closed.closed_by}" if closed.closed_by else ""
        print(f"task {closed.task_id} closed: {closed.result}{by} at {_when(closed.closed_at, ZoneInfo(zone))}")
        if closed.event is None:
            if closed.why_no_event:
                print(closed.why_no_event)
            return 0
        logged = "was logged already" if closed.duplicate else "logged"
        what = getattr(closed.event, "signal", None) or getattr(closed.event, "subscription_id", "")
        print(f"{closed.event.type} {what} {logged} for member {closed.member_id} "
              f"(event {closed.event.event_id}): {await _forward(settings, pool, closed.member_id)}")
    return 0


def _login() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in this environment (a container without a passwd entry)
        return None


async def _forward(settings: Settings, pool: asyncpg.Pool, member_id: str) -> str:
    """Forward the member's waiting events at once, as ``send`` does; say where the event is."""
    from starter.ingress.forwarder import Forwarder
    from worker.client import connect

    waiting = "stored in the event log; forwarded when the engine runs (`goldenroute dev` or `serve`)"
    try:
        client = await asyncio.wait_for(connect(settings), CONNECT_TIMEOUT)
    except (RuntimeError, OSError, asyncio.TimeoutError):
        return waiting
    logging.getLogger("starter.ingress.forwarder").setLevel(logging.ERROR)  # the line above says it
    result = await Forwarder(pool, client, settings.task_queue).forward_pending([member_id])
    if result.refused:
        return f"not forwarded: {'; '.join(result.refused)}"
    return "forwarded to the member's workflow" if result.forwarded else waiting
