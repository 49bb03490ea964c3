"""A stand-in for a receiver of goldenroute's signed webhooks (``activities.senders.webhook``):
a push service's relay or a shop's own MA tool.

``POST /hooks/goldenroute``: 401 ``{"error": "signature" | "timestamp"}`` unless
``X-Goldenroute-Signature`` signs the raw body with the shared secret within the tolerance
(``verify_signature``, as a real receiver runs it); 400 without an ``Idempotency-Key`` equal
to the body's ``key``; 409 for a key it has already taken, which it does not act on again;
else 200 ``{"id"}`` and the message is kept. ``attempts(key)`` counts the signed requests
for a key, ``deliveries(key)`` the times the receiver acted on it.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from activities.senders.webhook import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TOLERANCE_SECONDS,
    InvalidSignature,
    verify_signature,
)
from worker.standins.http_server import HttpStandIn

PATH = "/hooks/goldenroute"


class WebhookStandIn(HttpStandIn):
    def __init__(self, secret: str = "standin-webhook-secret", *, tolerance: int = TOLERANCE_SECONDS,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.secret = secret
        self.tolerance = tolerance
        self.received: dict[str, dict[str, Any]] = {}  # key → the body first taken, with "id"
        self.refused: Counter[str] = Counter()  # "signature", "timestamp", "idempotency_key", "body"
        self._attempts: Counter[str] = Counter()
        self._deliveries: Counter[str] = Counter()

        @self.app.post(PATH)
        async def hook(request: Request) -> Response:
            return await self.answer(request, self._take)

    @property
    def webhook_url(self) -> str:
        return self.url + PATH

    def attempts(self, key: str) -> int:
        return self._attempts[key]

    def deliveries(self, key: str) -> int:
        return self._deliveries[key]

    async def _take(self, request: Request) -> Response:
        raw_body = await request.body()
        try:
            verify_signature(self.secret, request.headers.get(SIGNATURE_HEADER), raw_body, self.tolerance)
        except InvalidSignature as refusal:
            return self._refuse(401, refusal.reason)
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if not key:
            return self._refuse(400, "idempotency_key")
        self._attempts[key] += 1
        try:
            body = json.loads(raw_body)
        except (ValueError, UnicodeDecodeError):
            return self._refuse(400, "body")
        if not isinstance(body, dict) or body.get("key") != key:
            return self._refuse(400, "body")
        if key in self.received:
            return JSONResponse({"error": "duplicate", "id": self.received[key]["id"]}, status_code=409)
        self.received[key] = body | {"id": f"wh_{secrets.token_hex(8)}"}
        self._deliveries[key] += 1
        return JSONResponse({"id": self.received[key]["id"]}, status_code=200)

    def _refuse(self, status: int, reason: str) -> JSONResponse:
        self.refused[reason] += 1
        return JSONResponse({"error": reason}, status_code=status)
