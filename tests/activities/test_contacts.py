"""Contact data against real PostgreSQL: a registration updates the stored contact partially.

SPEC §2: a field a registration leaves out keeps its value; an explicit ``null`` (or
``""``) removes the address, and routing falls back to the next channel. The ingress
(`strip_contacts`) stores the changes and tells the workflow only what is reachable.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta, timezone
from functools import reduce
from importlib import resources

import asyncpg
import pytest
from temporalio.testing import ActivityEnvironment

from activities.contacts import FIELDS, ContactActivities, store_contacts
from starter.ingress import strip_contacts
from tests.factories import event
from workflows.events import Channel, MemberRegistered, parse_event
from workflows.lifecycle import apply, new_member
from workflows.messages import EraseRequest

T0 = datetime(2026, 4, 1, 1, 0, tzinfo=timezone.utc)
FULL = {"email": "hanako@example.jp", "phone": "090-1234-5678", "line_user_id": "U4af4980629",
        "postal_address": "東京都千代田区千代田1-1"}


def registration(member_id: str, at: datetime = T0, **fields) -> MemberRegistered:
    return event("member_registered", member_id, at, **fields)


def stamped(member_id: str, event_id: str, at: datetime, contact: dict) -> MemberRegistered:
    """A registration with the event id given (ties on ``occurred_at`` break on it)."""
    return parse_event({"type": "member_registered", "event_id": event_id, "member_id": member_id,
                        "occurred_at": at.isoformat(), "contact": contact})


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


# --- last writer wins per field, whatever the delivery order --------------------------


async def test_a_redelivered_older_registration_does_not_bring_a_removed_address_back(pool, member_id):
    first = stamped(member_id, "r1", T0, FULL)
    unlinked = stamped(member_id, "r2", T0 + timedelta(days=1), {"line_user_id": None})
    await ingest(pool, first)
    await ingest(pool, unlinked)
    (again,) = await ingest(pool, first)  # at least once: the order system delivers it again
    without_line = {k: v for k, v in FULL.items() if k != "line_user_id"}
    assert await stored(pool, member_id) == without_line
    assert again.reachable == {Channel.EMAIL, Channel.SMS, Channel.DM}  # the row as it is now
    (moved,) = await ingest(pool, stamped(member_id, "r3", T0 + timedelta(days=2), {"postal_address": "大阪府"}))
    assert moved.reachable == {Channel.EMAIL, Channel.SMS, Channel.DM}
    assert await stored(pool, member_id) == {**without_line, "postal_address": "大阪府"}


async def test_a_removal_delivered_before_the_older_address_keeps_it_removed(pool, member_id):
    await ingest(pool, stamped(member_id, "r2", T0 + timedelta(days=1), {"email": None}))
    (late,) = await ingest(pool, stamped(member_id, "r1", T0, {"email": "old@example.jp"}))
    assert await stored(pool, member_id) is not None and "email" not in await stored(pool, member_id)
    assert late.reachable == frozenset()


def _history(member_id: str) -> list[MemberRegistered]:
    return [
        stamped(member_id, "r1", T0, FULL),
        stamped(member_id, "r2", T0 + timedelta(days=1), {"line_user_id": None, "phone": "080-2"}),
        stamped(member_id, "r3", T0 + timedelta(days=2), {"postal_address": "大阪府", "email": ""}),
        stamped(member_id, "r4", T0 + timedelta(days=3), {"line_user_id": "U-new", "push_token": "tok"}),
    ]


FINAL = {"phone": "080-2", "postal_address": "大阪府", "line_user_id": "U-new", "push_token": "tok"}


async def test_any_delivery_order_one_by_one_gives_the_same_row_and_the_last_delivered_reports_it(
        pool, member_id):
    for n, order in enumerate(itertools.permutations(range(4))):
        m = f"{member_id}-{n}"
        history = _history(m)
        for i in order:
            (last,) = await ingest(pool, history[i])
        assert await stored(pool, m) == FINAL, order
        # Each registration reports the row after its update, older or not; the newest one
        # reports the final row only if nothing older arrives after it; the workflow folds the
        # per-channel stamps (`reach`), so it converges whatever arrives last (test below).
        assert last.reachable == {Channel.SMS, Channel.DM, Channel.LINE, Channel.PUSH}, order
        (again,) = await ingest(pool, history[order[0]])  # at least once: the first, once more
        assert again.reachable == last.reachable and await stored(pool, m) == FINAL, order


async def test_any_order_within_one_batch_gives_the_same_row(pool, member_id):
    for n, order in enumerate(itertools.permutations(range(4))):
        m = f"{member_id}-{n}"
        history = _history(m)
        forwarded = await ingest(pool, *(history[i] for i in order), history[order[0]])
        assert await stored(pool, m) == FINAL, order
        assert {e.reachable for e in forwarded} == {frozenset({Channel.SMS, Channel.DM, Channel.LINE, Channel.PUSH})}


async def test_batches_split_anywhere_give_the_same_row(pool, member_id):
    history = _history(member_id)
    await ingest(pool, history[3], history[1])
    await ingest(pool, history[2], history[0], history[3])
    assert await stored(pool, member_id) == FINAL
    many = {f"{member_id}-{n}": _history(f"{member_id}-{n}") for n in range(3)}
    await ingest(pool, *(h[3] for h in many.values()), many[f"{member_id}-0"][0])
    await ingest(pool, *(e for h in many.values() for e in reversed(h[:3])))
    for m in many:
        assert await stored(pool, m) == FINAL, m


async def test_a_tie_on_occurred_at_breaks_on_the_event_id_in_code_point_order(pool, member_id):
    # "r-a" > "r-Z" in code points (as the workflow's Stamp compares them), not in most locales.
    upper = stamped(member_id, "r-Z", T0, {"email": "upper@example.jp"})
    lower = stamped(member_id, "r-a", T0, {"email": "lower@example.jp"})
    other = f"{member_id}-b"
    await ingest(pool, lower)
    await ingest(pool, upper)
    await ingest(pool, stamped(other, "r-Z", T0, {"email": "upper@example.jp"}))
    await ingest(pool, stamped(other, "r-a", T0, {"email": "lower@example.jp"}))
    assert await stored(pool, member_id) == await stored(pool, other) == {"email": "lower@example.jp"}
    japanese = f"{member_id}-j"
    await ingest(pool, stamped(japanese, "登録-2", T0, {"phone": "2"}),
                 stamped(japanese, "登録-10", T0, {"phone": "10"}))
    await ingest(pool, stamped(japanese, "登録-10", T0, {"phone": "10"}))
    assert await stored(pool, japanese) == {"phone": "2"}  # "2" > "1": string order, as in Python


async def test_a_late_older_registration_adds_a_field_nobody_newer_set_and_reports_the_final_row(pool, member_id):
    await ingest(pool, stamped(member_id, "r2", T0 + timedelta(days=1), {"line_user_id": None}))
    (late,) = await ingest(pool, stamped(member_id, "r1", T0, {"email": "a@example.jp", "line_user_id": "U1"}))
    assert await stored(pool, member_id) == {"email": "a@example.jp"}  # the email counts, the LINE id stays removed
    assert late.reachable == {Channel.EMAIL}


async def test_the_workflow_converges_to_the_stored_contact_when_an_older_registration_is_late(pool, member_id):
    in_order, late_order = f"{member_id}-in-order", f"{member_id}-late"

    def history(m: str) -> list[MemberRegistered]:
        return [stamped(m, "r1", T0, {"email": "a@example.jp", "line_user_id": "U1"}),
                stamped(m, "r2", T0 + timedelta(days=1), {"line_user_id": None})]

    r1, r2 = history(in_order)
    forwarded_in_order = [*await ingest(pool, r1), *await ingest(pool, r2)]
    r1, r2 = history(late_order)
    forwarded_late = [*await ingest(pool, r2), *await ingest(pool, r1)]
    assert await stored(pool, in_order) == await stored(pool, late_order) == {"email": "a@example.jp"}
    folded_in_order = reduce(apply, forwarded_in_order, new_member(in_order)).profile.reachable
    folded_late = reduce(apply, forwarded_late, new_member(late_order)).profile.reachable
    assert folded_in_order == {Channel.EMAIL}
    assert folded_late == folded_in_order


async def test_a_change_without_a_stamp_applies_and_keeps_the_fields_stamp(pool, member_id):
    await ingest(pool, stamped(member_id, "r2", T0 + timedelta(days=1), {"line_user_id": None}))
    assert await store_contacts(pool, {member_id: {"line_user_id": "U-fixed"}}) == {member_id: {Channel.LINE}}
    await ingest(pool, stamped(member_id, "r1", T0, {"line_user_id": "U-old"}))  # older than r2: no change
    assert await stored(pool, member_id) == {"line_user_id": "U-fixed"}
    await ingest(pool, stamped(member_id, "r3", T0 + timedelta(days=2), {"line_user_id": "U-new"}))
    assert await stored(pool, member_id) == {"line_user_id": "U-new"}


async def test_the_migration_stamps_rows_stored_before_it_with_the_newest_logged_registration(
        database_url, member_id):
    """Rows from before 005 get every field stamped by the member's newest registration that carried a contact.

    On a connection of its own, in a transaction rolled back: the table goes back to 004's
    columns, gets a row and its logged registrations, and the real migration runs on it.
    """
    migration = next(p for p in resources.files("activities.migrations").iterdir()
                     if p.name.startswith("005_")).read_text(encoding="utf-8")
    stamp_columns = ", ".join(f"DROP COLUMN {f}_{part}" for f in FIELDS for part in ("at", "event"))
    conn = await asyncpg.connect(database_url)
    try:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute(f"ALTER TABLE member_contacts {stamp_columns}")
            await conn.execute("INSERT INTO member_contacts (member_id, email) VALUES ($1, 'a@example.jp')", member_id)
            logged = [("r1", T0, '{"reachable": ["email", "line"]}'),
                      ("r2", T0 + timedelta(days=1), '{"reachable": ["email"]}'),
                      ("r3", T0 + timedelta(days=2), '{"reachable": null}')]  # consent only: no contact
            for seq, (event_id, at, payload) in enumerate(logged, start=1):
                await conn.execute(
                    "INSERT INTO member_events (event_id, member_id, seq, type, occurred_at, payload)"
                    " VALUES ($1, $2, $3, 'member_registered', $4, $5::jsonb)",
                    f"{member_id}-{event_id}", member_id, seq, at, payload)
            await conn.execute(migration)
            row = await conn.fetchrow("SELECT * FROM member_contacts WHERE member_id = $1", member_id)
            newest = (T0 + timedelta(days=1), f"{member_id}-r2")
            assert {(row[f"{f}_at"], row[f"{f}_event"]) for f in FIELDS} == {newest}
            (redelivered,) = await strip_contacts(conn, [
                stamped(member_id, f"{member_id}-r1", T0, {"email": "a@example.jp", "line_user_id": "U1"})])
            assert redelivered.reachable == {Channel.EMAIL}  # the LINE id r2 removed stays removed
        finally:
            await transaction.rollback()
    finally:
        await conn.close()


def test_the_preview_applies_contacts_last_writer_wins_per_field_whatever_the_file_order():
    from starter.preview import strip_contacts as strip_offline

    m = "m-preview-order"
    history = _history(m)
    tie_upper = stamped(m, "r-Z", T0 + timedelta(days=4), {"email": "upper@example.jp"})
    tie_lower = stamped(m, "r-a", T0 + timedelta(days=4), {"email": "lower@example.jp", "phone": None})
    events = [*history, tie_upper, tie_lower]
    in_order = {e.event_id: e.reachable for e in strip_offline(events)}
    assert in_order == {
        "r1": {Channel.EMAIL, Channel.SMS, Channel.LINE, Channel.DM},
        "r2": {Channel.EMAIL, Channel.SMS, Channel.DM},
        "r3": {Channel.SMS, Channel.DM},
        "r4": {Channel.SMS, Channel.DM, Channel.LINE, Channel.PUSH},
        "r-Z": {Channel.EMAIL, Channel.SMS, Channel.DM, Channel.LINE, Channel.PUSH},
        "r-a": {Channel.EMAIL, Channel.DM, Channel.LINE, Channel.PUSH},  # "r-a" > "r-Z": applied after it
    }
    for order in itertools.permutations(events):
        stripped = strip_offline([*order, order[0]])  # a registration listed twice changes nothing
        assert [e.event_id for e in stripped] == [e.event_id for e in (*order, order[0])]
        assert all(e.reachable == in_order[e.event_id] and e.contact is None for e in stripped)
