"""Forwarding from the event log: what the ingress accepted reaches the member workflows.

Each member's unforwarded events go to its workflow by signal-with-start in ``seq``
order, and are marked forwarded once the signal is taken. A forwarder first leases a
member's unforwarded events (``lease_until``, in a short transaction under the
member's lock, and only when no lease of another forwarder is running), then signals
them without holding a database connection, so several ingress processes and the CLI
can forward side by side without reordering a member's events or starving the
accepting side of connections. When Temporal is down nothing is lost: the events wait
in the log and the next round (every ``interval``, or at once after ``wake``) forwards
them. A forwarder that dies lets its lease run out and another takes over; a crash
between a signal and its mark sends that event again, and the member's fold is
idempotent, so a duplicate signal changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg
import structlog
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from starter.ingress import signal_with_start
from workflows.events import InvalidEvent, parse_event

log = structlog.get_logger(__name__)

CONCURRENCY = 32
BATCH_MEMBERS = 1000
RPC_TIMEOUT = timedelta(seconds=10)
HEALTH_TIMEOUT = timedelta(seconds=2)
_LOCK_CLASS = 0x601D_F0

_PENDING_MEMBERS = """
SELECT member_id FROM member_events WHERE forwarded_at IS NULL
GROUP BY member_id ORDER BY min(accepted_at) LIMIT $1
"""
_PENDING_OF = """
SELECT DISTINCT member_id FROM member_events WHERE forwarded_at IS NULL AND member_id = ANY($1::text[])
"""
LEASE = timedelta(minutes=2)
MAX_LEASED = 200  # events a member's lease takes at once; the rest go in the next round
_CLAIM = """
UPDATE member_events SET lease_until = now() + $2::interval
WHERE event_id IN (
    SELECT event_id FROM member_events WHERE member_id = $1 AND forwarded_at IS NULL ORDER BY seq LIMIT $3)
  AND NOT EXISTS (SELECT 1 FROM member_events
                  WHERE member_id = $1 AND forwarded_at IS NULL AND lease_until > now())
RETURNING event_id, seq, payload::text
"""
_MARK = """
UPDATE member_events SET forwarded_at = now(), lease_until = NULL, forward_error = u.error
FROM unnest($1::text[], $2::text[]) AS u(event_id, error) WHERE member_events.event_id = u.event_id
"""
# Nothing logged before the member's earliest leased event and no touch decided: a run it starts
# has nothing to restore (signal_with_start(restore=False)).
_NOTHING_BEFORE = """
SELECT NOT EXISTS (SELECT 1 FROM member_events WHERE member_id = $1 AND seq < $2)
   AND NOT EXISTS (SELECT 1 FROM touches WHERE member_id = $1)
"""
_RELEASE = "UPDATE member_events SET lease_until = NULL WHERE event_id = ANY($1::text[]) AND forwarded_at IS NULL"
_FAILED = "UPDATE member_events SET forward_error = $2 WHERE event_id = $1"
_LAG = "SELECT extract(epoch FROM now() - min(accepted_at))::float8 FROM member_events WHERE forwarded_at IS NULL"


@dataclass
class ForwardResult:
    forwarded: int = 0
    members: int = 0
    waiting: int = 0  # members whose events wait for Temporal (or another forwarder) to be forwarded
    busy: int = 0  # of those, members another forwarder was signalling (their events were not leased here)
    refused: list[str] = field(default_factory=list)  # "member: event: why", e.g. the member was erased
    # forward_pending(track=True): the events this round marked (forwarded or refused); what another
    # forwarder did to the same members' events meanwhile is the rest (see starter.ingress.send).
    handled: set[str] | None = field(default=None, repr=False)


async def forward_lag(pool: asyncpg.Pool) -> float | None:
    """Seconds since the oldest event still to be forwarded was accepted; None when there is none."""
    return await pool.fetchval(_LAG)


class Forwarder:
    def __init__(self, pool: asyncpg.Pool, client: Client, task_queue: str, interval: float = 1.0) -> None:
        self._pool, self._client, self._task_queue = pool, client, task_queue
        self._interval = interval
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Forward now: called after an ``accept`` that accepted something."""
        self._wake.set()

    async def run(self) -> None:
        """Forward until cancelled; after a round that left events waiting, back off up to a minute."""
        delay = self._interval
        while True:
            self._wake.clear()
            try:
                result = await self.forward_pending()
                delay = self._interval if not result.waiting else min(delay * 2, 60.0)
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("forward.database_unavailable", error=str(error))
                delay = min(delay * 2, 60.0)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass

    async def forward_pending(self, member_ids: Sequence[str] | None = None,
                              progress: Callable[[], None] | None = None, track: bool = False) -> ForwardResult:
        """One round: every member with unforwarded events (or these members), each in seq order.

        ``progress`` is called once per member done (a progress bar's update); ``track`` keeps
        the ids of the events this round marked in ``handled``.
        """
        if member_ids is None:
            members = [r["member_id"] for r in await self._pool.fetch(_PENDING_MEMBERS, BATCH_MEMBERS)]
        else:
            members = [r["member_id"] for r in await self._pool.fetch(_PENDING_OF, list(member_ids))]
        result = ForwardResult(members=len(members), handled=set() if track else None)
        if members and not await self._temporal_serves():
            result.waiting = len(members)  # nothing is held: the accepting side keeps its connections
            return result
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(member_id: str) -> None:
            async with gate:
                await self._forward_member(member_id, result)
            if progress is not None:
                progress()

        await asyncio.gather(*(one(m) for m in members))
        if result.forwarded or result.waiting:
            log.info("forward.round", forwarded=result.forwarded, members=result.members, waiting=result.waiting,
                     busy=result.busy)
        return result

    async def _temporal_serves(self) -> bool:
        """A cheap check before a round, so an outage costs one warning, not one per member."""
        try:
            await self._client.workflow_service.get_system_info(
                GetSystemInfoRequest(), timeout=HEALTH_TIMEOUT)
            return True
        except RPCError as error:
            log.warning("forward.temporal_unavailable", error=str(error))
            return False

    async def _forward_member(self, member_id: str, result: ForwardResult) -> None:
        leased = await self._lease(member_id)
        if not leased:
            result.waiting += 1  # another forwarder is signalling this member now
            result.busy += 1
            return
        done: list[tuple[str, str | None]] = []
        failed: str | None = None
        nothing_before = await self._pool.fetchval(_NOTHING_BEFORE, member_id, leased[0]["seq"])
        try:
            for n, row in enumerate(leased):
                done.append((row["event_id"], await self._signal(member_id, row, result,
                                                                 restore=not (nothing_before and n == 0))))
        except RPCError as error:
            result.waiting += 1
            failed = f"temporal: {error}"[:500]
            log.warning("forward.temporal_unavailable", member_id=member_id, error=str(error))
        async with self._pool.acquire() as conn, conn.transaction():
            if done:
                await conn.execute(_MARK, [e for e, _ in done], [err for _, err in done])
            rest = [row["event_id"] for row in leased[len(done):]]
            if rest:
                await conn.execute(_RELEASE, rest)
                await conn.execute(_FAILED, rest[0], failed)
        result.forwarded += sum(err is None for _, err in done)
        if result.handled is not None:
            result.handled.update(e for e, _ in done)

    async def _lease(self, member_id: str) -> list[asyncpg.Record]:
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS, member_id):
                return []
            rows = await conn.fetch(_CLAIM, member_id, LEASE, MAX_LEASED)
        return sorted(rows, key=lambda r: r["seq"])

    async def _signal(self, member_id: str, row: asyncpg.Record, result: ForwardResult,
                      restore: bool = True) -> str | None:
        """Signal one logged event; the reason it cannot ever be forwarded, if so."""
        try:
            event = parse_event(row["payload"])
        except InvalidEvent as error:
            why = f"invalid payload: {'; '.join(error.problems)}"
        else:
            try:
                await signal_with_start(self._client, event, self._task_queue, rpc_timeout=RPC_TIMEOUT,
                                        restore=restore)
                return None
            except WorkflowAlreadyStartedError:
                why = "the member's workflow has completed (erased)"
        result.refused.append(f"{member_id}: {row['event_id']}: {why}")
        log.warning("forward.refused", member_id=member_id, event_id=row["event_id"], why=why)
        return why
