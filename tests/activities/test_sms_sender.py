"""The SMS gateway sender against the gateway stand-in: real HTTP, counted per client_ref."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from structlog.testing import capture_logs

from activities.render import RenderedMessage
from activities.senders.base import Rejected, Retryable
from activities.senders.sms import SmsGatewaySender, client_ref, segments, to_e164
from activities.senders.transport import retry_after
from workflows.events import Channel
from workflows.touches import touch_key
from worker.standins.sms import SmsGatewayStandIn

TOKEN = "test-sms-token"
PHONE = "090-1234-5678"
KEY = touch_key("m-sms", "S07", "resume_link", "o1")
KANA = "あ"


def sms(body: str = "【サンプル商店】定期便のお届けを再開できます。", recipient: str | None = PHONE) -> RenderedMessage:
    return RenderedMessage(channel=Channel.SMS, template="S07.resume_link", body=body, recipient=recipient)


@pytest.fixture
async def gateway():
    async with SmsGatewayStandIn(TOKEN) as server:
        yield server


@pytest.fixture
async def sender(gateway):
    sender = SmsGatewaySender(gateway.url, TOKEN, sender_id="SampleShop", timeout=2)
    yield sender
    await sender.aclose()


async def test_the_gateway_receives_an_e164_number_the_text_and_the_touchs_reference(gateway, sender):
    result = await sender.send(sms(), KEY, "m-sms")
    [message] = gateway.messages
    assert (message.to, message.text, message.sender_id) == ("+819012345678", sms().body, "SampleShop")
    assert message.client_ref == client_ref(KEY) and "m-sms" not in message.client_ref
    assert result.vendor_message_id == message.id and not result.duplicate
    assert gateway.deliveries(client_ref(KEY)) == 1


async def test_another_token_is_refused_by_the_gateway_and_nothing_is_sent(gateway):
    sender = SmsGatewaySender(gateway.url, "not-the-token")
    with pytest.raises(Rejected) as refused:
        await sender.send(sms(), KEY, "m-sms")
    await sender.aclose()
    assert refused.value.reason == "sms:401:unauthorized" and gateway.messages == []


@pytest.mark.parametrize("number, e164", [
    ("090-1234-5678", "+819012345678"),
    ("０８０－１２３４－５６７８", "+818012345678"),  # typed on a Japanese keyboard
    ("070 1234 5678", "+817012345678"),
    ("+819012345678", "+819012345678"),
    ("+81 (0)90-1234-5678", "+819012345678"),
    ("+14155550123", "+14155550123"),
    ("03-1234-5678", None),  # a landline takes no SMS
    ("090-1234-567", None),
    ("", None),
])
def test_japanese_numbers_become_e164(number, e164):
    assert to_e164(number) == e164


@pytest.mark.parametrize("length, count", [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (660, 10)])
async def test_segments_of_japanese_text_as_the_carrier_splits_it(gateway, sender, length, count):
    body = KANA * length
    await sender.send(sms(body), KEY, "m-sms")
    assert segments(body) == count == gateway.messages[-1].segments


def test_an_emoji_outside_the_bmp_counts_twice():
    assert segments(KANA * 68 + "😀") == 1 and segments(KANA * 69 + "😀") == 2


@pytest.mark.parametrize("message, reason", [
    (sms(KANA * 661), "sms:too_long:661"),
    (sms(recipient="03-1234-5678"), "sms:recipient"),
    (sms(recipient=None), "sms:recipient"),
])
async def test_a_message_the_gateway_cannot_take_is_rejected_before_any_request(gateway, sender, message, reason):
    with pytest.raises(Rejected) as refused:
        await sender.send(message, KEY, "m-sms")
    assert refused.value.reason == reason and gateway.requests == 0


async def test_a_500_is_retryable_and_sent_nothing(gateway, sender):
    gateway.faults.error()
    with pytest.raises(Retryable) as retry:
        await sender.send(sms(), KEY, "m-sms")
    assert (retry.value.reason, retry.value.retry_after) == ("sms:500", None)
    assert gateway.deliveries(client_ref(KEY)) == 0


async def test_a_429_is_retryable_after_the_gateways_retry_after(gateway, sender):
    gateway.faults.throttle(retry_after=7)
    with pytest.raises(Retryable) as retry:
        await sender.send(sms(), KEY, "m-sms")
    assert (retry.value.reason, retry.value.retry_after) == ("sms:429", 7)
    await sender.send(sms(), KEY, "m-sms")
    assert gateway.deliveries(client_ref(KEY)) == 1


async def test_a_400_is_rejected_naming_the_status_and_the_gateways_code(gateway, sender):
    gateway.faults.error(status=400, code="invalid_sender_id")
    with pytest.raises(Rejected) as refused:
        await sender.send(sms(), KEY, "m-sms")
    assert refused.value.reason == "sms:400:invalid_sender_id"


async def test_the_gateways_own_validation_is_a_rejection_naming_its_code(gateway, sender):
    with pytest.raises(Rejected) as refused:
        await sender.send(sms(""), KEY, "m-sms")
    assert refused.value.reason == "sms:422:invalid_parameter" and gateway.messages == []


async def test_a_retry_after_an_answer_lost_sends_the_sms_twice(gateway, sender):
    """Why SMS is at most once only if the delivery activity refuses to repeat an attempt
    whose outcome it does not know (SPEC §5, the lead's wiring).

    The gateway took the message and handed it to the carrier, then answered 500. The sender
    cannot tell this from a 500 that took nothing (``test_a_500_is_retryable_and_sent_nothing``):
    both are ``Retryable("sms:500")``. The gateway keeps no idempotency key — ``client_ref`` is
    echoed, never deduplicated — so a retry is a second SMS on the member's phone. Only
    ``sms:unreachable`` (no connection made) and ``sms:429`` (refused before it was taken) are
    safe to repeat; a 5xx, ``sms:timeout`` or ``sms:connection`` must end ``uncertain``.
    """
    gateway.faults.lost_answer()
    with pytest.raises(Retryable) as retry:
        await sender.send(sms(), KEY, "m-sms")
    assert retry.value.reason == "sms:500"
    assert gateway.deliveries(client_ref(KEY)) == 1  # already on the phone

    await sender.send(sms(), KEY, "m-sms")  # what a blind retry does
    assert gateway.deliveries(client_ref(KEY)) == 2


async def test_an_answer_slower_than_the_timeout_is_retryable_though_the_sms_went_out(gateway):
    sender = SmsGatewaySender(gateway.url, TOKEN, timeout=0.3)
    gateway.faults.slow(seconds=5)
    with pytest.raises(Retryable) as retry:
        await sender.send(sms(), KEY, "m-sms")
    await sender.aclose()
    assert retry.value.reason == "sms:timeout" and gateway.deliveries(client_ref(KEY)) == 1


async def test_a_gateway_that_does_not_answer_the_connection_is_unreachable():
    async with SmsGatewayStandIn(TOKEN) as gateway:
        url = gateway.url
    sender = SmsGatewaySender(url, TOKEN, timeout=2)
    with pytest.raises(Retryable) as retry:
        await sender.send(sms(), KEY, "m-sms")
    await sender.aclose()
    assert retry.value.reason == "sms:unreachable"


async def test_neither_the_phone_number_nor_the_token_is_logged(gateway, sender, caplog):
    caplog.set_level(logging.DEBUG)
    gateway.faults.error(status=400, code="bad")
    gateway.faults.throttle()
    with capture_logs() as events:
        for _ in range(2):
            with pytest.raises((Rejected, Retryable)):
                await sender.send(sms(), KEY, "m-sms")
        await sender.send(sms(), KEY, "m-sms")
        with pytest.raises(Rejected):
            await sender.send(sms(recipient="03-1234-5678"), KEY, "m-sms")
    logged = repr(events) + caplog.text + repr(sender.__dict__)
    assert len(events) == 4
    for secret in ("1234-5678", "12345678", TOKEN):
        assert secret not in logged


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2026, 5, 1, tzinfo=timezone.utc)
    assert retry_after("12") == 12 and retry_after(None) is None and retry_after("soon") is None
    assert retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
