"""Prometheus metrics of the HTTP ingress, in a registry of their own per app.

Label values are bounded: a rejection is counted under the event field it names only
when that field exists in the event contract (an unknown field a sender made up
counts as ``(unknown)``), and a request under its route's template, never its path.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starter.ingress.log import Verdict
from workflows.events import MemberEvent


def _event_fields() -> frozenset[str]:
    models = MemberEvent.__origin__.__args__  # type: ignore[attr-defined]
    return frozenset(name for model in models for name in model.model_fields) | {"(event)", "(line)"}


EVENT_FIELDS = _event_fields()


def problem_field(problem: str) -> str:
    """The first path element of ``"lines.0.sku: message"``: ``lines``."""
    field = problem.split(":", 1)[0].split(".", 1)[0].strip()
    return field if field in EVENT_FIELDS else "(unknown)"


class IngressMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter("goldenroute_ingress_events", "Events submitted over HTTP, by verdict",
                              ["status"], registry=self.registry)
        self.rejected = Counter("goldenroute_ingress_rejected", "Problems of rejected events, by the field named",
                                ["field"], registry=self.registry)
        self.latency = Histogram("goldenroute_ingress_request_seconds", "HTTP request latency",
                                 ["method", "route", "code"], registry=self.registry)
        self.forward_lag = Gauge("goldenroute_forward_lag_seconds",
                                 "Seconds since the oldest event not yet forwarded to Temporal was accepted "
                                 "(0: none waiting; NaN: PostgreSQL unreachable)", registry=self.registry)
        for status in ("accepted", "duplicate", "rejected"):
            self.events.labels(status)  # present at 0 from the start, so rate() has a baseline

    def count(self, verdicts: Iterable[Verdict]) -> None:
        for verdict in verdicts:
            self.events.labels(verdict.status).inc()
            for problem in verdict.problems:
                self.rejected.labels(problem_field(problem)).inc()


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class LatencyMiddleware:
    """Times every request under its route template (``/v1/events``), or ``(unmatched)``."""

    def __init__(self, app: ASGIApp, metrics: IngressMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, code = time.perf_counter(), 500

        async def send_with_code(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_code)
        finally:
            route = getattr(scope.get("route"), "path", "(unmatched)")
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            self.metrics.latency.labels(method, route, str(code)).observe(time.perf_counter() - started)
