"""SMS through an HTTP gateway, in the shape the Japanese ones share.

``POST {base_url}/v1/messages`` with ``Authorization: Bearer <token>`` and a JSON body
``{"to": "+819012345678", "text": …, "client_ref": …}``; 200/201/202 answer
``{"id": …}``. Carriers count every character in UCS-2, half-width ones too: one message
holds 70, a concatenated one 67 per segment, and the gateways take at most 660.

These gateways keep no idempotency key: ``client_ref`` is only echoed back in the answer
and the delivery reports, so an operator can match them to the touch. A request the gateway
may have received — a timeout, a dropped connection, a 5xx, which some gateways answer after
handing the message to the carrier — can therefore not be repeated safely; the sender says
``Retryable`` and the reason tells which case it was (``activities.senders.transport``),
and the delivery activity decides (SPEC §5: at most once, ``uncertain`` for an operator).
The phone number and the token are never logged.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from datetime import datetime, timezone

import httpx
import structlog
from pydantic import SecretStr

from activities.render import RenderedMessage
from activities.senders.base import Rejected, Retryable, SendResult
from activities.senders.transport import error_code, post, response_id, retry_after
from workflows.events import Channel

log = structlog.get_logger(__name__)

MESSAGES_PATH = "/v1/messages"
MAX_LENGTH = 660
SINGLE_SEGMENT = 70
CONCATENATED_SEGMENT = 67
ACCEPTED = frozenset({200, 201, 202})

# 070/080/090 mobile numbers (and 060, assigned for them); hyphens, spaces and brackets dropped.
_DOMESTIC_MOBILE = re.compile(r"(?:0|\+810)([6789]0\d{8})", re.ASCII)  # +81 0… is written too
_E164 = re.compile(r"\+[1-9]\d{7,14}", re.ASCII)
_SEPARATORS = str.maketrans("", "", " -()‐‑–—―−ー")


def to_e164(number: str) -> str | None:
    """``090-1234-5678`` → ``+819012345678``; an E.164 number as it is; None for anything else."""
    number = unicodedata.normalize("NFKC", number).translate(_SEPARATORS)
    if mobile := _DOMESTIC_MOBILE.fullmatch(number):
        return f"+81{mobile.group(1)}"
    return number if _E164.fullmatch(number) else None


def length(text: str) -> int:
    """Characters as the carriers count them: UTF-16 code units (an emoji outside the BMP is two)."""
    return len(text.encode("utf-16-le")) // 2


def segments(text: str) -> int:
    """How many SMS the carrier splits ``text`` into (and the shop pays for)."""
    units = length(text)
    return 1 if units <= SINGLE_SEGMENT else -(-units // CONCATENATED_SEGMENT)


def client_ref(key: str) -> str:
    """The gateway's reference for a touch: fixed by its key, and naming no member."""
    return "gr-" + hashlib.sha256(key.encode()).hexdigest()[:32]


class SmsGatewaySender:
    channel = Channel.SMS

    def __init__(self, base_url: str, api_token: str | SecretStr, *, sender_id: str | None = None,
                 timeout: float = 10, client: httpx.AsyncClient | None = None) -> None:
        self._url = base_url.rstrip("/") + MESSAGES_PATH
        self._token = api_token if isinstance(api_token, SecretStr) else SecretStr(api_token)
        self._sender_id = sender_id
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._timeout = timeout

    async def send(self, message: RenderedMessage, key: str, member_id: str) -> SendResult:
        ref = client_ref(key)
        to = to_e164(message.recipient or "")
        if to is None:
            log.warning("sms.rejected", client_ref=ref, member_id=member_id, reason="recipient")
            raise Rejected("sms:recipient")
        if (units := length(message.body)) > MAX_LENGTH:
            log.warning("sms.rejected", client_ref=ref, member_id=member_id, reason="too_long", length=units)
            raise Rejected(f"sms:too_long:{units}")
        request = {"to": to, "text": message.body, "client_ref": ref}
        if self._sender_id:
            request["from"] = self._sender_id
        response = await post(
            self._client, self._url, vendor="sms", timeout=self._timeout,
            content=json.dumps(request, ensure_ascii=False).encode(),
            headers={"Authorization": f"Bearer {self._token.get_secret_value()}",
                     "Content-Type": "application/json; charset=utf-8"})
        return self._outcome(response, ref, member_id, segments(message.body))

    @staticmethod
    def _outcome(response: httpx.Response, ref: str, member_id: str, count: int) -> SendResult:
        status = response.status_code
        if status in ACCEPTED:
            vendor_id = response_id(response)
            log.info("sms.accepted", client_ref=ref, member_id=member_id, vendor_message_id=vendor_id, segments=count)
            return SendResult(vendor_message_id=vendor_id, accepted_at=datetime.now(timezone.utc))
        if status in (408, 429) or status >= 500:
            wait = retry_after(response.headers.get("Retry-After"))
            log.warning("sms.retryable", client_ref=ref, member_id=member_id, status=status, retry_after=wait)
            # A 5xx may come after the gateway took the message; a 408 / 429 refused it.
            raise Retryable(f"sms:{status}", wait, maybe_delivered=status >= 500)
        code = error_code(response)
        log.warning("sms.rejected", client_ref=ref, member_id=member_id, status=status, code=code)
        raise Rejected(f"sms:{status}:{code}")

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

