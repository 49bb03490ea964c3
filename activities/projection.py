"""The projection activity: a member workflow's events and snapshot into PostgreSQL.

Both writes are idempotent: events on their ``event_id``, the snapshot on its
``version`` (a retried, late or replayed write of an older one changes nothing).
"""

from __future__ import annotations

import asyncpg
from temporalio import activity

from workflows.projection import MemberSnapshot, ProjectionRequest, ProjectionResult

_EVENTS = """
INSERT INTO member_events (event_id, member_id, seq, type, occurred_at, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::timestamptz[], $6::jsonb[])
ON CONFLICT DO NOTHING
"""

SNAPSHOT_COLUMNS = (
    "stage", "purchase_count", "subscription_status", "sales_channel", "registered_at",
    "first_purchase_at", "last_purchase_at", "next_touch_at", "revenue",
)

_SNAPSHOT = f"""
INSERT INTO members (member_id, version, {", ".join(SNAPSHOT_COLUMNS)})
VALUES ($1, $2, {", ".join(f"${i}" for i in range(3, len(SNAPSHOT_COLUMNS) + 3))})
ON CONFLICT (member_id) DO UPDATE SET
    version = EXCLUDED.version,
    {", ".join(f"{c} = EXCLUDED.{c}" for c in SNAPSHOT_COLUMNS)},
    updated_at = now()
WHERE members.version < EXCLUDED.version
RETURNING 1
"""


def snapshot_args(member_id: str, version: int, snapshot: MemberSnapshot) -> tuple:
    return (member_id, version, *(getattr(snapshot, c) for c in SNAPSHOT_COLUMNS))


async def write_events(conn: asyncpg.Connection | asyncpg.Pool, request: ProjectionRequest) -> int:
    """One statement for the whole batch; returns how many events were new."""
    if not request.events:
        return 0
    logged = request.events
    status = await conn.execute(
        _EVENTS,
        [e.event.event_id for e in logged], [e.event.member_id for e in logged], [e.seq for e in logged],
        [e.event.type for e in logged], [e.event.occurred_at for e in logged],
        [e.event.model_dump_json(exclude={"contact"}) for e in logged],
    )
    return int(status.split()[-1])


async def project(conn: asyncpg.Connection, request: ProjectionRequest) -> ProjectionResult:
    recorded = await write_events(conn, request)
    written = await conn.fetchval(_SNAPSHOT, *snapshot_args(request.member_id, request.version, request.snapshot))
    return ProjectionResult(events_recorded=recorded, snapshot_written=written is not None)


class ProjectionActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn(name="project_member")
    async def project(self, request: ProjectionRequest) -> ProjectionResult:
        """Used when no touch is delivered at the same moment (a delivery carries the projection itself)."""
        async with self._pool.acquire() as conn, conn.transaction():
            return await project(conn, request)
