"""LINE Messaging API: one push message per touch, deduplicated by LINE itself.

Every push carries ``X-Line-Retry-Key``, a UUID derived from the touch's idempotency key,
so whatever repeats a send — an activity retry, a restarted worker, an answer lost after
LINE accepted the message — LINE delivers it once and answers the repeat with 409 and
``x-line-accepted-request-id`` (SPEC §5, exactly once). LINE keeps a retry key for 24 hours;
the delivery activity's own record of attempts covers anything later.

The channel access token and the recipient (a member's LINE user id) are never logged.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import httpx
import structlog
from pydantic import SecretStr

from activities.render import RenderedMessage
from activities.senders.base import Rejected, Retryable, SendResult
from activities.senders.transport import post, retry_after
from workflows.events import Channel

log = structlog.get_logger(__name__)

PUSH_PATH = "/v2/bot/message/push"
MAX_TEXT_LENGTH = 5000  # LINE counts a text in UTF-16 code units
# Never change: the retry key of a touch must stay the same across releases, or a send
# retried across an upgrade would reach LINE under a new key and be delivered twice.
RETRY_KEY_NAMESPACE = uuid.UUID("8f1d2c5e-7b0a-5c43-9e61-2a4b6d8c0f17")


def retry_key(key: str) -> str:
    """The ``X-Line-Retry-Key`` of a touch: the same key gives the same UUID, always."""
    return str(uuid.uuid5(RETRY_KEY_NAMESPACE, key))


def text_length(text: str) -> int:
    """The length of ``text`` as LINE counts it: UTF-16 code units (an emoji is 2)."""
    return len(text.encode("utf-16-le")) // 2


class LineSender:
    channel = Channel.LINE
    idempotent = True  # LINE deduplicates a push by X-Line-Retry-Key for 24 h: a retry is safe

    def __init__(self, *, channel_access_token: SecretStr | str, base_url: str = "https://api.line.me",
                 timeout: float = 10.0, client: httpx.AsyncClient | None = None) -> None:
        self._token = (channel_access_token if isinstance(channel_access_token, SecretStr)
                       else SecretStr(channel_access_token))
        self._url = base_url.rstrip("/") + PUSH_PATH
        self._timeout = timeout
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient()

    async def send(self, message: RenderedMessage, key: str, member_id: str) -> SendResult:
        if message.channel is not Channel.LINE:
            raise Rejected(f"line:wrong_channel:{message.channel.value}")
        if not message.recipient:
            raise Rejected("line:no_recipient")
        length = text_length(message.body)
        if length > MAX_TEXT_LENGTH:
            log.warning("line.rejected", key=key, reason="text_too_long", length=length)
            raise Rejected(f"line:text_too_long:{length}>{MAX_TEXT_LENGTH}")
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}",
                   "Content-Type": "application/json; charset=utf-8", "X-Line-Retry-Key": retry_key(key)}
        body = {"to": message.recipient, "messages": [{"type": "text", "text": message.body}]}
        try:
            response = await post(self._client, self._url, vendor="line", timeout=self._timeout,
                                  content=json.dumps(body, ensure_ascii=False).encode(), headers=headers)
        except Retryable as error:  # no answer: repeating is safe, the retry key dedupes it
            log.warning("line.retryable", key=key, reason=error.reason)
            raise
        return self._outcome(response, key)

    def _outcome(self, response: httpx.Response, key: str) -> SendResult:
        status = response.status_code
        request_id = response.headers.get("x-line-request-id")
        accepted_request_id = response.headers.get("x-line-accepted-request-id")
        answer = _json(response)
        if status == 200 or (status == 409 and accepted_request_id):
            duplicate = status == 409
            message_id = _sent_message_id(answer)
            log.info("line.sent", key=key, status=status, request_id=request_id, duplicate=duplicate,
                     accepted_request_id=accepted_request_id, message_id=message_id)
            return SendResult(vendor_message_id=message_id, accepted_at=datetime.now(timezone.utc),
                              duplicate=duplicate)
        reason = f"line:{status}:{_error_message(answer)}"
        if status == 429 or status >= 500:
            wait = retry_after(response.headers.get("retry-after"))
            log.warning("line.retryable", key=key, status=status, request_id=request_id, retry_after=wait)
            raise Retryable(reason, retry_after=wait)
        log.warning("line.rejected", key=key, status=status, request_id=request_id, reason=reason)
        raise Rejected(reason)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _json(response: httpx.Response) -> dict:
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _sent_message_id(answer: dict) -> str | None:
    """``sentMessages[0].id`` of a PushMessageResponse (200) or of the ErrorResponse of a 409."""
    sent = answer.get("sentMessages")
    if isinstance(sent, list) and sent and isinstance(sent[0], dict) and sent[0].get("id") is not None:
        return str(sent[0]["id"])
    return None


def _error_message(answer: dict) -> str:
    """ErrorResponse.message with its details (property: message), shortened; LINE names
    properties, never their values, so no recipient reaches the reason."""
    message = str(answer.get("message") or "no message")
    details = [f"{d.get('property', '?')}: {d.get('message', '?')}"
               for d in answer.get("details") or [] if isinstance(d, dict)]
    if details:
        message += " (" + "; ".join(details) + ")"
    return message[:300]

