"""The loop back (SPEC §5): an unsubscribe click and a LINE follow / unfollow become
``consent_changed`` events through the ingress, so the member's next touch respects them.

Both go through ``accept`` — the durable door every event takes (erased members refused,
duplicates recognised by ``event_id``) — and wake the forwarder, as ``POST /v1/events``
does. Each event's id is deterministic, so a second click or a redelivered webhook is a
duplicate, not a second event:

- ``GET /u/{token}``: a confirmation page; it changes nothing (mail scanners follow links).
- ``POST /u/{token}``: unsubscribes. A mail client's RFC 8058 one-click gets an empty 200,
  the confirmation page's button (``?via=page``) a page. The event id names the member,
  the channel and the member's latest grant of that channel in the event log: clicks
  without a new grant in between are one event; a click after the member opted in
  again is a new one. An erased member gets the same 200 and nothing is stored.
- ``POST /line/webhook``: LINE's webhook, signed with the channel secret. ``follow`` grants
  LINE, ``unfollow`` (blocked) withdraws it, for every member whose stored ``line_user_id``
  is the event's ``source.userId``. Unknown users and other events are counted and
  answered 200, as LINE requires; a LINE user id is personal data and is never logged.

Without UNSUBSCRIBE_SECRET or LINE_CHANNEL_SECRET the routes still exist and answer 503
naming the setting, so a misconfiguration shows in LINE's console and in the logs rather
than as a 404 nobody reads.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from datetime import datetime, timezone

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, SecretStr, ValidationError

from activities.senders.unsubscribe import PATH, InvalidToken, UnsubscribeToken, read_token
from starter.ingress import unsubscribe_pages as pages
from starter.ingress.body import TooLarge, read_body
from starter.ingress.forwarder import Forwarder
from starter.ingress.log import ACCEPTED, DUPLICATE, accept
from worker.settings import Settings
from workflows.events import ConsentChanged

log = structlog.get_logger(__name__)

LINE_WEBHOOK_PATH = "/line/webhook"
LINE_SIGNATURE_HEADER = "X-Line-Signature"
ACCEPT_TIMEOUT = 10.0  # as POST /v1/events: a hanging PostgreSQL gets a 503, not a held request
RETRY_AFTER_SECONDS = 5
_UNAVAILABLE = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
_WEBHOOK_EVENT_ID = re.compile(r"[0-9A-Za-z]{1,64}")  # a ULID; anything else is not LINE's
_GRANTS = {"follow": True, "unfollow": False}

_LAST_GRANT = """
SELECT event_id FROM member_events
WHERE member_id = $1 AND (
    (type = 'consent_changed' AND payload->>'channel' = $2 AND payload->>'granted' = 'true')
    OR (type = 'member_registered' AND payload->'consent'->>$2 = 'true'))
ORDER BY seq DESC LIMIT 1
"""
_MEMBERS_OF_LINE_USERS = ("SELECT member_id, line_user_id FROM member_contacts"
                          " WHERE line_user_id = ANY($1::text[]) ORDER BY member_id")


class _LineSource(BaseModel):
    type: str
    userId: str | None = None  # noqa: N815  (LINE's name)


class _LineEvent(BaseModel):
    """The fields of LINE's webhook Event this route reads; the rest (and new ones) pass."""

    type: str
    timestamp: int
    webhookEventId: str  # noqa: N815
    source: _LineSource | None = None


class Loopback:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, forwarder: Forwarder | None,
                 registry: CollectorRegistry, clock: Callable[[], float]) -> None:
        self.settings, self.pool, self.forwarder, self.clock = settings, pool, forwarder, clock
        self.counted = Counter("goldenroute_loopback_events", "Unsubscribe clicks and LINE webhook events, "
                               "by route and what became of them", ["route", "outcome"], registry=registry)

    # --- unsubscribe links -------------------------------------------------------------------

    async def confirmation(self, token: str) -> Response:
        secret = self.settings.unsubscribe_secret
        if secret is None:
            log.error("unsubscribe.not_configured", setting="UNSUBSCRIBE_SECRET")
            return pages.unavailable(RETRY_AFTER_SECONDS)
        try:
            read = read_token(secret, token)
        except InvalidToken as refused:
            log.info("unsubscribe.invalid_token", reason=str(refused))
            return pages.invalid()
        return pages.confirmation(read.channel, f"{PATH}{token}?via=page")

    async def unsubscribe(self, token: str, request: Request) -> Response:
        from_page = request.query_params.get("via") == "page"
        secret = self.settings.unsubscribe_secret
        if secret is None:
            log.error("unsubscribe.not_configured", setting="UNSUBSCRIBE_SECRET")
            return pages.unavailable(RETRY_AFTER_SECONDS) if from_page else _empty(503, retry=True)
        try:
            read = read_token(secret, token)
        except InvalidToken as refused:
            log.info("unsubscribe.invalid_token", reason=str(refused), via="page" if from_page else "one-click")
            self.counted.labels("unsubscribe", "invalid").inc()
            return pages.invalid() if from_page else _empty(400)
        try:
            async with asyncio.timeout(ACCEPT_TIMEOUT):
                status = await self._withdraw(read)
        except _UNAVAILABLE as error:
            log.warning("unsubscribe.database_unavailable", error=type(error).__name__)
            return pages.unavailable(RETRY_AFTER_SECONDS) if from_page else _empty(503, retry=True)
        # An erased member's click is refused by accept and answered like any other: the
        # answer must not tell whether the member still exists.
        self.counted.labels("unsubscribe", status).inc()
        log.info("unsubscribe.received", member_id=read.member_id, channel=read.channel, status=status,
                 issued=read.issued.isoformat(), via="page" if from_page else "one-click")
        return pages.done(read.channel) if from_page else _empty(200)

    async def _withdraw(self, read: UnsubscribeToken) -> str:
        """The member's consent on the token's channel withdrawn through ``accept``: its verdict."""
        grant = await self.pool.fetchval(_LAST_GRANT, read.member_id, read.channel)
        try:
            event = ConsentChanged(
                type="consent_changed", event_id=_unsubscribe_id(read.member_id, read.channel, grant),
                member_id=read.member_id, occurred_at=self._now(), channel=read.channel, granted=False)
        except ValidationError:  # a member id the event contract refuses: no event, as for an erased one
            return "refused"
        [verdict] = await accept(self.pool, [(1, event)], source="unsubscribe")
        if verdict.status == ACCEPTED and self.forwarder is not None:
            self.forwarder.wake()
        return verdict.status

    # --- LINE's webhook ---------------------------------------------------------------------

    async def line_webhook(self, request: Request) -> Response:
        secret = self.settings.line_channel_secret
        if secret is None:
            log.error("line_webhook.not_configured", setting="LINE_CHANNEL_SECRET")
            return JSONResponse({"detail": "LINE_CHANNEL_SECRET is not set: LINE's webhook cannot be verified"},
                                status_code=503)
        limit = self.settings.ingress_max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return JSONResponse({"detail": f"the body is larger than {limit} bytes"}, status_code=413)
        try:
            body = await read_body(request, limit)
        except TooLarge:
            return JSONResponse({"detail": f"the body is larger than {limit} bytes"}, status_code=413)
        if not _line_signed(secret, body, request.headers.get(LINE_SIGNATURE_HEADER)):
            log.info("line_webhook.unauthorized")
            return JSONResponse({"detail": f"missing or invalid {LINE_SIGNATURE_HEADER}"}, status_code=401)
        try:
            events = json.loads(body)["events"]
            if not isinstance(events, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"detail": "the body is not a LINE webhook (an object with events)"}, status_code=400)
        return await self._line_events(events)

    async def _line_events(self, raw_events: list) -> Response:
        counts = {"ignored": 0, "malformed": 0, "unknown_user": 0, ACCEPTED: 0, DUPLICATE: 0, "refused": 0}
        wanted: list[_LineEvent] = []
        for raw in raw_events:
            try:
                event = _LineEvent.model_validate(raw)
            except ValidationError:
                counts["malformed"] += 1
                continue
            if event.type not in _GRANTS or event.source is None or event.source.type != "user":
                counts["ignored"] += 1  # messages, postbacks, groups, …: not a consent change
            elif not event.source.userId or not _WEBHOOK_EVENT_ID.fullmatch(event.webhookEventId):
                counts["malformed"] += 1
            else:
                wanted.append(event)
        try:
            async with asyncio.timeout(ACCEPT_TIMEOUT):
                consent = await self._line_consent(wanted, counts)
                verdicts = await accept(self.pool, list(enumerate(consent, start=1)), source="line")
        except _UNAVAILABLE as error:
            # Not 200: LINE redelivers a failed webhook (when redelivery is on), with the same ids.
            log.warning("line_webhook.database_unavailable", error=type(error).__name__)
            return JSONResponse({"detail": "PostgreSQL is unavailable; nothing was stored"}, status_code=503,
                                headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        for verdict in verdicts:
            counts[verdict.status if verdict.status in (ACCEPTED, DUPLICATE) else "refused"] += 1
        if counts[ACCEPTED] and self.forwarder is not None:
            self.forwarder.wake()
        for outcome, n in counts.items():
            if n:
                self.counted.labels("line", outcome).inc(n)
        log.info("line_webhook.received", events=len(raw_events), **counts)
        return JSONResponse(counts)

    async def _line_consent(self, events: list[_LineEvent], counts: dict[str, int]) -> list[ConsentChanged]:
        """One consent_changed per event and member with its LINE user id; the others are counted."""
        if not events:
            return []
        members: dict[str, list[str]] = {}
        for row in await self.pool.fetch(_MEMBERS_OF_LINE_USERS, sorted({e.source.userId for e in events})):
            members.setdefault(row["line_user_id"], []).append(row["member_id"])
        consent = []
        for event in events:
            found = members.get(event.source.userId, [])
            counts["unknown_user"] += not found
            for member_id in found:
                try:
                    consent.append(ConsentChanged(
                        type="consent_changed", event_id=_line_event_id(event.webhookEventId, member_id),
                        member_id=member_id, occurred_at=datetime.fromtimestamp(event.timestamp / 1000, timezone.utc),
                        channel="line", granted=_GRANTS[event.type]))
                except (ValidationError, ValueError, OverflowError, OSError):  # a timestamp out of range
                    counts["malformed"] += 1
        return consent

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)


def mount(app: FastAPI, loopback: Loopback) -> None:
    """The loop back's routes on the ingress app (outside its OpenAPI: they are not for order systems)."""
    app.add_api_route(PATH + "{token}", loopback.confirmation, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_api_route(PATH + "{token}", loopback.unsubscribe, methods=["POST"], include_in_schema=False)
    app.add_api_route(LINE_WEBHOOK_PATH, loopback.line_webhook, methods=["POST"], include_in_schema=False)


def line_signature(secret: SecretStr | str, body: bytes) -> str:
    """``X-Line-Signature``: base64(HMAC-SHA256(channel secret, raw body)), as LINE signs."""
    key = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def _line_signed(secret: SecretStr, body: bytes, given: str | None) -> bool:
    expected = line_signature(secret, body).encode()
    return hmac.compare_digest(expected, (given or "").strip().encode("ascii", "replace"))


def _unsubscribe_id(member_id: str, channel: str, grant: str | None) -> str:
    digest = hashlib.sha256(f"{member_id}\x00{channel}\x00{grant or ''}".encode()).hexdigest()[:32]
    return f"unsubscribe:{channel}:{digest}"


def _line_event_id(webhook_event_id: str, member_id: str) -> str:
    # One LINE event may concern several members (records of one person sharing the id).
    return f"line:{webhook_event_id}:{hashlib.sha256(member_id.encode()).hexdigest()[:12]}"


def _empty(status: int, *, retry: bool = False) -> Response:
    return Response(status_code=status, headers={"Retry-After": str(RETRY_AFTER_SECONDS)} if retry else None)
