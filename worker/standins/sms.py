"""A stand-in for a Japanese SMS gateway (``activities.senders.sms`` speaks to it).

``POST /v1/messages`` with ``Authorization: Bearer <token>`` and ``{"to", "text",
"client_ref", "from"?}``: 401 for another token; 400 naming the field for a body that is
not JSON or lacks one; 422 naming it for a ``to`` that is not E.164 or a ``text`` longer
than 660 characters (UTF-16 units, as the carriers count). An accepted message is kept with
the gateway's id and answered 202 ``{"id", "status", "segments", "client_ref"}``. Like the
real gateways it keeps no idempotency key: the same ``client_ref`` twice is two messages
on the member's phone, which ``deliveries(client_ref)`` counts.
"""

from __future__ import annotations

import json
import re
import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from worker.standins.http_server import HttpStandIn

MAX_LENGTH = 660
_E164 = re.compile(r"\+[1-9]\d{7,14}", re.ASCII)


@dataclass(frozen=True)
class SmsMessage:
    id: str
    to: str
    text: str
    client_ref: str | None
    sender_id: str | None
    segments: int
    received_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _segments(text: str) -> int:
    units = _units(text)
    return 1 if units <= 70 else (units + 66) // 67


def _refusal(status: int, code: str, field_name: str | None = None, message: str = "") -> JSONResponse:
    error = {"code": code, "message": message} | ({"field": field_name} if field_name else {})
    return JSONResponse({"error": error}, status_code=status)


class SmsGatewayStandIn(HttpStandIn):
    def __init__(self, api_token: str = "standin-sms-token", *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.api_token = api_token
        self.messages: list[SmsMessage] = []
        self.requests = 0  # every request to the endpoint, taken or not
        self._by_ref: Counter[str] = Counter()

        @self.app.post("/v1/messages")
        async def messages(request: Request) -> Response:
            self.requests += 1
            return await self.answer(request, self._take)

    def deliveries(self, client_ref: str) -> int:
        """How many messages with this reference reached a phone."""
        return self._by_ref[client_ref]

    async def _take(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.api_token}":
            return _refusal(401, "unauthorized", message="unknown API token")
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return _refusal(400, "invalid_json", message="the body is not JSON")
        if not isinstance(body, dict):
            return _refusal(400, "invalid_json", message="the body is not a JSON object")
        for name in ("to", "text"):
            if not isinstance(body.get(name), str):
                return _refusal(400, "missing_parameter", name, f"{name} is required")
        to, text, ref, sender = body["to"], body["text"], body.get("client_ref"), body.get("from")
        if not _E164.fullmatch(to):
            return _refusal(422, "invalid_parameter", "to", "to must be an E.164 number")
        if not text:
            return _refusal(422, "invalid_parameter", "text", "text is empty")
        if _units(text) > MAX_LENGTH:
            return _refusal(422, "text_too_long", "text", f"text is longer than {MAX_LENGTH} characters")
        if ref is not None and (not isinstance(ref, str) or not 0 < len(ref) <= 64):
            return _refusal(422, "invalid_parameter", "client_ref", "client_ref is 1 to 64 characters")
        if sender is not None and not isinstance(sender, str):
            return _refusal(422, "invalid_parameter", "from", "from is a string")
        message = SmsMessage(id=f"sms_{secrets.token_hex(8)}", to=to, text=text, client_ref=ref,
                             sender_id=sender, segments=_segments(text))
        self.messages.append(message)
        if ref is not None:
            self._by_ref[ref] += 1
        return JSONResponse({"id": message.id, "status": "accepted", "segments": message.segments,
                             "client_ref": ref}, status_code=202)
