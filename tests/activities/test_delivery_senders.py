"""The delivery activity with real senders against the vendors' stand-ins (issue 11).

Each stand-in speaks its vendor's protocol and counts what it received per touch. The
checks are what an operator would: one message at the vendor per sent touch on LINE
(retry key), never a second one on SMTP or SMS (an attempt of unknown outcome is
``uncertain``), a refused message turns the touch ``suppressed``, and the delivery row
says what happened.
"""

from __future__ import annotations

import asyncio

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.contacts import store_contacts
from activities.delivery import DeliveryActivities
from activities.senders.line import LineSender
from activities.senders.sms import SmsGatewaySender
from tests.activities.test_delivery import request
from worker.senders import ShopSmtp
from worker.standins.line import LineStandIn
from worker.standins.sms import SmsGatewayStandIn
from worker.standins.smtp import SmtpStandIn
from workflows.events import Channel, Contact
from workflows.touches import Outcome

LINE_ID = "U0123456789abcdef0123456789abcdef"


async def delivery_row(pool, key: str):
    return await pool.fetchrow("SELECT state, attempts, vendor_message_id, last_error FROM deliveries"
                               " WHERE idempotency_key = $1", key)


@pytest.fixture
async def member(pool, member_id) -> str:
    await store_contacts(pool, {member_id: Contact(email=f"{member_id}@example.jp", line_user_id=LINE_ID,
                                                   phone="090-1234-5678")})
    return member_id


async def test_a_line_touch_reaches_line_once_and_says_so(pool, member):
    async with LineStandIn("token") as line:
        delivery = DeliveryActivities(pool, senders={Channel.LINE: LineSender(channel_access_token="token",
                                                                              base_url=line.url)})
        touch = request(member, channel=Channel.LINE)
        result = await ActivityEnvironment().run(delivery.deliver, touch)
        again = await ActivityEnvironment().run(delivery.deliver, touch)  # a retried activity
    assert result.sent and again.sent
    assert len(line.received) == 1 and line.received[0].recipient == LINE_ID
    row = await delivery_row(pool, touch.key)
    assert (row["state"], row["attempts"]) == ("sent", 1) and row["vendor_message_id"]


async def test_a_lost_answer_from_line_is_retried_and_line_delivers_once(pool, member):
    async with LineStandIn("token") as line:
        delivery = DeliveryActivities(pool, senders={Channel.LINE: LineSender(channel_access_token="token",
                                                                              base_url=line.url)})
        touch = request(member, channel=Channel.LINE)
        line.faults.lost_answer()  # delivered, then answered 500: as after a network cut
        with pytest.raises(ApplicationError) as retry:
            await ActivityEnvironment().run(delivery.deliver, touch)
        assert not retry.value.non_retryable
        assert (await delivery_row(pool, touch.key))["state"] == "queued"
        result = await ActivityEnvironment().run(delivery.deliver, touch)  # Temporal's retry
    assert result.sent
    assert len(line.received) == 1  # X-Line-Retry-Key: LINE answered 409, no second push
    row = await delivery_row(pool, touch.key)
    assert (row["state"], row["attempts"]) == ("sent", 2)


async def test_a_worker_killed_mid_call_repeats_a_line_push_safely(pool, member):
    async with LineStandIn("token") as line:
        delivery = DeliveryActivities(pool, senders={Channel.LINE: LineSender(channel_access_token="token",
                                                                              base_url=line.url)})
        touch = request(member, channel=Channel.LINE)
        line.faults.slow(seconds=5)  # delivered, answered late: the worker dies before the answer
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ActivityEnvironment().run(delivery.deliver, touch), 1)
        assert (await delivery_row(pool, touch.key))["state"] == "sending"
        result = await ActivityEnvironment().run(delivery.deliver, touch)
    assert result.sent and len(line.received) == 1


async def test_an_smtp_send_interrupted_mid_call_is_uncertain_and_never_sent_again(pool, member):
    async with SmtpStandIn() as smtp:
        delivery = DeliveryActivities(pool, senders={Channel.EMAIL: ShopSmtp(smtp.url)})
        touch = request(member, channel=Channel.EMAIL)
        smtp.faults.slow(seconds=5, stored=True)  # the mail is kept; the worker dies before the answer
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ActivityEnvironment().run(delivery.deliver, touch), 1.5)
        result = await ActivityEnvironment().run(delivery.deliver, touch)
        again = await ActivityEnvironment().run(delivery.deliver, touch)
        await asyncio.sleep(4)  # let the slow session finish storing
    assert not result.sent and not again.sent
    row = await delivery_row(pool, touch.key)
    assert (row["state"], row["last_error"], row["attempts"]) == ("uncertain", "attempt_interrupted", 1)
    assert sum(smtp.deliveries.values()) == 1


async def test_an_email_reaches_the_mail_server_as_the_shop(pool, member):
    async with SmtpStandIn() as smtp:
        delivery = DeliveryActivities(pool, senders={Channel.EMAIL: ShopSmtp(smtp.url)})
        touch = request(member, channel=Channel.EMAIL)
        result = await ActivityEnvironment().run(delivery.deliver, touch)
    assert result.sent
    [mail] = smtp.received
    assert mail.to == f"{member}@example.jp"
    assert mail.sender.endswith("@grk.example>")  # the example shop's sender
    assert mail.message["List-Unsubscribe"].startswith("<https://")
    assert (await delivery_row(pool, touch.key))["state"] == "sent"


async def test_an_sms_whose_answer_is_lost_is_uncertain_not_resent(pool, member):
    async with SmsGatewayStandIn("token") as gateway:
        delivery = DeliveryActivities(pool, senders={Channel.SMS: SmsGatewaySender(gateway.url, "token")})
        touch = request(member, channel=Channel.SMS)
        gateway.faults.lost_answer()  # taken by the gateway, answered 500
        first = await ActivityEnvironment().run(delivery.deliver, touch)
        again = await ActivityEnvironment().run(delivery.deliver, touch)
    assert not first.sent and not again.sent
    assert len(gateway.messages) == 1
    assert (await delivery_row(pool, touch.key))["state"] == "uncertain"


async def test_a_refused_message_fails_and_its_touch_becomes_suppressed(pool, member):
    async with LineStandIn("token") as line:
        delivery = DeliveryActivities(pool, senders={Channel.LINE: LineSender(channel_access_token="token",
                                                                              base_url=line.url)})
        touch = request(member, channel=Channel.LINE)
        line.faults.error(status=400, code="invalid_to")
        with pytest.raises(ApplicationError) as refused:
            await ActivityEnvironment().run(delivery.deliver, touch)
        assert refused.value.non_retryable and refused.value.type == "line_400"
        # The workflow then records the touch suppressed (workflows.member._deliver).
        failed = touch.model_copy(update={"outcome": Outcome.SUPPRESSED, "reason": "delivery_failed:line_400"})
        await ActivityEnvironment().run(delivery.deliver, failed)
    assert not line.received
    assert (await delivery_row(pool, touch.key))["state"] == "failed"
    outcome = await pool.fetchrow("SELECT outcome, reason FROM touches WHERE idempotency_key = $1", touch.key)
    assert tuple(outcome) == ("suppressed", "delivery_failed:line_400")


async def test_a_channel_without_a_sender_keeps_its_messages_in_the_outbox(pool, member):
    delivery = DeliveryActivities(pool, senders={})
    touch = request(member, channel=Channel.EMAIL)
    assert (await ActivityEnvironment().run(delivery.deliver, touch)).sent
    row = await delivery_row(pool, touch.key)
    assert (row["state"], row["attempts"]) == ("queued", 0)


async def test_an_email_carries_the_members_own_one_click_link_in_its_body_and_headers(pool, member):
    from activities.senders.unsubscribe import unsubscribe_url, verify_token

    secret = "a-long-unsubscribe-secret"
    link = lambda member_id, channel: unsubscribe_url("https://crm.grk.example", secret, member_id, channel)  # noqa: E731
    async with SmtpStandIn() as smtp:
        delivery = DeliveryActivities(pool, senders={Channel.EMAIL: ShopSmtp(smtp.url, links=link)}, unsubscribe=link)
        await ActivityEnvironment().run(delivery.deliver, request(member, channel=Channel.EMAIL))
    [mail] = smtp.received
    header = mail.message["List-Unsubscribe"].strip("<>")
    assert header.startswith("https://crm.grk.example/u/") and header in mail.text
    assert verify_token(secret, header.rpartition("/")[2]) == (member, "email")
