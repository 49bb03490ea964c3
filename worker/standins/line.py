"""A stand-in for LINE's Messaging API push endpoint (``activities.senders.line`` speaks to it).

``POST /v2/bot/message/push`` as LINE answers it: 401 without the channel access token;
400 with an ErrorResponse naming the problem for a request LINE's own OpenAPI document
does not accept (``line_contract``); 200 with ``sentMessages`` for an accepted push. Every
answer carries an ``x-line-request-id``. The retry key works as LINE's does: a push with an
``X-Line-Retry-Key`` already accepted within 24 hours is not delivered again but answered
409 with ``x-line-accepted-request-id`` (the request that was) and that push's
``sentMessages``. A push without a retry key is delivered every time.

Faults (``http_server.Faults``), in order, one per request: ``error``, ``throttle``,
``slow`` (delivered, answered after the client has given up), ``lost_answer`` (delivered,
answered 500); while ``outage`` is set every request is answered 503. ``received`` keeps
every delivered push, ``requests`` every request and the status it got.

The document is not part of the package (shared/vendor/line-openapi/ beside the checkout):
without it the stand-in answers unchecked and says so in the log; given a path, it requires it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Self

import structlog
from fastapi import Request, Response
from fastapi.responses import JSONResponse

from worker.standins.http_server import HttpStandIn
from worker.standins.line_contract import PUSH_PATH, PushContract, find_document, load_contract

log = structlog.get_logger(__name__)

RETRY_KEY_LIFETIME = timedelta(hours=24)
NO_AUTHORIZATION = "Authorization header required. Must follow the scheme, 'Authorization: Bearer <ACCESS TOKEN>'"
BAD_TOKEN = "Authentication failed. Confirm that the access token in the authorization header is valid."


@dataclass(frozen=True)
class LinePush:
    """A push LINE delivered to ``recipient``: what the member's LINE shows."""

    recipient: str
    text: str  # the texts of its text messages, one per line
    retry_key: str | None
    request_id: str
    sent_messages: tuple[dict[str, str], ...]
    messages: tuple[dict[str, Any], ...]
    at: datetime


@dataclass(frozen=True)
class PushRequest:
    """A request to the endpoint as it arrived (header names in lower case) and its answer."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    request_id: str
    at: datetime

    def json(self) -> Any:
        return json.loads(self.body)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _error(status: int, message: str, request_id: str, headers: dict[str, str] | None = None,
           **extra: Any) -> JSONResponse:
    return JSONResponse({"message": message, **extra}, status_code=status,
                        headers={"x-line-request-id": request_id, **(headers or {})})


class LineStandIn(HttpStandIn):
    def __init__(self, channel_access_token: str = "standin-line-token", *, host: str = "127.0.0.1",
                 port: int = 0, openapi: Path | str | None = None,
                 clock: Callable[[], datetime] = _utcnow) -> None:
        super().__init__(host, port)
        self.channel_access_token = channel_access_token
        self.outage = False
        self.received: list[LinePush] = []
        self.requests: list[PushRequest] = []
        self.contract: PushContract | None = None
        self._document = Path(openapi) if openapi is not None else None
        self._clock = clock
        self._accepted: dict[str, LinePush] = {}
        self._sent = 0

        @self.app.post(PUSH_PATH)
        async def push(request: Request) -> Response:
            return await self.answer(request, self._push)

    def deliveries_for(self, retry_key: str) -> list[LinePush]:
        """The pushes delivered under this ``X-Line-Retry-Key``: one, however often it was sent."""
        retry_key = _canonical(retry_key)
        return [push for push in self.received if push.retry_key == retry_key]

    def deliveries_to(self, recipient: str) -> list[LinePush]:
        return [push for push in self.received if push.recipient == recipient]

    async def __aenter__(self) -> Self:
        document = self._document or find_document()
        if document is None:
            log.warning("line_standin.unchecked", reason="LINE's OpenAPI document not found; "
                        "requests are not checked against it")
        else:
            self.contract = await asyncio.to_thread(load_contract, document)
        await super().__aenter__()
        # socket.create_server makes a socket of protocol 0, for whose connections asyncio does not
        # set TCP_NODELAY: uvicorn writes head and body apart, and Nagle's algorithm meeting the
        # client's delayed ACK held every answer 40 ms. Linux passes the option on to accepted sockets.
        # (This belongs in HttpStandIn, for every stand-in.)
        assert self._socket is not None
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self

    async def answer(self, request: Request, handle: Callable[[Request], Awaitable[Response]]) -> Response:
        """``handle(request)`` under the outage switch or the next fault (LINE's ErrorResponse bodies)."""
        fault = None if self.outage else self.faults.take()
        if self.outage:
            response = _error(503, "Service Unavailable", _request_id())
        elif fault is not None and fault.kind == "error":
            response = _error(fault.status, fault.code, _request_id())
        elif fault is not None and fault.kind == "throttle":
            response = _error(429, "The API rate limit has been exceeded. Try again later.", _request_id(),
                              headers={"Retry-After": str(fault.retry_after)})
        else:
            response = await handle(request)
        request_id = response.headers["x-line-request-id"]
        if fault is not None and fault.kind == "lost_answer":
            response = _error(500, "An error occurred in the server", request_id)
        self.requests.append(PushRequest(request.url.path, dict(request.headers), await request.body(),
                                         response.status_code, request_id, self._clock()))
        if fault is not None and fault.kind == "slow":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(fault.seconds):
                    await self._closing.wait()  # leaving the stand-in ends the wait
        return response

    async def _push(self, request: Request) -> Response:
        request_id = _request_id()
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("Bearer "):
            return _error(401, NO_AUTHORIZATION, request_id)
        if not secrets.compare_digest(authorization.removeprefix("Bearer "), self.channel_access_token):
            return _error(401, BAD_TOKEN, request_id)
        body = await request.body()
        if self.contract is not None:
            problem = self.contract.problem(request.headers, body, request.headers.get("content-type", ""))
            if problem is not None:
                return JSONResponse(problem.error_response(), status_code=problem.status,
                                    headers={"x-line-request-id": request_id})
        push = _readable(body)
        if push is None:
            return _error(400, "The request body is invalid", request_id)
        retry_key = request.headers.get("x-line-retry-key")
        retry_key = _canonical(retry_key) if retry_key is not None else None
        now = self._clock()
        first = self._accepted.get(retry_key) if retry_key is not None else None
        if first is not None and now - first.at < RETRY_KEY_LIFETIME:
            return _error(409, "The retry key is already accepted", request_id,
                          headers={"x-line-accepted-request-id": first.request_id},
                          sentMessages=list(first.sent_messages))
        delivered = self._deliver(push, retry_key, request_id, now)
        return JSONResponse({"sentMessages": list(delivered.sent_messages)},
                            headers={"x-line-request-id": request_id})

    def _deliver(self, push: dict[str, Any], retry_key: str | None, request_id: str, now: datetime) -> LinePush:
        sent = []
        for _ in push["messages"]:
            self._sent += 1
            sent.append({"id": str(500_000_000_000_000_000 + self._sent), "quoteToken": secrets.token_urlsafe(24)})
        delivered = LinePush(
            recipient=push["to"], retry_key=retry_key, request_id=request_id, at=now,
            text="\n".join(m["text"] for m in push["messages"] if isinstance(m.get("text"), str)),
            sent_messages=tuple(sent), messages=tuple(push["messages"]))
        self.received.append(delivered)
        if retry_key is not None:
            self._accepted[retry_key] = delivered
        return delivered


def _request_id() -> str:
    return str(uuid.uuid4())


def _canonical(retry_key: str) -> str:
    """A retry key as one UUID however it is spelled (upper case, braces); as sent if it is none."""
    try:
        return str(uuid.UUID(retry_key))
    except ValueError:
        return retry_key


def _readable(body: bytes) -> dict[str, Any] | None:
    """The push, when it has the shape the stand-in relies on (checked or not against the document)."""
    try:
        push = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not (isinstance(push, dict) and isinstance(push.get("to"), str) and isinstance(push.get("messages"), list)
            and push["messages"] and all(isinstance(m, dict) for m in push["messages"])):
        return None
    return push
