"""The delivery activity against real PostgreSQL: one key, one record, one send."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from temporalio.testing import ActivityEnvironment

from activities.contacts import ContactActivities, store_contacts
from activities.delivery import DeliveryActivities
from workflows.events import Channel, Contact
from workflows.messages import DeliveryRequest, EraseRequest
from workflows.touches import Outcome, touch_key

NOW = datetime(2026, 5, 1, 1, 0, tzinfo=timezone.utc)


def request(member_id: str, outcome: Outcome = Outcome.SENT, channel: Channel | None = Channel.EMAIL) -> DeliveryRequest:
    return DeliveryRequest(
        member_id=member_id, key=touch_key(member_id, "S06", "upsell", "o1"), scenario="S06",
        step="upsell", occurrence="o1", channel=channel, outcome=outcome, reason="route:email",
        due_at=NOW, decided_at=NOW, context={"sku": "KOSO-30"},
    )


async def counts(pool, member_id: str) -> tuple[int, int]:
    touches = await pool.fetchval("SELECT count(*) FROM touches WHERE member_id = $1", member_id)
    deliveries = await pool.fetchval("SELECT count(*) FROM deliveries WHERE member_id = $1", member_id)
    return touches, deliveries


async def test_the_same_key_twice_records_and_sends_once(pool, member_id):
    activities = DeliveryActivities(pool)
    env = ActivityEnvironment()
    first = await env.run(activities.deliver, request(member_id))
    again = await env.run(activities.deliver, request(member_id))
    assert (first.recorded, first.sent) == (True, True)
    assert (again.recorded, again.sent) == (False, True)
    assert again.delivered_at == first.delivered_at
    assert await counts(pool, member_id) == (1, 1)


async def test_concurrent_attempts_with_one_key_send_once(pool, member_id):
    import asyncio

    activities = DeliveryActivities(pool)
    env = ActivityEnvironment()
    results = await asyncio.gather(*(env.run(activities.deliver, request(member_id)) for _ in range(5)))
    assert sum(r.recorded for r in results) == 1
    assert await counts(pool, member_id) == (1, 1)


@pytest.mark.parametrize("outcome", [Outcome.SUPPRESSED, Outcome.HOLDOUT, Outcome.EXPIRED, Outcome.CANCELLED])
async def test_touches_not_sent_are_recorded_but_never_reach_a_channel(pool, member_id, outcome):
    result = await ActivityEnvironment().run(DeliveryActivities(pool).deliver, request(member_id, outcome, None))
    assert (result.recorded, result.sent) == (True, False)
    row = await pool.fetchrow("SELECT outcome, delivered_at FROM touches WHERE member_id = $1", member_id)
    assert row["outcome"] == outcome.value and row["delivered_at"] is None
    assert await counts(pool, member_id) == (1, 0)


async def test_erasure_deletes_contacts_and_redacts_messages(pool, member_id):
    await store_contacts(pool, {member_id: Contact(email="hanako@example.jp")})
    await ActivityEnvironment().run(DeliveryActivities(pool).deliver, request(member_id))
    result = await ActivityEnvironment().run(
        ContactActivities(pool).erase_member, EraseRequest(member_id=member_id, requested_at=NOW))
    assert (result.contacts_deleted, result.deliveries_redacted) == (1, 1)
    assert await pool.fetchval("SELECT count(*) FROM member_contacts WHERE member_id = $1", member_id) == 0
    body = await pool.fetchval("SELECT body::text FROM deliveries WHERE member_id = $1", member_id)
    assert "KOSO" not in body


async def test_a_later_registration_keeps_contact_fields_it_does_not_name(pool, member_id):
    first = await store_contacts(pool, {member_id: Contact(email="a@example.jp", line_user_id="U123")})
    assert first[member_id] == {Channel.EMAIL, Channel.LINE}
    later = await store_contacts(pool, {member_id: Contact(phone="090-0000-0000")})
    assert later[member_id] == {Channel.EMAIL, Channel.LINE, Channel.SMS}
