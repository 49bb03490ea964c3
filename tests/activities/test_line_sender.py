"""The LINE sender against the LINE stand-in, which checks every push against LINE's own
OpenAPI document and dedupes by ``X-Line-Retry-Key`` as LINE does: what LINE receives, how
each answer ends a send, and the exactly-once property under retries and lost answers."""

from __future__ import annotations

import asyncio
import random
import socket
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from structlog.testing import capture_logs

from activities.render import RenderedMessage
from activities.senders.base import Rejected, Retryable, SendResult
from activities.senders.line import LineSender, retry_key
from worker.standins import line as standin_module
from worker.standins.line import LineStandIn
from worker.standins.line_contract import find_document

TOKEN = "line-channel-token-for-tests"
KEY = "m-0001:S01:welcome_offer:0"
HANAKO = "U4af4980629aa00bb11cc22dd33ee44ff"
DOCUMENT = find_document()


THANKS = "山田様、ご購入ありがとうございます。"


def line_message(body: str = THANKS, recipient: str | None = HANAKO) -> RenderedMessage:
    return RenderedMessage(channel="line", template="S01.welcome_offer", body=body, recipient=recipient)


@pytest.fixture
async def line():
    assert DOCUMENT is not None, "LINE's OpenAPI document (shared/vendor/line-openapi/messaging-api.yml) is missing"
    async with LineStandIn(TOKEN, openapi=DOCUMENT) as server:
        assert server.contract is not None
        yield server


@pytest.fixture
async def sender(line):
    sender = LineSender(channel_access_token=TOKEN, base_url=line.url, timeout=2)
    yield sender
    await sender.aclose()


def statuses(line: LineStandIn) -> list[int]:
    return [request.status for request in line.requests]


async def test_the_push_as_line_receives_it(line, sender):
    result = await sender.send(line_message(), KEY, "m-0001")

    [request] = line.requests
    assert request.path == "/v2/bot/message/push"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"].startswith("application/json")
    assert request.headers["x-line-retry-key"] == retry_key(KEY)
    assert request.json() == {"to": HANAKO, "messages": [{"type": "text", "text": THANKS}]}
    [delivered] = line.deliveries_to(HANAKO)
    assert (delivered.text, delivered.retry_key) == (THANKS, retry_key(KEY))
    assert result.vendor_message_id == delivered.sent_messages[0]["id"]
    assert result.duplicate is False and result.accepted_at.tzinfo is not None


def test_the_retry_key_is_a_uuid_fixed_by_the_touch_key():
    key = uuid.UUID(retry_key(KEY))
    assert key.version == 5 and str(key) == retry_key(KEY)
    assert retry_key(KEY) == retry_key(KEY) != retry_key(KEY.replace(":0", ":1"))


async def test_a_send_repeated_with_the_same_key_is_delivered_once(line, sender):
    first = await sender.send(line_message(), KEY, "m-0001")
    second = await sender.send(line_message(), KEY, "m-0001")

    assert (first.duplicate, second.duplicate) == (False, True)
    assert second.vendor_message_id == first.vendor_message_id
    assert statuses(line) == [200, 409]
    assert len(line.deliveries_for(retry_key(KEY))) == 1


async def test_a_500_is_retryable_and_the_retry_delivers_once(line, sender):
    line.faults.error()
    with pytest.raises(Retryable) as failed:
        await sender.send(line_message(), KEY, "m-0001")
    assert failed.value.reason.startswith("line:500")
    assert line.received == []

    result = await sender.send(line_message(), KEY, "m-0001")
    assert result.duplicate is False
    assert statuses(line) == [500, 200]
    assert len(line.deliveries_for(retry_key(KEY))) == 1


async def test_a_lost_answer_then_a_retry_is_exactly_one_delivery(line, sender):
    line.faults.lost_answer()  # LINE delivers, then the answer is lost: the client sees a 500
    with pytest.raises(Retryable):
        await sender.send(line_message(), KEY, "m-0001")
    assert len(line.deliveries_for(retry_key(KEY))) == 1

    result = await sender.send(line_message(), KEY, "m-0001")
    assert result.duplicate is True
    assert result.vendor_message_id == line.received[0].sent_messages[0]["id"]
    assert statuses(line) == [500, 409]
    assert len(line.deliveries_for(retry_key(KEY))) == 1


async def test_a_timeout_is_retryable_and_the_retry_is_not_a_second_delivery(line):
    sender = LineSender(channel_access_token=TOKEN, base_url=line.url, timeout=0.2)
    line.faults.slow(seconds=5)  # delivered, but answered after the sender gave up
    try:
        with pytest.raises(Retryable) as failed:
            await sender.send(line_message(), KEY, "m-0001")
        assert failed.value.reason == "line:timeout"
        result = await sender.send(line_message(), KEY, "m-0001")
    finally:
        await sender.aclose()
    assert result.duplicate is True
    assert len(line.deliveries_for(retry_key(KEY))) == 1


async def test_429_is_retryable_after_what_line_asks(line, sender):
    line.faults.throttle(retry_after=7)
    with pytest.raises(Retryable) as failed:
        await sender.send(line_message(), KEY, "m-0001")
    assert failed.value.retry_after == 7
    assert failed.value.reason.startswith("line:429:")
    assert line.received == []


async def test_an_outage_is_retryable_until_it_ends(line, sender):
    line.outage = True
    with pytest.raises(Retryable) as failed:
        await sender.send(line_message(), KEY, "m-0001")
    assert failed.value.reason.startswith("line:503")
    line.outage = False
    assert (await sender.send(line_message(), KEY, "m-0001")).duplicate is False
    assert len(line.received) == 1


async def test_a_refused_connection_is_retryable():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    sender = LineSender(channel_access_token=TOKEN, base_url=f"http://127.0.0.1:{port}", timeout=1)
    try:
        with pytest.raises(Retryable) as failed:
            await sender.send(line_message(), KEY, "m-0001")
    finally:
        await sender.aclose()
    assert failed.value.reason == "line:unreachable"


async def test_an_invalid_recipient_is_rejected_naming_the_status(line, sender):
    with pytest.raises(Rejected) as refused:
        await sender.send(line_message(recipient="hanako@example.jp"), KEY, "m-0001")
    assert refused.value.reason.startswith("line:400:The property, 'to', in the request body is invalid")
    assert line.received == []


async def test_another_token_is_rejected_401(line):
    sender = LineSender(channel_access_token="revoked", base_url=line.url)
    try:
        with pytest.raises(Rejected) as refused:
            await sender.send(line_message(), KEY, "m-0001")
    finally:
        await sender.aclose()
    assert refused.value.reason.startswith("line:401:Authentication failed")
    assert line.received == []


async def test_a_403_is_rejected(line, sender):
    line.faults.error(status=403, code="Access to this API is not available for your account")
    with pytest.raises(Rejected) as refused:
        await sender.send(line_message(), KEY, "m-0001")
    assert refused.value.reason == "line:403:Access to this API is not available for your account"


async def test_a_text_over_5000_utf16_units_is_rejected_without_a_request(line, sender):
    with pytest.raises(Rejected) as refused:
        await sender.send(line_message(body="🍎" * 2501), KEY, "m-0001")  # 5,002 UTF-16 units
    assert refused.value.reason == "line:text_too_long:5002>5000"
    with pytest.raises(Rejected):
        await sender.send(line_message(recipient=None), KEY, "m-0001")
    assert line.requests == []

    longest = "🍎" * 2500  # exactly 5,000 units: LINE takes it
    await sender.send(line_message(body=longest), KEY, "m-0001")
    assert line.received[0].text == longest


async def test_the_standin_refuses_what_the_openapi_document_does_not_accept(line):
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Line-Retry-Key": str(uuid.uuid4())}
    push = f"{line.url}/v2/bot/message/push"
    async with httpx.AsyncClient() as client:
        no_to = await client.post(push, headers=headers, json={"messages": [{"type": "text", "text": "x"}]})
        no_text = await client.post(push, headers=headers, json={"to": HANAKO, "messages": [{"type": "text"}]})
        no_messages = await client.post(push, headers=headers, json={"to": HANAKO, "messages": []})
        bad_key = await client.post(push, headers={**headers, "X-Line-Retry-Key": "retry-1"},
                                    json={"to": HANAKO, "messages": [{"type": "text", "text": "x"}]})
        long_text = await client.post(push, headers=headers,
                                      json={"to": HANAKO, "messages": [{"type": "text", "text": "あ" * 5001}]})

    assert no_to.status_code == 400
    assert no_to.json() == {"message": "The request body has 1 error(s)",
                            "details": [{"message": "must be specified", "property": "to"}]}
    assert no_text.status_code == 400 and no_text.json()["details"][0]["property"] == "messages[0].text"
    assert no_messages.status_code == 400 and no_messages.json()["details"][0]["property"] == "messages"
    assert bad_key.status_code == 400 and "X-Line-Retry-Key" in bad_key.json()["message"]
    assert long_text.status_code == 400 and "5000" in long_text.json()["details"][0]["message"]
    assert all(answer.headers["x-line-request-id"] for answer in (no_to, no_text, bad_key))
    assert line.received == []


async def test_a_retry_key_is_kept_24_hours():
    now = [datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)]
    async with LineStandIn(TOKEN, openapi=DOCUMENT, clock=lambda: now[0]) as line:
        sender = LineSender(channel_access_token=TOKEN, base_url=line.url)
        try:
            await sender.send(line_message(), KEY, "m-0001")
            now[0] += timedelta(hours=23, minutes=59)
            assert (await sender.send(line_message(), KEY, "m-0001")).duplicate is True
            now[0] += timedelta(minutes=2)  # LINE has forgotten the key: the delivery activity's record must not
            assert (await sender.send(line_message(), KEY, "m-0001")).duplicate is False
        finally:
            await sender.aclose()
    assert len(line.deliveries_for(retry_key(KEY))) == 2


async def test_without_the_document_the_standin_answers_unchecked(monkeypatch):
    monkeypatch.setattr(standin_module, "find_document", lambda: None)
    with capture_logs() as events:
        async with LineStandIn(TOKEN) as line, httpx.AsyncClient() as client:
            answer = await client.post(f"{line.url}/v2/bot/message/push", headers={"Authorization": f"Bearer {TOKEN}"},
                                       json={"to": "anyone", "messages": [{"type": "text"}]})
    assert line.contract is None and answer.status_code == 200
    assert [event["event"] for event in events] == ["line_standin.unchecked"]
    with pytest.raises(FileNotFoundError):
        async with LineStandIn(TOKEN, openapi="/nonexistent/messaging-api.yml"):
            pass


async def test_neither_the_token_nor_the_recipient_is_logged(line, sender):
    with capture_logs() as events:
        await sender.send(line_message(), KEY, "m-0001")
        await sender.send(line_message(), KEY, "m-0001")
        line.faults.error()
        with pytest.raises(Retryable):
            await sender.send(line_message(), "m-0001:S01:welcome_offer:1", "m-0001")
        with pytest.raises(Rejected):
            await sender.send(line_message(recipient="hanako@example.jp"), KEY, "m-0001")
    assert [event["event"] for event in events] == ["line.sent", "line.sent", "line.retryable", "line.rejected"]
    assert all(event["key"] and "status" in event for event in events)
    assert events[0]["request_id"] == line.requests[0].request_id
    logged = repr(events)
    assert TOKEN not in logged and HANAKO not in logged and "hanako@example.jp" not in logged


async def test_a_storm_of_retries_delivers_each_touch_exactly_once(line):
    """1,000 touches through injected 500s, 429s, lost answers and timeouts, each retried until it
    succeeds: LINE receives every one exactly once."""
    rng = random.Random(11)
    sender = LineSender(channel_access_token=TOKEN, base_url=line.url, timeout=0.2)
    gate = asyncio.Semaphore(10)
    retried = 0

    def inject() -> None:
        roll = rng.random()
        if roll < 0.15:
            line.faults.error()
        elif roll < 0.25:
            line.faults.throttle(retry_after=0)
        elif roll < 0.40:
            line.faults.lost_answer()
        elif roll < 0.41:
            line.faults.slow(seconds=0.4)

    async def deliver(member: int) -> SendResult:
        nonlocal retried
        key = f"m-{member:04d}:S03:run_out_reminder:0"
        message = line_message(body=f"会員{member}様、そろそろお手元の商品がなくなる頃です。",
                               recipient=f"U{member:032x}")
        async with gate:
            for _ in range(100):
                inject()
                try:
                    return await sender.send(message, key, f"m-{member:04d}")
                except Retryable:
                    retried += 1
            raise AssertionError(f"{key} never got through")

    try:
        results = await asyncio.gather(*(deliver(member) for member in range(1000)))
    finally:
        await sender.aclose()

    keys = [f"m-{member:04d}:S03:run_out_reminder:0" for member in range(1000)]
    assert {len(line.deliveries_for(retry_key(key))) for key in keys} == {1}
    assert len(line.received) == 1000
    assert retried > 100 and sum(result.duplicate for result in results) > 50  # the faults did happen
    assert {push.recipient for push in line.received} == {f"U{member:032x}" for member in range(1000)}
