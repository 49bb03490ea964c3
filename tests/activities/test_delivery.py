"""The delivery activity against real PostgreSQL: one key, one record, one send."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.contacts import ContactActivities, store_contacts
from activities.example_shop import EXAMPLE_SHOP
from activities.delivery import DeliveryActivities
from workflows.events import Channel, Contact
from workflows.messages import DeliveryRequest, EraseRequest
from workflows.shop import ShopConfig
from workflows.touches import Outcome, touch_key

NOW = datetime(2026, 5, 1, 1, 0, tzinfo=timezone.utc)


EMAIL = "hanako@example.jp"


def request(member_id: str, outcome: Outcome = Outcome.SENT, channel: Channel | None = Channel.EMAIL, *,
            scenario: str = "S06", step: str = "upsell", context: dict[str, str] | None = None,
            config_version: int | None = None) -> DeliveryRequest:
    return DeliveryRequest(
        member_id=member_id, key=touch_key(member_id, scenario, step, "o1"), scenario=scenario,
        step=step, occurrence="o1", channel=channel, outcome=outcome, reason="route:email",
        due_at=NOW, decided_at=NOW, upsell=scenario == "S06",
        context={"order_id": "o1", "sku": "KOSO-30"} if context is None else context,
        config_version=config_version,
    )


SAMPLE_INSERT = {"scenario": "S01", "step": "sample_insert", "context": {"order_id": "s1", "sku": "KOSO-SAMPLE"}}
CHURN_CALL = {"scenario": "S12", "step": "call_center_task", "context": {}}
RESUME_CALL = {"scenario": "S07", "step": "resume_call", "context": {"subscription_id": "sub1", "sku": "KOSO-30"}}


@pytest.fixture
async def reachable_member(pool, member_id) -> str:
    await store_contacts(pool, {member_id: Contact(email=EMAIL)})
    return member_id


async def counts(pool, member_id: str) -> tuple[int, int]:
    touches = await pool.fetchval("SELECT count(*) FROM touches WHERE member_id = $1", member_id)
    deliveries = await pool.fetchval("SELECT count(*) FROM deliveries WHERE member_id = $1", member_id)
    return touches, deliveries


async def test_the_same_key_twice_records_and_sends_once(pool, reachable_member):
    member_id = reachable_member
    activities = DeliveryActivities(pool)
    env = ActivityEnvironment()
    first = await env.run(activities.deliver, request(member_id))
    again = await env.run(activities.deliver, request(member_id))
    assert (first.recorded, first.sent) == (True, True)
    assert (again.recorded, again.sent) == (False, True)
    assert again.delivered_at == first.delivered_at
    assert await counts(pool, member_id) == (1, 1)


async def test_concurrent_attempts_with_one_key_send_once(pool, reachable_member):
    member_id = reachable_member
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
    await store_contacts(pool, {member_id: Contact(email=EMAIL)})
    await ActivityEnvironment().run(DeliveryActivities(pool).deliver, request(member_id))
    result = await ActivityEnvironment().run(
        ContactActivities(pool).erase_member, EraseRequest(member_id=member_id, requested_at=NOW))
    assert (result.contacts_deleted, result.deliveries_redacted) == (1, 1)
    assert await pool.fetchval("SELECT count(*) FROM member_contacts WHERE member_id = $1", member_id) == 0
    body = await pool.fetchval("SELECT body::text FROM deliveries WHERE member_id = $1", member_id)
    assert "KOSO" not in body and EMAIL not in body and "定期" not in body


async def test_erasure_cancels_open_call_centre_tasks_and_withdraws_unpacked_inserts(pool, member_id):
    env = ActivityEnvironment()
    await env.run(DeliveryActivities(pool).deliver, request(member_id, channel=Channel.CALL_CENTER, **CHURN_CALL))
    await env.run(DeliveryActivities(pool).deliver, request(member_id, channel=Channel.INSERT, **SAMPLE_INSERT))
    result = await env.run(ContactActivities(pool).erase_member, EraseRequest(member_id=member_id, requested_at=NOW))
    assert (result.call_center_tasks_cancelled, result.inserts_withdrawn) == (1, 1)
    assert await pool.fetchval("SELECT status FROM call_center_tasks WHERE member_id = $1", member_id) == "cancelled"
    assert await pool.fetchval("SELECT count(*) FROM inserts WHERE member_id = $1", member_id) == 0


async def test_a_later_registration_keeps_contact_fields_it_does_not_name(pool, member_id):
    first = await store_contacts(pool, {member_id: Contact(email="a@example.jp", line_user_id="U123")})
    assert first[member_id] == {Channel.EMAIL, Channel.LINE}
    later = await store_contacts(pool, {member_id: Contact(phone="090-0000-0000")})
    assert later[member_id] == {Channel.EMAIL, Channel.LINE, Channel.SMS}


async def test_a_sent_email_stores_its_rendered_message_for_the_members_address(pool, reachable_member):
    await ActivityEnvironment().run(DeliveryActivities(pool).deliver, request(reachable_member))
    row = await pool.fetchrow("SELECT channel, template, body FROM deliveries WHERE member_id = $1", reachable_member)
    body = json.loads(row["body"])
    assert (row["channel"], row["template"], body["recipient"]) == ("email", "S06.upsell", EMAIL)
    assert "定期コース" in body["subject"]
    assert "定期コースのご案内" in body["body"] and "配信停止" in body["body"]


async def test_an_insert_goes_on_the_warehouse_list_for_its_order_and_not_to_the_outbox(pool, member_id):
    # No contact at all: the parcel already has the address.
    result = await ActivityEnvironment().run(
        DeliveryActivities(pool).deliver, request(member_id, channel=Channel.INSERT, **SAMPLE_INSERT))
    assert result.sent
    rows = await pool.fetch("SELECT * FROM inserts WHERE member_id = $1", member_id)
    assert [(r["order_id"], r["scenario"], r["step"], r["insert_code"]) for r in rows] == [
        ("s1", "S01", "sample_insert", "S01-sample-welcome")]
    assert "QRコード" in rows[0]["body"] and rows[0]["attached_to_shipment_at"] is None
    assert await counts(pool, member_id) == (1, 0)


@pytest.mark.parametrize(("touch", "priority", "due_within"), [
    (CHURN_CALL, 1, timedelta(days=1)), (RESUME_CALL, 2, timedelta(days=3))], ids=["S12", "S07"])
async def test_a_call_center_touch_opens_one_task_with_its_priority(pool, member_id, touch, priority, due_within):
    await ActivityEnvironment().run(
        DeliveryActivities(pool).deliver, request(member_id, channel=Channel.CALL_CENTER, **touch))
    rows = await pool.fetch("SELECT * FROM call_center_tasks WHERE member_id = $1", member_id)
    assert [(r["step"], r["status"], r["priority"], r["due_at"]) for r in rows] == [
        (touch["step"], "open", priority, NOW + due_within)]
    assert rows[0]["reason"].startswith("解約兆候" if touch is CHURN_CALL else "定期休止60日")
    assert await counts(pool, member_id) == (1, 0)


@pytest.mark.parametrize(("channel", "touch", "table"), [
    (Channel.EMAIL, {}, "deliveries"), (Channel.INSERT, SAMPLE_INSERT, "inserts"),
    (Channel.CALL_CENTER, CHURN_CALL, "call_center_tasks")], ids=["email", "insert", "call_center"])
async def test_every_channel_keeps_one_row_per_key_however_often_it_runs(pool, reachable_member, channel, touch, table):
    activities = DeliveryActivities(pool)
    for _ in range(2):
        await ActivityEnvironment().run(activities.deliver, request(reachable_member, channel=channel, **touch))
    assert await pool.fetchval(f"SELECT count(*) FROM {table} WHERE member_id = $1", reachable_member) == 1
    assert await pool.fetchval("SELECT count(*) FROM touches WHERE member_id = $1", reachable_member) == 1


@pytest.mark.parametrize("channel", [Channel.EMAIL, Channel.LINE, Channel.SMS, Channel.DM])
async def test_a_member_without_an_address_on_the_channel_fails_for_good_and_nothing_is_recorded(
        pool, reachable_member, channel):
    if channel is Channel.EMAIL:  # erased meanwhile
        await pool.execute("DELETE FROM member_contacts WHERE member_id = $1", reachable_member)
    with pytest.raises(ApplicationError) as failure:
        await ActivityEnvironment().run(DeliveryActivities(pool).deliver, request(reachable_member, channel=channel))
    assert (failure.value.type, failure.value.non_retryable) == ("NoRecipient", True)
    assert f"S06.upsell on {channel.value}" in str(failure.value)
    assert await counts(pool, reachable_member) == (0, 0)


async def test_an_insert_without_its_order_fails_for_good_and_nothing_is_recorded(pool, member_id):
    touch = {**SAMPLE_INSERT, "context": {"sku": "KOSO-SAMPLE"}}
    with pytest.raises(ApplicationError) as failure:
        await ActivityEnvironment().run(
            DeliveryActivities(pool).deliver, request(member_id, channel=Channel.INSERT, **touch))
    assert (failure.value.type, failure.value.non_retryable) == ("NoShipment", True)
    assert await pool.fetchval("SELECT count(*) FROM touches WHERE member_id = $1", member_id) == 0
    assert await pool.fetchval("SELECT count(*) FROM inserts WHERE member_id = $1", member_id) == 0


async def test_a_send_racing_an_erasure_waits_for_it_and_then_finds_no_address(pool, reachable_member):
    import asyncio

    async with pool.acquire() as eraser:
        erasure = eraser.transaction()
        await erasure.start()
        await eraser.execute("DELETE FROM member_contacts WHERE member_id = $1", reachable_member)
        send = asyncio.create_task(ActivityEnvironment().run(DeliveryActivities(pool).deliver, request(reachable_member)))
        await asyncio.sleep(0.3)
        assert not send.done()  # the contact row is locked until the erasure commits
        await erasure.commit()
    with pytest.raises(ApplicationError, match="the member has no email"):
        await send
    assert await counts(pool, reachable_member) == (0, 0)


async def test_the_unsent_outcomes_of_a_wake_up_are_recorded_together_once(pool, member_id):
    from workflows.messages import OutcomeBatch

    batch = OutcomeBatch(member_id=member_id, touches=(
        request(member_id, Outcome.CANCELLED, None, step="a"),
        request(member_id, Outcome.HOLDOUT, None, step="b"),
        request(member_id, Outcome.EXPIRED, None, step="c"),
    ))
    env = ActivityEnvironment()
    first = await env.run(DeliveryActivities(pool).record_outcomes, batch)
    again = await env.run(DeliveryActivities(pool).record_outcomes, batch)  # a retry
    assert (first.recorded, again.recorded) == (3, 0)
    rows = await pool.fetch("SELECT step, outcome FROM touches WHERE member_id = $1 ORDER BY step", member_id)
    assert [(r["step"], r["outcome"]) for r in rows] == [("a", "cancelled"), ("b", "holdout"), ("c", "expired")]
    assert await counts(pool, member_id) == (3, 0)


# --- which shop's message: the configuration version the touch was decided under ---------------


@dataclass(frozen=True)
class Version:
    config: ShopConfig
    templates: Mapping[str, str] = field(default_factory=dict)


class Versions:
    """The versions a worker has read, as the delivery activities ask for them (get, latest)."""

    def __init__(self, versions: dict[int, Version]) -> None:
        self._versions = versions

    def get(self, number: int) -> Version | None:
        return self._versions.get(number)

    def latest(self) -> Version | None:
        return self._versions[max(self._versions)] if self._versions else None


def shop_named(name: str) -> ShopConfig:
    profile = EXAMPLE_SHOP.shop
    sender = profile.sender.model_copy(update={"name": f"{name}（株式会社{name}）"})
    return ShopConfig.model_validate({**EXAMPLE_SHOP.model_dump(),
                                      "shop": profile.model_copy(update={"name": name, "sender": sender})})


VERSIONS = Versions({
    1: Version(shop_named("一号店")),
    2: Version(shop_named("二号店"), {"S06/upsell.j2": "{% extends layout %}{% block subject %}二号店の定期便{% endblock %}"
                                                     "{% block lead %}{{ product }}は定期便で{% endblock %}"
                                                     "{% block link %}{{ urls.subscription }}{% endblock %}"}),
})


async def sent_email(pool, member_id: str) -> dict:
    return json.loads(await pool.fetchval("SELECT body FROM deliveries WHERE member_id = $1", member_id))


async def test_a_touch_is_rendered_with_the_configuration_it_was_decided_under(pool, reachable_member):
    await ActivityEnvironment().run(DeliveryActivities(pool, shops=VERSIONS).deliver,
                                    request(reachable_member, config_version=1))
    email = await sent_email(pool, reachable_member)
    assert "送信者: 一号店（株式会社一号店）" in email["body"] and "二号店" not in email["body"]
    assert "通常購入のままだと" in email["body"]  # version 1 has no template of its own


async def test_a_versions_own_templates_render_its_touches(pool, reachable_member):
    await ActivityEnvironment().run(DeliveryActivities(pool, shops=VERSIONS).deliver,
                                    request(reachable_member, config_version=2))
    email = await sent_email(pool, reachable_member)
    assert email["subject"] == "二号店の定期便" and "ゴールデン酵素 30日分は定期便で" in email["body"]
    assert "送信者: 二号店（株式会社二号店）" in email["body"]


@pytest.mark.parametrize("version", [None, 0])
async def test_a_touch_decided_before_any_configuration_takes_the_newest(pool, reachable_member, version):
    await ActivityEnvironment().run(DeliveryActivities(pool, shops=VERSIONS).deliver,
                                    request(reachable_member, config_version=version))
    assert (await sent_email(pool, reachable_member))["subject"] == "二号店の定期便"


@pytest.mark.parametrize("shops", [None, Versions({})], ids=["none", "empty"])
async def test_with_no_configuration_the_example_shop_sends(pool, reachable_member, shops):
    await ActivityEnvironment().run(DeliveryActivities(pool, shops=shops).deliver,
                                    request(reachable_member, config_version=0))
    assert "送信者: ゴールデンルート健康館" in (await sent_email(pool, reachable_member))["body"]


async def test_a_version_this_worker_has_not_read_is_retried_and_nothing_is_recorded(pool, reachable_member):
    with pytest.raises(ApplicationError) as failure:
        await ActivityEnvironment().run(DeliveryActivities(pool, shops=VERSIONS).deliver,
                                        request(reachable_member, config_version=3))
    assert (failure.value.type, failure.value.non_retryable) == ("UnknownConfigVersion", False)
    assert "configuration version 3 is not known" in str(failure.value)
    assert await counts(pool, reachable_member) == (0, 0)


async def test_a_touch_not_sent_needs_no_configuration_version(pool, member_id):
    result = await ActivityEnvironment().run(DeliveryActivities(pool, shops=VERSIONS).deliver,
                                             request(member_id, Outcome.HOLDOUT, None, config_version=3))
    assert (result.recorded, result.sent) == (True, False)
