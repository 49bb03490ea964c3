"""A signed webhook: push notifications and shops whose own MA tool sends the message.

``POST url`` with the rendered message as JSON — ``{key, member_id, channel, template,
subject, body, recipient, sent_at}`` — and two headers:

    Idempotency-Key:          the touch's key; a receiver that has it already answers 409
    X-Goldenroute-Signature:  t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}." + raw body)>

The signed text is the HTTP ingress's (``starter.ingress.signing``); the timestamp rides
in the same header, as Stripe's does, so one header carries it all and a receiver may
accept several ``v1`` values while a secret is rotated. ``verify_signature`` is what a
receiver runs. Because the receiver dedupes on the key, a retry after an unknown outcome
is safe here: 409 is the earlier attempt's success.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import datetime, timezone

import httpx
import structlog
from pydantic import SecretStr

from activities.render import RenderedMessage
from activities.senders.base import Rejected, Retryable, SendResult
from activities.senders.transport import post, response_id, retry_after
from workflows.events import Channel

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Goldenroute-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
TOLERANCE_SECONDS = 300


class InvalidSignature(Exception):
    def __init__(self, reason: str) -> None:  # "signature" or "timestamp", as the ingress says
        super().__init__(reason)
        self.reason = reason


def sign(secret: str, timestamp: int, raw_body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + raw_body, hashlib.sha256).hexdigest()


def signature_header(secret: str, raw_body: bytes, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={sign(secret, timestamp, raw_body)}"


def verify_signature(secret: str, header: str | None, raw_body: bytes, tolerance: int = TOLERANCE_SECONDS,
                     now: float | None = None) -> int:
    """The signed timestamp, if ``header`` signs ``raw_body`` with ``secret`` within ``tolerance``
    seconds of ``now``; else InvalidSignature("timestamp") or InvalidSignature("signature")."""
    timestamp, signatures = _parse(header or "")
    if timestamp is None:
        raise InvalidSignature("timestamp")
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise InvalidSignature("timestamp")
    expected = sign(secret, timestamp, raw_body).encode()
    if not any(hmac.compare_digest(expected, given.encode("ascii", "replace")) for given in signatures):
        raise InvalidSignature("signature")
    return timestamp


def _parse(header: str) -> tuple[int | None, list[str]]:
    timestamp, signatures = None, []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif name == "v1":
            signatures.append(value.lower())
    return timestamp, signatures


class WebhookSender:
    idempotent = True  # the receiver deduplicates on Idempotency-Key: a retry is safe

    def __init__(self, url: str, secret: str | SecretStr, channel: Channel, *, timeout: float = 10,
                 client: httpx.AsyncClient | None = None) -> None:
        self.channel = channel
        self._url = url
        self._secret = secret if isinstance(secret, SecretStr) else SecretStr(secret)
        self._timeout = timeout
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)

    async def send(self, message: RenderedMessage, key: str, member_id: str) -> SendResult:
        sent_at = datetime.now(timezone.utc)
        raw_body = json.dumps({
            "key": key, "member_id": member_id, "channel": message.channel.value, "template": message.template,
            "subject": message.subject, "body": message.body, "recipient": message.recipient,
            "sent_at": sent_at.isoformat(),
        }, ensure_ascii=False, separators=(",", ":")).encode()
        response = await post(self._client, self._url, vendor="webhook", timeout=self._timeout, content=raw_body,
                              headers={"Content-Type": "application/json; charset=utf-8",
                                       IDEMPOTENCY_HEADER: key,
                                       SIGNATURE_HEADER: signature_header(self._secret.get_secret_value(), raw_body)})
        return _outcome(response, key, member_id)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _outcome(response: httpx.Response, key: str, member_id: str) -> SendResult:
    status = response.status_code
    if 200 <= status < 300 or status == 409:
        log.info("webhook.accepted", key=key, member_id=member_id, status=status)
        return SendResult(vendor_message_id=response_id(response), accepted_at=datetime.now(timezone.utc),
                          duplicate=status == 409)
    if status in (408, 429) or status >= 500:
        wait = retry_after(response.headers.get("Retry-After"))
        log.warning("webhook.retryable", key=key, member_id=member_id, status=status, retry_after=wait)
        raise Retryable(f"webhook:{status}", wait)
    log.warning("webhook.rejected", key=key, member_id=member_id, status=status)
    raise Rejected(f"webhook:{status}")

