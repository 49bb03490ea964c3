"""The broadcast workflow's activities: freeze a run's audience, request it page by page
through the ingress's one door, and see every request reach its member's workflow.

A page's events go into the event log through ``starter.ingress.log.accept`` (source
``broadcast``): an erased member's is refused there, and one already in the log (an
attempt a killed worker interrupted) is a duplicate, not a second request. Then each is
signalled to its member's workflow. Where nothing older of the member waits in the log
(the usual case) the event is signalled here directly and marked forwarded, with no
lease: a retried page signals what the killed attempt had not marked, and a duplicate
signal changes nothing (the member folds a run once, ``workflows.lifecycle``). A member
with older events still unforwarded goes through the ingress's ``Forwarder``, which
keeps a member's events in order; what it cannot take now (another forwarder's lease,
Temporal down) is forwarded at the run's end (``forward_rest``).
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import asyncpg
import structlog
from pydantic import ValidationError
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError

from starter.ingress import signal_with_start
from starter.ingress.forwarder import Forwarder
from starter.ingress.log import REJECTED, accept
from starter.segments.query import members_in
from workflows.broadcast_messages import (
    Audience, CloseRequest, Forwarding, PageRequest, PageResult, RunRef, SnapshotRequest, event_id,
)
from workflows.events import BroadcastRequested, parse_event

log = structlog.get_logger(__name__)

CONCURRENCY = 32
RPC_TIMEOUT = timedelta(seconds=10)
_INSERT_CHUNK = 10_000

_RUN = "SELECT workflow_id, audience FROM broadcast_runs WHERE broadcast = $1 AND run = $2 FOR UPDATE"
_NEW_RUN = """
INSERT INTO broadcast_runs (broadcast, run, workflow_id, definition, requested_at, as_of, audience)
VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)
"""
_AUDIENCE = """
INSERT INTO broadcast_members (broadcast, run, member_id)
SELECT $1, $2, m FROM unnest($3::text[]) AS m ON CONFLICT DO NOTHING
"""
_PAGE = """
SELECT member_id FROM broadcast_members
WHERE broadcast = $1 AND run = $2 AND ($3::text IS NULL OR member_id > $3)
ORDER BY member_id LIMIT $4
"""
_VERDICTS = """
UPDATE broadcast_members b SET verdict = v.verdict, refused_reason = v.reason
FROM unnest($3::text[], $4::text[], $5::text[]) AS v(member_id, verdict, reason)
WHERE b.broadcast = $1 AND b.run = $2 AND b.member_id = v.member_id
"""
# The run's events still to be signalled, and whether an older event of the member waits too.
_UNFORWARDED = """
SELECT e.event_id, e.member_id, e.payload::text AS payload,
       EXISTS (SELECT 1 FROM member_events o
               WHERE o.member_id = e.member_id AND o.forwarded_at IS NULL AND o.seq < e.seq) AS behind
FROM member_events e WHERE e.event_id = ANY($1::text[]) AND e.forwarded_at IS NULL
"""
_MARK = """
UPDATE member_events SET forwarded_at = now(), forward_error = u.error
FROM unnest($1::text[], $2::text[]) AS u(event_id, error)
WHERE member_events.event_id = u.event_id AND member_events.forwarded_at IS NULL
"""
_REQUESTED = """
SELECT 'bc:' || broadcast || ':' || run || ':' || member_id AS event_id FROM broadcast_members
WHERE broadcast = $1 AND run = $2 AND verdict = 'requested'
"""
_CLOSE = """
UPDATE broadcast_runs SET status = $3, finished_at = now() WHERE broadcast = $1 AND run = $2 AND status = 'sending'
"""


class BroadcastActivities:
    def __init__(self, pool: asyncpg.Pool, client: Client, task_queue: str) -> None:
        """``task_queue``: the member workflows' (their events are signalled there)."""
        self._pool, self._client, self._task_queue = pool, client, task_queue

    @activity.defn(name="snapshot_broadcast_audience")
    async def snapshot_audience(self, request: SnapshotRequest) -> Audience:
        """The run's row and its audience, in one transaction: taken once, whatever the retries."""
        broadcast = request.broadcast
        async with self._pool.acquire() as conn, conn.transaction():
            known = await conn.fetchrow(_RUN, broadcast.name, request.run)
            if known is not None:
                if known["workflow_id"] != request.workflow_id:
                    raise ApplicationError(
                        f"run {request.run} of broadcast {broadcast.name} was already sent by workflow "
                        f"{known['workflow_id']}: a run is sent once", type="RunAlreadySent", non_retryable=True)
                return Audience(members=known["audience"])
            members = await members_in(conn, broadcast.segment, as_of=request.as_of)
            await conn.execute(_NEW_RUN, broadcast.name, request.run, request.workflow_id,
                               json.dumps(broadcast.definition(), ensure_ascii=False), request.requested_at,
                               request.as_of, len(members))
            for start in range(0, len(members), _INSERT_CHUNK):
                await conn.execute(_AUDIENCE, broadcast.name, request.run, members[start:start + _INSERT_CHUNK])
        log.info("broadcast.audience", broadcast=broadcast.name, run=request.run, members=len(members))
        return Audience(members=len(members))

    @activity.defn(name="request_broadcast_page")
    async def request_page(self, request: PageRequest) -> PageResult:
        """The next page of the audience: each member's ``broadcast_requested`` into the event
        log, then to its workflow."""
        members = [r["member_id"] for r in await self._pool.fetch(
            _PAGE, request.name, request.run, request.after, request.size)]
        if not members:
            return PageResult(members=0, last=None, requested=0, refused=0, unforwarded=0)
        events, invalid = _events(request, members)
        verdicts = await accept(self._pool, list(enumerate(events, start=1)), source="broadcast")
        activity.heartbeat("accepted")
        refused = {v.member_id: "; ".join(v.problems) for v in verdicts if v.status == REJECTED} | invalid
        await self._pool.execute(
            _VERDICTS, request.name, request.run, members,
            ["refused" if m in refused else "requested" for m in members], [refused.get(m) for m in members])
        requested = [e.event_id for e in events if e.member_id not in refused]
        unforwarded = await self._forward(requested)
        return PageResult(members=len(members), last=members[-1], requested=len(requested), refused=len(refused),
                          unforwarded=unforwarded)

    @activity.defn(name="forward_broadcast_rest")
    async def forward_rest(self, request: RunRef) -> Forwarding:
        """Forward what the pages left unforwarded; how many still wait."""
        ids = [r["event_id"] for r in await self._pool.fetch(_REQUESTED, request.name, request.run)]
        return Forwarding(unforwarded=await self._forward(ids))

    @activity.defn(name="close_broadcast_run")
    async def close_run(self, request: CloseRequest) -> None:
        await self._pool.execute(_CLOSE, request.name, request.run, request.status)
        log.info("broadcast.closed", broadcast=request.name, run=request.run, status=request.status)

    async def _forward(self, event_ids: list[str]) -> int:
        """Signal these logged events to their workflows; how many are still unforwarded."""
        rows = await self._pool.fetch(_UNFORWARDED, event_ids)
        direct = [r for r in rows if not r["behind"]]
        behind = sorted({r["member_id"] for r in rows if r["behind"]})
        gate = asyncio.Semaphore(CONCURRENCY)
        done: list[tuple[str, str | None]] = []

        async def signal(row: asyncpg.Record) -> None:
            async with gate:
                try:
                    await signal_with_start(self._client, parse_event(row["payload"]), self._task_queue,
                                            rpc_timeout=RPC_TIMEOUT)
                    done.append((row["event_id"], None))
                except WorkflowAlreadyStartedError:  # erased after its event was accepted
                    done.append((row["event_id"], "the member's workflow has completed (erased)"))
                except RPCError as error:  # Temporal unavailable: forwarded later
                    log.warning("broadcast.forward_waits", member_id=row["member_id"], error=str(error))
            activity.heartbeat()

        await asyncio.gather(*(signal(r) for r in direct))
        if done:
            await self._pool.execute(_MARK, [e for e, _ in done], [err for _, err in done])
        if behind:  # in order after the member's older events
            await Forwarder(self._pool, self._client, self._task_queue).forward_pending(
                behind, progress=activity.heartbeat)
        left = len(rows) - len(done)
        if behind:
            left = await self._pool.fetchval(
                "SELECT count(*) FROM member_events WHERE event_id = ANY($1::text[]) AND forwarded_at IS NULL",
                event_ids)
        return left


def _events(request: PageRequest, members: list[str]) -> tuple[list[BroadcastRequested], dict[str, str]]:
    """The page's events; a member no valid event can be made for (an id too long for the
    event id) is refused with the reason."""
    events, invalid = [], {}
    for member_id in members:
        try:
            events.append(BroadcastRequested(
                type="broadcast_requested", event_id=event_id(request.name, request.run, member_id),
                member_id=member_id, occurred_at=request.requested_at, broadcast=request.name, run=request.run,
                template=request.template, channel=request.channel, holdout_percent=request.holdout_percent))
        except ValidationError as error:
            invalid[member_id] = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in error.errors())
    return events, invalid
