"""The HTTP ingress: ``POST /v1/events`` for order systems, health, readiness and metrics
(and the loop back of unsubscribe links and LINE's webhook, ``loopback.py``).

A 2xx means every accepted event is committed to the event log in PostgreSQL
(``starter.ingress.log.accept``); the forwarder signals the member workflows from
there, so an event accepted while Temporal is down waits in the log, not in memory.

Status codes of ``POST /v1/events`` (the body always lists each event's verdict):

- 200: at least one event accepted or a duplicate; some may be rejected — the
  ``rejected`` count and the ``X-Goldenroute-Rejected`` header say how many. A
  batch is not all-or-nothing: the good events of a partly bad batch are committed.
- 422: every event was rejected; nothing was stored.
- 400: the body holds no event. 401: missing, wrong or stale signature (signing.py).
- 413: the body is larger than INGRESS_MAX_BODY_BYTES, or holds more than
  INGRESS_MAX_BATCH events; nothing was stored.
- 503 with Retry-After: PostgreSQL is unreachable; nothing was stored. Sending the
  same batch again is always safe: events are deduplicated on ``event_id``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Literal

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from starter.ingress.body import TooLarge, read_body
from starter.ingress.codec import mount_codec
from starter.ingress.forwarder import Forwarder, forward_lag
from starter.ingress.http_docs import DESCRIPTION, install_openapi, submission_openapi
from starter.ingress.log import ACCEPTED, DUPLICATE, REJECTED, Verdict, accept
from starter.ingress.loopback import Loopback, mount
from starter.ingress.metrics import IngressMetrics, LatencyMiddleware
from starter.ingress.parse import parse_lines
from starter.ingress.signing import (SIGNATURE_HEADER, SOURCE_HEADER, TIMESTAMP_HEADER, Unauthorized,
                                     check_timestamp, verify)
from worker.settings import Settings

log = structlog.get_logger(__name__)

EVENTS_PATH = "/v1/events"
REJECTED_HEADER = "X-Goldenroute-Rejected"
# A PostgreSQL that hangs must not hold the sender: it gets a 503 and sends again.
ACCEPT_TIMEOUT = 10.0
RETRY_AFTER_SECONDS = 5
READY_TIMEOUT = timedelta(seconds=2)
_UNAVAILABLE = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class EventVerdict(BaseModel):
    number: int
    status: Literal["accepted", "duplicate", "rejected"]
    event_id: str | None
    member_id: str | None
    problems: list[str]


class SubmissionResult(BaseModel):
    accepted: int
    duplicate: int
    rejected: int
    results: list[EventVerdict]


class Ingress:
    """The request handlers, with what they need injected (tests pass real objects)."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, forwarder: Forwarder | None,
                 client: Client | None, metrics: IngressMetrics, *, insecure: bool,
                 clock: Callable[[], float]) -> None:
        self.settings, self.pool, self.forwarder, self.client = settings, pool, forwarder, client
        self.metrics, self.insecure, self.clock = metrics, insecure, clock

    async def submit(self, request: Request) -> Response:
        try:
            source, raw = await self._authenticated(request)
        except Unauthorized as refused:
            log.info("ingress.unauthorized", reason=refused.reason, source=_printable(request.headers.get(SOURCE_HEADER)))
            return JSONResponse({"detail": f"missing, invalid or stale {refused.reason}"}, status_code=401,
                                headers={"WWW-Authenticate": "Goldenroute-HMAC-SHA256"})
        except TooLarge:
            return _too_large(f"the body is larger than {self.settings.ingress_max_body_bytes} bytes")
        # The same parser as `goldenroute send`: the body is NDJSON, one object or an array, detected.
        parsed = parse_lines(raw)
        submitted = len(parsed.numbered) + len(parsed.rejected)
        if not submitted:
            return JSONResponse({"detail": "the body holds no event"}, status_code=400)
        if submitted > self.settings.ingress_max_batch:
            return _too_large(f"{submitted} events; at most {self.settings.ingress_max_batch} per request")
        rejected = [Verdict(r.line, REJECTED, None, None, tuple(r.problems)) for r in parsed.rejected]
        try:
            async with asyncio.timeout(ACCEPT_TIMEOUT):
                verdicts = await accept(self.pool, parsed.numbered, source=f"http:{source}")
        except _UNAVAILABLE as error:
            log.warning("ingress.database_unavailable", error=type(error).__name__, detail=str(error)[:200])
            return JSONResponse({"detail": "PostgreSQL is unavailable; nothing was stored, send again later"},
                                status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        return self._answer(source, sorted([*verdicts, *rejected], key=lambda v: v.number))

    def _answer(self, source: str, verdicts: list[Verdict]) -> Response:
        counts = {status: sum(v.status == status for v in verdicts) for status in (ACCEPTED, DUPLICATE, REJECTED)}
        self.metrics.count(verdicts)
        if counts[ACCEPTED] and self.forwarder is not None:
            self.forwarder.wake()
        log.info("ingress.submission", source=source, **counts)
        result = SubmissionResult(**counts, results=[EventVerdict(
            number=v.number, status=v.status, event_id=v.event_id, member_id=v.member_id,
            problems=list(v.problems)) for v in verdicts])
        everything_rejected = counts[REJECTED] == len(verdicts)
        return JSONResponse(result.model_dump(mode="json"), status_code=422 if everything_rejected else 200,
                            headers={REJECTED_HEADER: str(counts[REJECTED])})

    async def _authenticated(self, request: Request) -> tuple[str, bytes]:
        """The signing source and the body it signed, read within the size limit."""
        limit = self.settings.ingress_max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise TooLarge  # before a byte of it is read
        headers = request.headers
        if self.insecure:
            return "insecure", await read_body(request, limit)
        # The cheap checks first: a stale or unsigned request is refused before its body is read.
        timestamp = check_timestamp(headers.get(TIMESTAMP_HEADER), self.clock(), self.settings.ingress_replay_window)
        if not headers.get(SOURCE_HEADER) or not headers.get(SIGNATURE_HEADER):
            raise Unauthorized("signature")
        raw = await read_body(request, limit)
        source = verify(self.settings.ingress_secrets, headers[SOURCE_HEADER], timestamp, headers[SIGNATURE_HEADER], raw)
        return source, raw

    async def healthz(self) -> dict:
        return {"status": "ok"}

    async def readyz(self) -> Response:
        checks = await readiness(self.pool, self.client)
        ready = all(state == "ok" for state in checks.values())
        return JSONResponse(checks, status_code=200 if ready else 503)

    async def metrics_page(self) -> Response:
        try:
            async with asyncio.timeout(2.0):
                lag = await forward_lag(self.pool)
            self.metrics.forward_lag.set(lag or 0.0)
        except Exception:  # a scrape must not fail because PostgreSQL does: the lag is unknown
            self.metrics.forward_lag.set(float("nan"))
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings, pool: asyncpg.Pool, forwarder: Forwarder | None, client: Client | None, *,
               insecure: bool = False, clock: Callable[[], float] = time.time) -> FastAPI:
    """The ingress app. Without secrets in the settings it refuses to exist unless ``insecure``."""
    if not settings.ingress_secrets and not insecure:
        raise ValueError("no ingress secrets: set GOLDENROUTE_INGRESS_SECRETS=source=secret,… "
                         "(or run `goldenroute serve --insecure-dev` on 127.0.0.1)")
    metrics = IngressMetrics()
    ingress = Ingress(settings, pool, forwarder, client, metrics, insecure=insecure, clock=clock)
    app = FastAPI(title="goldenroute ingress", version="1", description=DESCRIPTION)
    app.add_api_route(EVENTS_PATH, ingress.submit, methods=["POST"], summary="Submit order-system events",
                      response_model=SubmissionResult, **submission_openapi(settings, SubmissionResult))
    app.add_api_route("/healthz", ingress.healthz, methods=["GET"], summary="The process is up")
    app.add_api_route("/readyz", ingress.readyz, methods=["GET"],
                      summary="PostgreSQL and Temporal are reachable (503 names the one that is not)")
    app.add_api_route("/metrics", ingress.metrics_page, methods=["GET"], summary="Prometheus metrics",
                      include_in_schema=False)
    # Unsubscribe links and LINE's webhook: consent changes from members themselves (loopback.py).
    mount(app, Loopback(settings, pool, forwarder, metrics.registry, clock))
    mount_codec(app)
    app.add_middleware(LatencyMiddleware, metrics=metrics)
    install_openapi(app, insecure=insecure)
    app.state.metrics = metrics
    return app


async def readiness(pool: asyncpg.Pool, client: Client | None) -> dict[str, str]:
    """``ok`` or why not, for PostgreSQL and Temporal, each asked with a short timeout."""

    async def postgresql() -> None:
        await pool.fetchval("SELECT 1")

    async def temporal() -> None:
        if client is None:
            raise RuntimeError("no client")
        await client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=READY_TIMEOUT)

    async def check(probe: Callable) -> str:
        try:
            async with asyncio.timeout(READY_TIMEOUT.total_seconds()):
                await probe()
        except Exception as error:  # any failure is "not ready"; the class name says which kind
            return f"unreachable ({type(error).__name__})"
        return "ok"

    pg, tp = await asyncio.gather(check(postgresql), check(temporal))
    return {"postgresql": pg, "temporal": tp}


def _too_large(detail: str) -> Response:
    return JSONResponse({"detail": f"{detail}; nothing was stored"}, status_code=413)


def _printable(value: str | None) -> str | None:
    return value[:64].encode("ascii", "replace").decode() if value else value
