"""``goldenroute export dm|inserts|calls``: the day's files for the print house, the warehouse
and the call centre (SPEC §5 "Real channels": postal DM, package inserts and call-centre
tasks reach them as files they already use).

An export takes the rows of one day of the shop's calendar (``--date``, its timezone) that
no export has taken yet, and marks them in the transaction that reads them (``FOR UPDATE
SKIP LOCKED``): two exports running at once split the rows between them, and a row is in
one file only. A DM leaves the outbox as ``exported``. The rows form a numbered batch
(``export_batches``: day, timezone, encoding, rows, the file's sha256). ``--again`` renders
that day's batches again for a lost download, marking nothing, and says whether each is
byte for byte the file it was: it differs only where a member was erased since (their
letters and inserts are left out) or a task was closed or cancelled since.

The file is written beside its name and moved into place once the marks are committed:
a failed write marks nothing, and a failed commit leaves no file behind.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg

from starter.excel_csv import DEFAULT_ENCODING, CsvFile, address_block, csv_file, describe_missing, encoding_name
from starter.reports.period import day_start, read_shop
from starter.table import scenario_label
from worker.settings import Settings


class ExportError(RuntimeError):
    """An export cannot be done as asked; the message says why."""


@dataclass(frozen=True)
class Kind:
    name: str
    receiver: str
    table: str
    headers: tuple[str, ...]
    waiting: str  # the rows no export has taken yet
    rows: str  # the rows of batches $1, in file order, with their batch
    row: Callable[[asyncpg.Record, str], list[str]]  # (record, timezone) → cells
    leaves: str = ""  # what else marking sets


def _dm(r: asyncpg.Record, zone: str) -> list[str]:
    message = json.loads(r["body"])
    postcode, address, name = address_block(message.get("recipient") or "")
    return [postcode, address, name, message.get("body") or "", r["template"], r["member_id"],
            scenario_label(r["scenario"])]


def _insert(r: asyncpg.Record, zone: str) -> list[str]:
    return [r["order_id"], r["insert_code"], r["body"], r["member_id"]]


def _call(r: asyncpg.Record, zone: str) -> list[str]:
    due = r["due_at"].astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")
    return [str(r["priority"]), due, r["member_id"], r["reason"], r["talking_points"], str(r["task_id"])]


KINDS = {kind.name: kind for kind in (
    Kind("dm", "print house", "deliveries",
         ("宛先郵便番号", "住所", "氏名", "文面", "テンプレート", "会員ID", "施策"),
         # Queued only: a DM stored before real channels counts as sent (migration 008).
         waiting="channel = 'dm' AND state = 'queued' AND exported_at IS NULL AND NOT body ? 'erased'",
         rows="SELECT d.export_batch AS batch, d.member_id, d.template, d.body::text AS body, t.scenario"
              " FROM deliveries d JOIN touches t USING (idempotency_key)"
              " WHERE d.export_batch = ANY($1::bigint[]) AND NOT d.body ? 'erased'"
              " ORDER BY d.export_batch, d.created_at, d.idempotency_key",
         row=_dm, leaves=", state = 'exported', updated_at = now()"),
    Kind("inserts", "warehouse", "inserts", ("受注番号", "同梱物コード", "文面", "会員ID"),
         waiting="exported_at IS NULL AND attached_to_shipment_at IS NULL",
         rows="SELECT export_batch AS batch, order_id, insert_code, body, member_id FROM inserts"
              " WHERE export_batch = ANY($1::bigint[]) ORDER BY export_batch, created_at, idempotency_key",
         row=_insert),
    Kind("calls", "call centre", "call_center_tasks", ("優先度", "期限", "会員ID", "理由", "トークスクリプト", "タスクID"),
         waiting="exported_at IS NULL AND status = 'open'",
         rows="SELECT export_batch AS batch, task_id, priority, due_at, member_id, reason, talking_points"
              " FROM call_center_tasks WHERE export_batch = ANY($1::bigint[]) AND status = 'open'"
              " ORDER BY export_batch, priority, due_at, task_id",
         row=_call),
)}

_NEW_BATCH = ("INSERT INTO export_batches (kind, day, timezone, row_count, encoding, digest)"
              " VALUES ($1, $2, $3, 0, $4, '') RETURNING id")
_SEAL_BATCH = "UPDATE export_batches SET row_count = $2, digest = $3 WHERE id = $1"
_BATCHES = ("SELECT id, timezone, encoding, digest, row_count FROM export_batches"
            " WHERE kind = $1 AND day = $2 ORDER BY id")


def _mark(kind: Kind) -> str:
    return f"""
WITH picked AS (
    SELECT idempotency_key FROM {kind.table}
    WHERE {kind.waiting} AND created_at >= $1 AND created_at < $2
    ORDER BY created_at, idempotency_key
    FOR UPDATE SKIP LOCKED)
UPDATE {kind.table} AS x SET exported_at = now(), export_batch = $3{kind.leaves}
FROM picked WHERE x.idempotency_key = picked.idempotency_key"""


@dataclass(frozen=True)
class BatchCheck:
    """--again: one earlier batch against the file it was."""

    batch: int
    rows_then: int
    rows_now: int
    same_file: bool | None  # None: written in another encoding, not comparable


@dataclass
class Export:
    kind: Kind
    day: date
    timezone: str
    file: CsvFile
    rows: int
    batches: list[int] = field(default_factory=list)
    earlier: int = 0  # rows of earlier days still waiting
    earliest: date | None = None
    checks: list[BatchCheck] = field(default_factory=list)  # --again


# (batches, file): write the file beside its place, before the marks commit; may be a coroutine.
Stage = Callable[[Sequence[int], bytes], None | Awaitable[None]]


class _NothingWaiting(Exception):
    """Raised in the transaction to roll back the batch it opened: no batch without rows."""


async def export_new(pool: asyncpg.Pool, kind: Kind, day: date, zone: str, encoding: str, stage: Stage) -> Export:
    """The day's waiting rows, marked as one batch; ``stage`` writes the file before the marks commit."""
    start, end = day_start(day, zone), day_start(day + timedelta(days=1), zone)
    export = Export(kind, day, zone, csv_file(kind.headers, [], encoding), 0)
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                batch = await conn.fetchval(_NEW_BATCH, kind.name, day, zone, encoding)
                if await conn.execute(_mark(kind), start, end, batch) == "UPDATE 0":
                    raise _NothingWaiting
                records = await conn.fetch(kind.rows, [batch])
                export.file = csv_file(kind.headers, [kind.row(r, zone) for r in records], encoding)
                export.rows, export.batches = len(records), [batch]
                await conn.execute(_SEAL_BATCH, batch, export.rows, export.file.digest)
                await _staged(stage(export.batches, export.file.data))  # raising here rolls the marks back
        except _NothingWaiting:
            await _staged(stage([], export.file.data))
        export.earlier, earliest = await conn.fetchrow(
            f"SELECT count(*), min(created_at) FROM {kind.table} WHERE {kind.waiting} AND created_at < $1", start)
    export.earliest = earliest.astimezone(ZoneInfo(zone)).date() if earliest else None
    return export


async def _staged(result: None | Awaitable[None]) -> None:
    if inspect.isawaitable(result):
        await result


async def export_again(pool: asyncpg.Pool, kind: Kind, day: date, encoding: str | None) -> Export:
    """The rows of the day's batches as they are now, in their own encoding unless ``encoding``."""
    async with pool.acquire() as conn:
        batches = await conn.fetch(_BATCHES, kind.name, day)
        if not batches:
            raise ExportError(f"no {kind.name} export of {day} yet: nothing to export again")
        used = sorted({b["encoding"] for b in batches})
        if encoding is None and len(used) > 1:
            raise ExportError(f"the {kind.name} files of {day} were written in {' and '.join(used)}: "
                              "choose one with --encoding")
        encoding = encoding or used[0]
        records = await conn.fetch(kind.rows, [b["id"] for b in batches])
    zones = {b["id"]: b["timezone"] for b in batches}
    cells = [(r["batch"], kind.row(r, zones[r["batch"]])) for r in records]
    export = Export(kind, day, batches[-1]["timezone"], csv_file(kind.headers, [c for _, c in cells], encoding),
                    len(cells), [b["id"] for b in batches])
    for b in batches:
        own = [c for batch, c in cells if batch == b["id"]]
        same = csv_file(kind.headers, own, encoding).digest == b["digest"] if b["encoding"] == encoding else None
        export.checks.append(BatchCheck(b["id"], b["row_count"], len(own), same))
    return export


# --- the command ---------------------------------------------------------------------------

ENCODING_LABELS = {"utf-8-sig": "UTF-8 with BOM", "utf-8": "UTF-8 without BOM", "cp932": "CP932 (Shift_JIS)"}


def add_export_command(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export", help="the day's file for the print house (dm), the warehouse (inserts) or the call centre "
                       "(calls): CSV for Japanese Excel; each row is exported once")
    export.add_argument("kind", choices=list(KINDS),
                        help="dm: postal letters; inserts: 同梱物 for the parcels; calls: tasks for the agents")
    export.add_argument("--date", type=_day, metavar="YYYY-MM-DD",
                        help="the day whose rows to export, on the shop's calendar (default: today)")
    export.add_argument("--out", metavar="FILE",
                        help="the file to write, or - for standard output (default: KIND-DAY-BATCH.csv here; "
                             "with no rows to export, no file)")
    export.add_argument("--encoding", type=_encoding, metavar="NAME",
                        help="utf-8-sig (the default: UTF-8 with a BOM, as Excel wants it) or cp932 (Shift_JIS; "
                             "a character it lacks is written 〓 and counted); --again: the batch's own")
    export.add_argument("--again", action="store_true",
                        help="that day's earlier exports again, for a lost file: marks nothing, and says "
                             "whether the file is the same")
    export.set_defaults(command=run_export)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _encoding(text: str) -> str:
    try:
        return encoding_name(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


async def run_export(settings: Settings, args: argparse.Namespace) -> int:
    from worker.main import database

    kind = KINDS[args.kind]
    async with database(settings.with_dev_stack()) as pool:
        zone = (await read_shop(pool)).timezone
        day = args.date or datetime.now(ZoneInfo(zone)).date()
        target = Target(args.out, f"{kind.name}-{day}")
        try:
            if args.again:
                export = await export_again(pool, kind, day, args.encoding)
                target.stage(export.batches, export.file.data)
            else:
                export = await export_new(pool, kind, day, zone, args.encoding or DEFAULT_ENCODING, target.stage)
        except ExportError as error:
            print(f"goldenroute: {error}", file=sys.stderr)
            return 1
        except BaseException:
            target.discard()
            raise
    where = target.place()
    print("\n".join(summary(export, where)), file=sys.stderr)
    return 0


class Target:
    """Where the file goes: written beside its place while the marks are uncommitted, moved there after."""

    def __init__(self, out: str | None, stem: str) -> None:
        self._out, self._stem = out, stem
        self._data = b""
        self._path: Path | None = None
        self._part: Path | None = None

    def stage(self, batches: Sequence[int], data: bytes) -> None:
        self._data = data
        if self._out == "-" or (self._out is None and not batches):  # nothing exported: no file of its own
            return
        self._path = Path(self._out or f"{self._stem}-{'+'.join(map(str, batches))}.csv")
        self._part = self._path.with_name(self._path.name + ".part")
        self._part.write_bytes(data)

    def place(self) -> str | None:
        if self._out == "-":
            from starter.cli import emit

            emit(self._data)
            return "standard output"
        if self._part is None or self._path is None:
            return None
        try:
            os.replace(self._part, self._path)
        except OSError as error:  # the marks are committed: say where the file is and how to get it again
            raise RuntimeError(f"the rows are exported but the file cannot be moved to {self._path} ({error}): "
                               f"it is {self._part}, or write it again with --again") from None
        return str(self._path)

    def discard(self) -> None:
        if self._part is not None:
            self._part.unlink(missing_ok=True)


def summary(export: Export, where: str | None) -> list[str]:
    """What was exported, where, how encoded; characters replaced; rows still waiting."""
    kind, file = export.kind, export.file
    if export.checks:
        done = f"{_rows(export.rows)} of batch {'+'.join(map(str, export.batches))} again"
    else:
        done = f"{_rows(export.rows)} as batch {export.batches[0]}" if export.rows else "no rows waiting"
    into = f" → {where} ({ENCODING_LABELS[file.encoding]}, sha256 {file.digest[:16]})" if where else ""
    lines = [f"export {kind.name} {export.day} ({export.timezone}) for the {kind.receiver}: {done}{into}"]
    if file.replaced:
        lines.append(f"{file.replaced} characters CP932 lacks written as 〓: {describe_missing(file.missing)}; "
                     "check those rows")
    if file.forms:
        lines.append(f"{file.forms} characters written as their CP932 form (¥ → ￥, — → ―, no-break space → space)")
    for check in export.checks:
        if check.same_file:
            lines.append(f"batch {check.batch}: the same file as exported ({_rows(check.rows_now)})")
        elif check.same_file is None:
            lines.append(f"batch {check.batch}: was not written in {file.encoding}; {_rows(check.rows_now)} now, "
                         f"{check.rows_then} then")
        else:
            lines.append(f"batch {check.batch}: not the file exported: {_rows(check.rows_now)} now, "
                         f"{check.rows_then} then (erased members' rows and closed tasks are left out)")
    if export.earlier:
        lines.append(f"{_rows(export.earlier)} of earlier days still waiting, the oldest of {export.earliest}: "
                     f"export them with --date {export.earliest}")
    return lines


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"
