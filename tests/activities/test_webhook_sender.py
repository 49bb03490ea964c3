"""The signed webhook sender against the receiver stand-in: real HTTP, counted per Idempotency-Key."""

from __future__ import annotations

import json
import time
from datetime import datetime

import httpx
import pytest

from activities.render import RenderedMessage
from activities.senders.base import Rejected, Retryable
from activities.senders.webhook import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    InvalidSignature,
    WebhookSender,
    sign,
    signature_header,
    verify_signature,
)
from starter.ingress import signing as ingress_signing
from workflows.events import Channel
from workflows.touches import touch_key
from worker.standins.webhook import WebhookStandIn

SECRET = "test-webhook-secret"
KEY = touch_key("m-push", "S04", "usage_tips", "o1")
PUSH = RenderedMessage(channel=Channel.PUSH, template="S04.usage_tips", subject="使い方のコツ",
                       body="毎朝コップ一杯の水と一緒にどうぞ。", recipient="device-token-1")


@pytest.fixture
async def receiver():
    async with WebhookStandIn(SECRET) as server:
        yield server


@pytest.fixture
async def sender(receiver):
    sender = WebhookSender(receiver.webhook_url, SECRET, Channel.PUSH, timeout=2)
    yield sender
    await sender.aclose()


async def test_the_receiver_verifies_the_signature_and_gets_the_whole_message(receiver, sender):
    result = await sender.send(PUSH, KEY, "m-push")
    body = receiver.received[KEY]
    assert {name: body[name] for name in ("key", "member_id", "channel", "template", "subject", "body", "recipient")} \
        == {"key": KEY, "member_id": "m-push", "channel": "push", "template": "S04.usage_tips",
            "subject": "使い方のコツ", "body": PUSH.body, "recipient": "device-token-1"}
    assert abs(time.time() - datetime.fromisoformat(body["sent_at"]).timestamp()) < 60
    assert result.vendor_message_id == body["id"] and not result.duplicate
    assert (receiver.deliveries(KEY), receiver.attempts(KEY), sum(receiver.refused.values())) == (1, 1, 0)


def test_a_signature_verifies_and_a_tampered_body_or_a_stale_timestamp_does_not():
    raw = b'{"key":"k"}'
    header = signature_header(SECRET, raw, timestamp=1_800_000_000)
    assert verify_signature(SECRET, header, raw, now=1_800_000_100) == 1_800_000_000
    for secret, body, now, reason in [(SECRET, b'{"key":"K"}', 1_800_000_100, "signature"),
                                      ("another secret", raw, 1_800_000_100, "signature"),
                                      (SECRET, raw, 1_800_000_301, "timestamp"),
                                      (SECRET, raw, 1_799_999_699, "timestamp")]:
        with pytest.raises(InvalidSignature) as refused:
            verify_signature(secret, header, body, now=now)
        assert refused.value.reason == reason
    for broken in (None, "", "v1=" + sign(SECRET, 1_800_000_000, raw), "t=1800000000", "t=x,v1=00"):
        with pytest.raises(InvalidSignature):
            verify_signature(SECRET, broken, raw, now=1_800_000_100)


def test_a_receiver_accepts_either_signature_while_the_secret_is_rotated():
    raw, t = b"{}", 1_800_000_000
    header = f"t={t},v1={sign('old secret', t, raw)},v1={sign(SECRET, t, raw)}"
    assert verify_signature(SECRET, header, raw, now=t) == verify_signature("old secret", header, raw, now=t) == t


def test_the_signed_text_is_the_ingresss():
    assert sign(SECRET, 1_800_000_000, b"{}") == ingress_signing.sign(SECRET, 1_800_000_000, b"{}")


async def test_the_stand_in_refuses_a_tampered_body_and_a_stale_timestamp(receiver):
    raw = json.dumps({"key": KEY}).encode()
    tampered = json.dumps({"key": KEY, "body": "extra"}).encode()
    stale = signature_header(SECRET, raw, timestamp=int(time.time()) - 301)
    async with httpx.AsyncClient() as http:
        for body, header, reason in [(tampered, signature_header(SECRET, raw), "signature"), (raw, stale, "timestamp")]:
            answer = await http.post(receiver.webhook_url, content=body,
                                     headers={SIGNATURE_HEADER: header, IDEMPOTENCY_HEADER: KEY})
            assert (answer.status_code, answer.json()) == (401, {"error": reason})
    assert receiver.received == {} and receiver.refused == {"signature": 1, "timestamp": 1}


async def test_a_sender_with_another_secret_is_rejected(receiver):
    sender = WebhookSender(receiver.webhook_url, "not the secret", Channel.PUSH)
    with pytest.raises(Rejected) as refused:
        await sender.send(PUSH, KEY, "m-push")
    await sender.aclose()
    assert refused.value.reason == "webhook:401" and receiver.deliveries(KEY) == 0


async def test_a_repeat_is_deduplicated_by_the_receiver_and_reads_as_a_duplicate_success(receiver, sender):
    first = await sender.send(PUSH, KEY, "m-push")
    again = await sender.send(PUSH, KEY, "m-push")
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.vendor_message_id == first.vendor_message_id
    assert (receiver.attempts(KEY), receiver.deliveries(KEY)) == (2, 1)


async def test_a_retry_after_a_lost_answer_is_safe_here(receiver, sender):
    """Unlike SMS, the receiver dedupes on the Idempotency-Key: the retry reads as a duplicate."""
    receiver.faults.lost_answer()
    with pytest.raises(Retryable) as retry:
        await sender.send(PUSH, KEY, "m-push")
    assert retry.value.reason == "webhook:500"
    assert (await sender.send(PUSH, KEY, "m-push")).duplicate
    assert (receiver.attempts(KEY), receiver.deliveries(KEY)) == (2, 1)


async def test_a_500_is_retryable_and_delivers_nothing(receiver, sender):
    receiver.faults.error()
    with pytest.raises(Retryable) as retry:
        await sender.send(PUSH, KEY, "m-push")
    assert (retry.value.reason, retry.value.retry_after) == ("webhook:500", None)
    assert receiver.deliveries(KEY) == 0
    assert not (await sender.send(PUSH, KEY, "m-push")).duplicate


async def test_a_429_is_retryable_after_the_receivers_retry_after(receiver, sender):
    receiver.faults.throttle(retry_after=3)
    with pytest.raises(Retryable) as retry:
        await sender.send(PUSH, KEY, "m-push")
    assert (retry.value.reason, retry.value.retry_after) == ("webhook:429", 3)


@pytest.mark.parametrize("status", [400, 404, 410, 422])
async def test_another_4xx_is_rejected_naming_the_status(receiver, sender, status):
    receiver.faults.error(status=status)
    with pytest.raises(Rejected) as refused:
        await sender.send(PUSH, KEY, "m-push")
    assert refused.value.reason == f"webhook:{status}"


async def test_an_answer_slower_than_the_timeout_is_retryable_and_the_retry_a_duplicate(receiver):
    sender = WebhookSender(receiver.webhook_url, SECRET, Channel.PUSH, timeout=0.3)
    receiver.faults.slow(seconds=5)
    with pytest.raises(Retryable) as retry:
        await sender.send(PUSH, KEY, "m-push")
    assert retry.value.reason == "webhook:timeout"
    assert (await sender.send(PUSH, KEY, "m-push")).duplicate
    await sender.aclose()
    assert receiver.deliveries(KEY) == 1
