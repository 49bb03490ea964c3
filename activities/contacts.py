"""Contact data (personal data) in PostgreSQL: stored at the ingress, erased on request.

Workflows never see an address: the ingress stores the contact here and tells
the workflow only which channels can reach the member.
"""

from __future__ import annotations

import asyncpg
import structlog
from temporalio import activity

from workflows.events import Channel, Contact
from workflows.messages import EraseRequest, EraseResult

log = structlog.get_logger(__name__)

# Which contact field makes which channel reachable.
CHANNEL_OF_FIELD = {
    "email": Channel.EMAIL,
    "phone": Channel.SMS,
    "line_user_id": Channel.LINE,
    "postal_address": Channel.DM,
    "push_token": Channel.PUSH,
}
FIELDS = tuple(CHANNEL_OF_FIELD)

# A later registration updates the fields it names and keeps the others.
_UPSERT = f"""
INSERT INTO member_contacts (member_id, {", ".join(FIELDS)})
SELECT * FROM unnest($1::text[], {", ".join(f"${i}::text[]" for i in range(2, len(FIELDS) + 2))})
ON CONFLICT (member_id) DO UPDATE SET
    {", ".join(f"{f} = COALESCE(EXCLUDED.{f}, member_contacts.{f})" for f in FIELDS)},
    updated_at = now()
RETURNING member_id, {", ".join(FIELDS)}
"""


def reachable(contact: asyncpg.Record | dict) -> frozenset[Channel]:
    """The channels a contact row (or the fields known so far) can reach."""
    return frozenset(channel for name, channel in CHANNEL_OF_FIELD.items() if contact.get(name))


async def store_contacts(
    conn: asyncpg.Pool | asyncpg.Connection, contacts: dict[str, Contact]
) -> dict[str, frozenset[Channel]]:
    """Upsert many members' contacts in one statement; returns each member's reachable channels."""
    if not contacts:
        return {}
    members = list(contacts)
    columns = [[getattr(contacts[m], f) for m in members] for f in FIELDS]
    rows = await conn.fetch(_UPSERT, members, *columns)
    return {row["member_id"]: reachable(row) for row in rows}


async def reachable_channels(
    conn: asyncpg.Pool | asyncpg.Connection, member_ids: list[str]
) -> dict[str, frozenset[Channel]]:
    rows = await conn.fetch(
        f"SELECT member_id, {', '.join(FIELDS)} FROM member_contacts WHERE member_id = ANY($1::text[])",
        member_ids,
    )
    return {row["member_id"]: reachable(row) for row in rows}


class ContactActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn(name="erase_member")
    async def erase_member(self, request: EraseRequest) -> EraseResult:
        """Delete the member's personal data; what was sent keeps only its outcome."""
        async with self._pool.acquire() as conn, conn.transaction():
            contacts = await conn.execute("DELETE FROM member_contacts WHERE member_id = $1", request.member_id)
            redacted = await conn.execute(
                "UPDATE deliveries SET body = '{\"erased\": true}'::jsonb"
                " WHERE member_id = $1 AND body <> '{\"erased\": true}'::jsonb",
                request.member_id,
            )
            # Nobody should call or pack a leaflet for a member who asked to be forgotten.
            tasks = await conn.execute(
                "UPDATE call_center_tasks SET status = 'cancelled', talking_points = ''"
                " WHERE member_id = $1 AND status = 'open'", request.member_id)
            inserts = await conn.execute(
                "DELETE FROM inserts WHERE member_id = $1 AND attached_to_shipment_at IS NULL", request.member_id)
        result = EraseResult(
            member_id=request.member_id,
            contacts_deleted=_count(contacts),
            deliveries_redacted=_count(redacted),
            call_center_tasks_cancelled=_count(tasks),
            inserts_withdrawn=_count(inserts),
        )
        log.info("member.erased", **result.model_dump())
        return result


def _count(status: str) -> int:
    """Rows touched, from asyncpg's command status ('DELETE 3', 'UPDATE 1')."""
    return int(status.split()[-1])
