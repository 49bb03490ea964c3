"""Contact data against real PostgreSQL: a registration updates the stored contact partially.

SPEC §2: a field a registration leaves out keeps its value; an explicit ``null`` (or
``""``) removes the address, and routing falls back to the next channel. The ingress
(`strip_contacts`) stores the changes and tells the workflow only what is reachable.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from temporalio.testing import ActivityEnvironment

from activities.contacts import FIELDS, ContactActivities, store_contacts
from starter.ingress import strip_contacts
from tests.factories import event
from workflows.events import Channel, MemberRegistered, parse_event
from workflows.messages import EraseRequest

T0 = datetime(2026, 4, 1, 1, 0, tzinfo=timezone.utc)
FULL = {"email": "hanako@example.jp", "phone": "090-1234-5678", "line_user_id": "U4af4980629",
        "postal_address": "東京都千代田区千代田1-1"}


def registration(member_id: str, at: datetime = T0, **fields) -> MemberRegistered:
    return event("member_registered", member_id, at, **fields)


async def stored(pool, member_id: str) -> dict | None:
    row = await pool.fetchrow(f"SELECT {', '.join(FIELDS)} FROM member_contacts WHERE member_id = $1", member_id)
    return None if row is None else {k: v for k, v in dict(row).items() if v is not None}


async def ingest(pool, *events) -> list:
    stripped = await strip_contacts(pool, list(events))
    assert all(getattr(e, "contact", None) is None for e in stripped)
    return stripped


async def log_erasure(pool, member_id: str) -> None:
    """What the workflow's projection writes when it folds member_erased."""
    await pool.execute(
        "INSERT INTO member_events (event_id, member_id, seq, type, occurred_at, payload)"
        " VALUES ($1, $2, 1, 'member_erased', $3, '{}'::jsonb)", f"{member_id}-erased", member_id, T0)


async def test_an_address_change_keeps_the_other_fields(pool, member_id):
    await ingest(pool, registration(member_id, contact=FULL))
    (moved,) = await ingest(pool, registration(member_id, T0 + timedelta(days=1),
                                               contact={"postal_address": "大阪府大阪市北区1-1"}))
    assert await stored(pool, member_id) == {**FULL, "postal_address": "大阪府大阪市北区1-1"}
    assert moved.reachable == {Channel.EMAIL, Channel.SMS, Channel.LINE, Channel.DM}


async def test_an_explicit_null_removes_the_address_and_its_channel(pool, member_id):
    await ingest(pool, registration(member_id, contact=FULL))
    unlinked = parse_event({
        "type": "member_registered", "event_id": f"{member_id}-unlink", "member_id": member_id,
        "occurred_at": (T0 + timedelta(days=1)).isoformat(), "contact": {"line_user_id": None},
    })
    (event_,) = await ingest(pool, unlinked)
    assert await stored(pool, member_id) == {k: v for k, v in FULL.items() if k != "line_user_id"}
    assert event_.reachable == {Channel.EMAIL, Channel.SMS, Channel.DM}  # LINE gone: routing falls back to email


async def test_an_empty_string_removes_the_address_like_null(pool, member_id):
    await ingest(pool, registration(member_id, contact=FULL))
    (event_,) = await ingest(pool, registration(member_id, T0 + timedelta(days=1), contact={"email": ""}))
    assert "email" not in await stored(pool, member_id)
    assert Channel.EMAIL not in event_.reachable


async def test_a_field_left_out_is_unchanged_and_an_empty_contact_changes_nothing(pool, member_id):
    await ingest(pool, registration(member_id, contact=FULL))
    (empty,) = await ingest(pool, registration(member_id, T0 + timedelta(days=1), contact={}))
    assert await stored(pool, member_id) == FULL
    assert empty.reachable == {Channel.EMAIL, Channel.SMS, Channel.LINE, Channel.DM}


async def test_a_registration_without_contact_keeps_reachable_unset_and_stores_nothing(pool, member_id):
    await ingest(pool, registration(member_id, contact=FULL))
    # A consent-only update: the workflow keeps the reachable set it has.
    consent_only = registration(member_id, T0 + timedelta(days=1), consent={"sms": True})
    (forwarded,) = await ingest(pool, consent_only)
    assert forwarded.reachable is None and forwarded.contact is None
    assert await stored(pool, member_id) == FULL
    never = f"{member_id}-new"
    (first,) = await ingest(pool, registration(never))
    assert first.reachable is None and await stored(pool, never) is None


async def test_a_reachable_set_sent_by_an_order_system_never_reaches_the_workflow(pool, member_id):
    claimed = registration(member_id, reachable=["line", "sms"])
    with_contact = registration(member_id, T0 + timedelta(hours=1), contact={"email": "a@example.jp"},
                                reachable=["line"])
    bare, stored_ = await ingest(pool, claimed, with_contact)
    assert bare.reachable is None
    assert stored_.reachable == {Channel.EMAIL}


async def test_registrations_in_one_batch_apply_in_occurred_at_order(pool, member_id):
    later = registration(member_id, T0 + timedelta(hours=2), contact={"line_user_id": None, "phone": "080-1111-2222"})
    earlier = registration(member_id, T0, contact=FULL)
    order = event("order_placed", member_id, T0 + timedelta(hours=1), order_id="o1",
                  lines=[{"sku": "KOSO-30", "role": "main", "days_supply": 30}])
    stripped = await ingest(pool, later, order, earlier)  # delivered out of order
    assert await stored(pool, member_id) == {**{k: v for k, v in FULL.items() if k != "line_user_id"},
                                             "phone": "080-1111-2222"}
    # Every registration that carried a contact reports what the stored contact reaches now.
    assert [e.type for e in stripped] == ["member_registered", "order_placed", "member_registered"]
    assert stripped[0].reachable == stripped[2].reachable == {Channel.EMAIL, Channel.SMS, Channel.DM}
    assert stripped[1] == order


async def test_many_members_in_one_batch_each_get_their_own_changes(pool, member_id):
    other = f"{member_id}-b"
    await ingest(pool, registration(member_id, contact=FULL), registration(other, contact={"email": "b@example.jp"}))
    a, b = await ingest(pool, registration(member_id, T0 + timedelta(days=1), contact={"email": None}),
                        registration(other, T0 + timedelta(days=1), contact={"phone": "090-0"}))
    assert await stored(pool, member_id) == {k: v for k, v in FULL.items() if k != "email"}
    assert await stored(pool, other) == {"email": "b@example.jp", "phone": "090-0"}
    assert (a.reachable, b.reachable) == ({Channel.SMS, Channel.LINE, Channel.DM}, {Channel.EMAIL, Channel.SMS})


async def test_an_erased_members_registration_stores_nothing(pool, member_id):
    await ingest(pool, registration(member_id, contact=FULL))
    await ActivityEnvironment().run(ContactActivities(pool).erase_member,
                                    EraseRequest(member_id=member_id, requested_at=T0))
    await log_erasure(pool, member_id)
    (late,) = await ingest(pool, registration(member_id, T0 + timedelta(days=1), contact={"email": "back@example.jp"}))
    assert await stored(pool, member_id) is None
    assert late.contact is None and late.reachable is None
    assert await store_contacts(pool, {member_id: {"phone": "090-0"}}) == {}
    assert await stored(pool, member_id) is None


async def test_a_member_erased_in_the_same_batch_stores_nothing(pool, member_id):
    erased = event("member_erased", member_id, T0 + timedelta(hours=1))
    stripped = await ingest(pool, registration(member_id, contact=FULL), erased)
    assert await stored(pool, member_id) is None
    assert stripped[0].reachable is None and stripped[1] == erased


async def test_a_registration_racing_an_erasure_never_outlives_it(pool, member_id):
    """The erasure either runs after the store (and deletes it) or before (and the store sees it)."""
    await ingest(pool, registration(member_id, contact=FULL))

    async def erase() -> None:
        await log_erasure(pool, member_id)
        await ActivityEnvironment().run(ContactActivities(pool).erase_member,
                                        EraseRequest(member_id=member_id, requested_at=T0))

    await asyncio.gather(erase(), *(
        store_contacts(pool, {member_id: {"email": f"{n}@example.jp"}}) for n in range(20)))
    assert await stored(pool, member_id) is None


def test_the_preview_strips_contacts_with_the_same_partial_semantics():
    from starter.preview import member_timezone
    from starter.preview import strip_contacts as strip_offline

    m = "m-preview"
    first = registration(m, contact=FULL, timezone="Europe/Berlin")
    consent_only = registration(m, T0 + timedelta(hours=1), consent={"sms": True}, reachable=["line"])
    unlinked = registration(m, T0 + timedelta(hours=2), contact={"line_user_id": None, "email": ""})
    a, b, c = strip_offline([first, consent_only, unlinked])
    assert a.reachable == {Channel.EMAIL, Channel.SMS, Channel.LINE, Channel.DM}
    assert b.reachable is None and c.reachable == {Channel.SMS, Channel.DM}
    assert all(e.contact is None for e in (a, b, c))
    assert member_timezone([a, b, c]) == "Europe/Berlin"  # the later ones leave it out: unchanged
