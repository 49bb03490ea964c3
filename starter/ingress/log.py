"""Durable acceptance: an event the ingress has accepted is committed to the event log.

``accept`` is the one door for HTTP, CLI and CSV import. In one transaction it
refuses the events of an erased member before anything of theirs is stored,
recognises duplicates by ``event_id``, stores registrations' contact data in
``member_contacts`` (taking it off the event) and appends every new event to
``member_events`` unforwarded. When it returns, what it accepted is committed;
``starter.ingress.forwarder`` signals the workflows from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from starter.ingress import strip_contacts
from workflows.events import MemberErased, MemberEvent

ACCEPTED, DUPLICATE, REJECTED = "accepted", "duplicate", "rejected"
ERASED = "member_id: member was erased; its events are refused"

# One member's appends are serialised on its bucket's lock, so seq grows without gaps
# or collisions whatever the number of ingress processes (the contacts take the same).
_LOCK_CLASS = 0x601D_E7
_LOCK_BUCKETS = 1024
_LOCK = f"""
SELECT pg_advisory_xact_lock({_LOCK_CLASS}, b)
FROM (SELECT DISTINCT abs(hashtext(m) % {_LOCK_BUCKETS}) AS b FROM unnest($1::text[]) AS m ORDER BY b) AS buckets
"""
_KNOWN = "SELECT event_id FROM member_events WHERE event_id = ANY($1::text[])"
_ERASED = "SELECT DISTINCT member_id FROM member_events WHERE member_id = ANY($1::text[]) AND type = 'member_erased'"
_APPEND = """
INSERT INTO member_events (event_id, member_id, seq, type, occurred_at, payload, forwarded_at, source)
SELECT e.event_id, e.member_id, COALESCE(last.seq, 0) + e.n, e.type, e.occurred_at, e.payload, NULL, $7
FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::timestamptz[], $6::jsonb[])
     AS e(event_id, member_id, n, type, occurred_at, payload)
LEFT JOIN (SELECT member_id, max(seq) AS seq FROM member_events
           WHERE member_id = ANY($2::text[]) GROUP BY member_id) AS last USING (member_id)
ON CONFLICT DO NOTHING
"""


@dataclass(frozen=True)
class Verdict:
    """What became of one submitted event."""

    number: int  # 1-based position in the submission: line, row or array item
    status: str  # accepted, duplicate or rejected
    event_id: str | None
    member_id: str | None
    problems: tuple[str, ...] = ()  # "field: message"

    def __str__(self) -> str:
        return f"{self.number}: {self.status}" + (f" ({'; '.join(self.problems)})" if self.problems else "")


async def accept(pool: asyncpg.Pool, numbered: Sequence[tuple[int, MemberEvent]], source: str = "cli",
                 ) -> list[Verdict]:
    """Commit valid events to the event log; one verdict per event, in the order given."""
    if not numbered:
        return []
    members = sorted({e.member_id for _, e in numbered})
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_LOCK, members)
        erased = {r["member_id"] for r in await conn.fetch(_ERASED, members)}
        known = {r["event_id"] for r in await conn.fetch(_KNOWN, [e.event_id for _, e in numbered])}
        verdicts: dict[int, Verdict] = {}
        fresh: list[tuple[int, MemberEvent]] = []
        for index, (number, event) in enumerate(numbered):
            if event.event_id in known:
                verdicts[index] = Verdict(number, DUPLICATE, event.event_id, event.member_id)
            elif event.member_id in erased:
                verdicts[index] = Verdict(number, REJECTED, event.event_id, event.member_id, (ERASED,))
            else:
                known.add(event.event_id)  # the same event twice in one submission
                fresh.append((index, event))
                verdicts[index] = Verdict(number, ACCEPTED, event.event_id, event.member_id)
        # Events after a member's erasure in this same submission are refused too.
        fresh = _refuse_after_erasure(fresh, verdicts, numbered)
        stripped = await strip_contacts(conn, [e for _, e in fresh])
        await _append(conn, stripped, source)
    return [verdicts[i] for i in range(len(numbered))]


def _refuse_after_erasure(fresh: list[tuple[int, MemberEvent]], verdicts: dict[int, Verdict],
                          numbered: Sequence[tuple[int, MemberEvent]]) -> list[tuple[int, MemberEvent]]:
    erased_at = {}
    for _, event in fresh:
        if isinstance(event, MemberErased):
            erased_at.setdefault(event.member_id, event.occurred_at)
    kept = []
    for index, event in fresh:
        cut = erased_at.get(event.member_id)
        if cut is not None and not isinstance(event, MemberErased) and event.occurred_at > cut:
            number = numbered[index][0]
            verdicts[index] = Verdict(number, REJECTED, event.event_id, event.member_id, (ERASED,))
            continue
        kept.append((index, event))
    return kept


async def _append(conn: asyncpg.Connection, events: list[MemberEvent], source: str) -> None:
    if not events:
        return
    position: dict[str, int] = {}
    numbers = []
    for event in events:
        position[event.member_id] = position.get(event.member_id, 0) + 1
        numbers.append(position[event.member_id])
    await conn.execute(
        _APPEND,
        [e.event_id for e in events], [e.member_id for e in events], numbers, [e.type for e in events],
        [e.occurred_at for e in events], [e.model_dump_json(exclude={"contact"}) for e in events], source,
    )
