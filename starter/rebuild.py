"""``goldenroute db rebuild``: recompute the ``members`` read model from the event log.

Each member's events are folded with the same pure ``apply`` the workflow uses, at
the clock of the rebuild; the next touch comes from the same ``settle``, given the
touches already decided (the ``touches`` table). A rebuilt row keeps its version,
so the member workflow's next write still wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import asyncpg

from activities.projection import SNAPSHOT_COLUMNS
import structlog

from workflows.events import InvalidEvent, MemberEvent, parse_event
from workflows.lifecycle import MemberState, advance_clock, apply, new_member
from workflows.policy import PolicyConfig, settle
from workflows.ledger import record
from workflows.projection import MemberSnapshot, snapshot
from workflows.touches import TouchRecord

log = structlog.get_logger(__name__)

# Members per round trip: big enough to batch, small enough to stream a large log.
CHUNK = 500

_UPSERT = f"""
INSERT INTO members (member_id, version, {", ".join(SNAPSHOT_COLUMNS)})
SELECT m, 0, {", ".join(f"c{i}" for i in range(len(SNAPSHOT_COLUMNS)))}
FROM unnest($1::text[], {", ".join(f"${i + 2}::{t}[]" for i, t in enumerate((
    "text", "int", "text", "text", "timestamptz", "timestamptz", "timestamptz", "timestamptz", "bigint")))})
    AS u(m, {", ".join(f"c{i}" for i in range(len(SNAPSHOT_COLUMNS)))})
ON CONFLICT (member_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in SNAPSHOT_COLUMNS)}, updated_at = now()
"""

_TOUCHES = """
SELECT member_id, idempotency_key AS key, scenario, step, occurrence, planned_at AS due_at, outcome, reason,
       channel, decided_at, variant
FROM touches WHERE member_id = ANY($1::text[]) ORDER BY decided_at
"""


@dataclass(frozen=True)
class Rebuilt:
    members: int
    events: int
    skipped: int = 0  # logged payloads that no longer parse: reported, never fatal


def member_snapshot(member_id: str, events: list[MemberEvent], touches: list[TouchRecord],
                    now: datetime) -> MemberSnapshot:
    """The snapshot a member's workflow would write now, from its logged events and decided touches."""
    state: MemberState = new_member(member_id)
    for event in events:
        state = apply(state, event)
    state = record(advance_clock(state, now), touches)
    pending = settle(state, {}, now, PolicyConfig()).pending
    return snapshot(state, min((t.send_at for t in pending.values()), default=None))


async def rebuild(pool: asyncpg.Pool, now: datetime | None = None) -> Rebuilt:
    now = now or datetime.now(timezone.utc)
    members = events = skipped = 0
    async with pool.acquire() as conn:
        ids = [r["member_id"] for r in await conn.fetch("SELECT DISTINCT member_id FROM member_events ORDER BY 1")]
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            logged: dict[str, list[MemberEvent]] = {m: [] for m in chunk}
            for row in await conn.fetch(
                "SELECT member_id, seq, payload::text FROM member_events WHERE member_id = ANY($1::text[])"
                " ORDER BY member_id, seq", chunk,
            ):
                try:
                    logged[row["member_id"]].append(parse_event(row["payload"]))
                except InvalidEvent as error:
                    skipped += 1
                    log.warning("rebuild.event_skipped", member_id=row["member_id"], seq=row["seq"],
                                problems=error.problems)
            decided: dict[str, list[TouchRecord]] = {m: [] for m in chunk}
            for row in await conn.fetch(_TOUCHES, chunk):
                decided[row["member_id"]].append(TouchRecord.model_validate({k: v for k, v in row.items()
                                                                             if k != "member_id"}))
            snapshots = [member_snapshot(m, logged[m], decided[m], now) for m in chunk]
            await conn.execute(_UPSERT, chunk, *([getattr(s, c) for s in snapshots] for c in SNAPSHOT_COLUMNS))
            members += len(chunk)
            events += sum(len(p) for p in logged.values())
    return Rebuilt(members=members, events=events, skipped=skipped)
