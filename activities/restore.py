"""The restore activity: a member's event log and decided touches, read back from PostgreSQL.

A member whose workflow run failed or was terminated starts again with
``MemberInput.restore``; its first act is ``load_member_log``, so it folds the
events it had accepted and treats the touches it had decided as done, instead of
starting empty and sending them all again. A logged row that no longer parses
is skipped and logged: losing one event beats a member that can never restart.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import structlog
from temporalio import activity

from workflows.events import InvalidEvent, MemberEvent, parse_event
from workflows.messages import RestoredMember, RestoreRequest
from workflows.scenarios import BY_SCENARIO, Scenario
from workflows.touches import Outcome, TouchRecord

log = structlog.get_logger(__name__)

_EVENTS = "SELECT seq, event_id, payload::text FROM member_events WHERE member_id = $1 ORDER BY seq"

_TOUCHES = """
SELECT idempotency_key AS key, scenario, step, occurrence, planned_at AS due_at, outcome, reason,
       channel, decided_at, variant
FROM touches WHERE member_id = $1 ORDER BY decided_at, idempotency_key
"""

# What the policy writes into a sent touch's reason when a subscriber's message left the upsell out.
UPSELL_OMITTED = "upsell_omitted"


@dataclass(frozen=True)
class Logged:
    events: int
    touches: int


async def count_logged(conn: asyncpg.Connection | asyncpg.Pool, member_id: str) -> Logged:
    """How much a restore of this member would bring back (for the operator, before starting it)."""
    row = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM member_events WHERE member_id = $1) AS events,"
        " (SELECT count(*) FROM touches WHERE member_id = $1) AS touches", member_id)
    return Logged(events=row["events"], touches=row["touches"])


async def load_events(conn: asyncpg.Connection | asyncpg.Pool,
                      member_id: str) -> tuple[tuple[MemberEvent, ...], int]:
    """The member's events in arrival order, and the last sequence number its log has used.

    A skipped row still holds its sequence number: the restored run must log its
    new events after it, or ``UNIQUE (member_id, seq)`` would drop them.
    """
    events, last_seq = [], 0
    for row in await conn.fetch(_EVENTS, member_id):
        last_seq = max(last_seq, row["seq"])
        try:
            event = parse_event(row["payload"])
        except InvalidEvent as error:
            log.error("restore.event_skipped", member_id=member_id, seq=row["seq"], event_id=row["event_id"],
                      problems=error.problems)
            continue
        if event.member_id != member_id:  # SPEC §2: an event belongs to the member it is delivered to
            log.error("restore.event_skipped", member_id=member_id, seq=row["seq"], event_id=row["event_id"],
                      problems=[f"member_id: belongs to {event.member_id!r}"])
            continue
        events.append(event)
    return tuple(events), last_seq


async def load_touches(conn: asyncpg.Connection | asyncpg.Pool, member_id: str) -> tuple[TouchRecord, ...]:
    touches = []
    for row in await conn.fetch(_TOUCHES, member_id):
        fields = dict(row)
        try:
            touches.append(TouchRecord.model_validate({**fields, "upsell": carried_upsell(fields)}))
        except ValueError as error:  # pydantic's ValidationError is a ValueError
            log.error("restore.touch_skipped", member_id=member_id, key=fields["key"], problem=str(error))
    return tuple(touches)


def carried_upsell(touch: dict) -> bool:
    """Whether a sent touch carried the 定期 upsell block.

    The ``touches`` table has no column for it and the outbox body holds only the
    rendered text, but the policy's rule is recorded: a step that offers the upsell
    sent it unless the reason says it was omitted for a subscriber. S06 depends on
    this (it is suppressed when S03/S04 of the same purchase already carried it).
    """
    if touch["outcome"] != Outcome.SENT.value or UPSELL_OMITTED in touch["reason"]:
        return False
    try:
        template = BY_SCENARIO[Scenario(touch["scenario"])]
    except (ValueError, KeyError):
        return False
    return any(step.name == touch["step"] and step.upsell for step in template.steps)


class RestoreActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn(name="load_member_log")
    async def load_member_log(self, request: RestoreRequest) -> RestoredMember:
        """Events in arrival order (seq), touches in the order they were decided; read-only, so retries are safe."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            events, last_seq = await load_events(conn, request.member_id)
            touches = await load_touches(conn, request.member_id)
        log.info("restore.loaded", member_id=request.member_id, events=len(events), touches=len(touches),
                 last_seq=last_seq)
        return RestoredMember(member_id=request.member_id, events=events, touches=touches, last_seq=last_seq)
