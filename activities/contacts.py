"""Contact data (personal data) in PostgreSQL: stored at the ingress, erased on request.

Workflows never see an address: the ingress stores the contact here and tells
the workflow only which channels can reach the member. A registration updates the
contact partially: the fields it names change (null removes an address), the others
keep their value; per field the newest registration wins, whatever the delivery order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone

import asyncpg
import structlog
from temporalio import activity

from workflows.events import Channel, Contact, MemberRegistered, Reach
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

# Profile updates are partial (SPEC §2): per member, a JSON object of the fields the
# registrations named, each as [value, occurred_at, event_id]: a string to store or null
# to remove the address, and the stamp of the registration that named it. A field that
# is not a key keeps its stored value. The changes travel as one jsonb object keyed by
# member, so the conflict branch can ask, per row, which fields were named: EXCLUDED
# holds only the table's columns, and a JSON key lookup is a binary search.
#
# Last writer wins per field, on the workflow's stamp (workflows/facts.py Stamp): a change
# applies only if its (occurred_at, event_id) is newer than the stamp of the registration
# that last set the field, so any delivery order of the same registrations leaves the
# same row, and a removal (which keeps its stamp) cannot be undone by an older
# registration delivered again or late. A change without a stamp (``store_contacts``: an
# operator's fix, a test) applies whatever the stamp and leaves the stamp as it is.


def _named(f: str) -> str:
    return f"($1::jsonb -> EXCLUDED.member_id) ? '{f}'"


def _newer(f: str) -> str:
    """A stamped change of ``f`` (so a named one) wins: no stamp stored yet, or an older one."""
    return (f"EXCLUDED.{f}_at IS NOT NULL AND (c.{f}_at IS NULL"
            f' OR (EXCLUDED.{f}_at, EXCLUDED.{f}_event COLLATE "C") > (c.{f}_at, c.{f}_event COLLATE "C"))')


def _set(f: str) -> str:
    unstamped = f"{_named(f)} AND EXCLUDED.{f}_at IS NULL"
    return (f"{f} = CASE WHEN ({_newer(f)}) OR ({unstamped}) THEN EXCLUDED.{f} ELSE c.{f} END,\n"
            f"    {f}_at = CASE WHEN {_newer(f)} THEN EXCLUDED.{f}_at ELSE c.{f}_at END,\n"
            f"    {f}_event = CASE WHEN {_newer(f)} THEN EXCLUDED.{f}_event ELSE c.{f}_event END")


_SEP = ",\n    "
_COLUMNS = [column for f in FIELDS for column in (f, f"{f}_at", f"{f}_event")]
_UPSERT = f"""
INSERT INTO member_contacts AS c (member_id, {", ".join(_COLUMNS)})
SELECT m.key, {", ".join(
    f"m.value->'{f}'->>0, (m.value->'{f}'->>1)::timestamptz, m.value->'{f}'->>2" for f in FIELDS)}
FROM jsonb_each($1::jsonb) AS m
-- member_contacts cannot tell an erased member from one never registered (erasure
-- deletes the row), so the event log does: the workflow logs member_erased before it
-- erases. An erased member's address must not come back.
WHERE NOT EXISTS (SELECT 1 FROM member_events e WHERE e.member_id = m.key AND e.type = 'member_erased')
ON CONFLICT (member_id) DO UPDATE SET
    {_SEP.join(_set(f) for f in FIELDS)},
    updated_at = now()
RETURNING member_id, {", ".join(_COLUMNS)}
"""

# Storing contacts and erasing them take the lock of the member's bucket, so a
# registration racing an erasure either sees member_erased logged (the workflow logs it
# before it erases) or is stored first and deleted by the erasure.
# Buckets, not one lock per member: a batch of 10k members holds at most this many.
_LOCK_CLASS = 0x601D_C0
_LOCK_BUCKETS = 128
_LOCK = f"""
SELECT pg_advisory_xact_lock({_LOCK_CLASS}, b)
FROM (SELECT DISTINCT abs(hashtext(m) % {_LOCK_BUCKETS}) AS b FROM unnest($1::text[]) AS m ORDER BY b) AS buckets
"""

ContactChanges = Mapping[str, str | None]


def reachable(contact: asyncpg.Record | Mapping) -> frozenset[Channel]:
    """The channels a contact row (or the fields known so far) can reach."""
    return frozenset(channel for name, channel in CHANNEL_OF_FIELD.items() if contact.get(name))


# A field written without a stamp (an operator's fix) ranks below every registration.
_UNSTAMPED = (datetime(2000, 1, 1, tzinfo=timezone.utc), "")


def reach(row: asyncpg.Record | Mapping) -> dict[Channel, Reach]:
    """Per channel with a stored field or a removal: reachable or not, and the stamp of
    the registration that last set the field (what the workflow folds, SPEC §2)."""
    out = {}
    for name, channel in CHANNEL_OF_FIELD.items():
        if row.get(name) is None and row.get(f"{name}_at") is None:
            continue
        at, event_id = (row[f"{name}_at"], row[f"{name}_event"]) if row.get(f"{name}_at") else _UNSTAMPED
        out[channel] = Reach(reachable=bool(row.get(name)), at=at, event_id=event_id)
    return out


def changes_of(contact: Contact | ContactChanges) -> dict[str, str | None]:
    """The fields an update names: a value to store, or None ("" too) to remove the address."""
    changes = contact.changes() if isinstance(contact, Contact) else dict(contact)
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown contact fields {unknown}")
    return {name: value or None for name, value in changes.items()}


async def store_registrations(
    conn: asyncpg.Pool | asyncpg.Connection, registrations: Iterable[MemberRegistered]
) -> dict[str, dict[Channel, Reach]]:
    """Apply many registrations' contact changes in one statement, last writer wins per field.

    Per member only the named fields change (None clears one), and each only if the
    registration is newer — ``(occurred_at, event_id)`` — than the one that last set
    that field, so the delivery order (a redelivery, a late older registration) does not
    matter. Registrations without a contact are left out. Returns, per member with a
    contact among them, what the stored contact reaches after the update (``reach``:
    per channel, with the stamp of the field's last writer), whatever the registrations' age. A member whose ``member_erased`` is in the event
    log is skipped (absent from the result): its personal data must not come back.
    """
    newest: dict[str, dict[str, tuple[tuple[datetime, str], str | None]]] = {}
    for event in registrations:
        if event.contact is None:
            continue
        stamp = (event.occurred_at, event.event_id)
        fields = newest.setdefault(event.member_id, {})  # an empty contact still reports reachable
        for name, value in changes_of(event.contact).items():
            if name not in fields or stamp > fields[name][0]:
                fields[name] = (stamp, value)
    changes = {member: {name: [value, at.isoformat(), event_id] for name, ((at, event_id), value) in fields.items()}
               for member, fields in newest.items()}
    return {member: reach(row) for member, row in (await _store_changes(conn, changes)).items()}


async def store_contacts(
    conn: asyncpg.Pool | asyncpg.Connection, contacts: Mapping[str, Contact | ContactChanges]
) -> dict[str, frozenset[Channel]]:
    """Apply many members' partial contact updates in one statement, without a stamp.

    For a change that is not a registration (an operator's fix, a test): per member
    only the named fields change (None clears one), whatever registration set them,
    and their stamps stay as they are. Registrations go through ``store_registrations``.
    Returns each stored member's reachable channels after the update; a member whose
    ``member_erased`` is in the event log is skipped (absent from the result).
    """
    changes = {member: {name: [value, None, None] for name, value in changes_of(contact).items()}
               for member, contact in contacts.items()}
    return {member: reachable(row) for member, row in (await _store_changes(conn, changes)).items()}


async def _store_changes(conn: asyncpg.Pool | asyncpg.Connection,
                         changes: dict[str, dict[str, list]]) -> dict[str, asyncpg.Record]:
    if not changes:
        return {}
    members = sorted(changes)
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as connection:
            return await _store(connection, changes, members)
    return await _store(conn, changes, members)


async def _store(conn: asyncpg.Connection, changes: dict[str, dict[str, list]],
                 members: list[str]) -> dict[str, asyncpg.Record]:
    async with conn.transaction():
        await conn.execute(_LOCK, members)
        # After the lock, in a statement of its own: its snapshot sees any erasure logged so far.
        rows = await conn.fetch(_UPSERT, json.dumps(changes))
    if len(rows) < len(members):
        log.warning("contacts.skipped_erased", members=len(members) - len(rows))
    return {row["member_id"]: row for row in rows}


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
            await conn.execute(_LOCK, [request.member_id])
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
            # An agent's note on a closed call may quote what the member said: it goes too.
            await conn.execute("UPDATE call_center_tasks SET note = NULL WHERE member_id = $1 AND note IS NOT NULL",
                               request.member_id)
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
