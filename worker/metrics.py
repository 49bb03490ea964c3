"""The worker's business metrics, registered here and only here, and the endpoint that serves them.

One scrape target per worker: ``METRICS_PORT`` serves the Temporal SDK's metrics
(``temporal_*``, exactly as the SDK writes them) followed by these. The SDK's own
Prometheus exporter lives in its Rust core and cannot take other metrics, so it
listens on a loopback port of its own, and the endpoint here (prometheus-client's
registry, on a thread of its own, so a busy event loop does not stall a scrape)
appends its text. ``METRICS_PORT=0`` turns both off. If the SDK's part cannot be
read, the scrape still answers with these and the worker logs why.

What is counted, in the delivery activities (``activities.delivery``):

- ``goldenroute_touches_total{scenario, outcome}``: touches decided and recorded in
  PostgreSQL, counted once the transaction committed and only when it inserted the
  touch, so a retried or replayed activity does not count it again.
- ``goldenroute_deliveries_total{channel, state}``: attempts to send a touch:
  ``sent`` (committed), ``duplicate`` (its key was already sent: a retry or a
  replay; nothing goes out), ``failed`` (the attempt raised: Temporal retries it,
  unless the message cannot be rendered).
- ``goldenroute_delivery_seconds{activity}``: how long ``deliver_touch`` and
  ``record_outcomes`` take, retries included.

There is no count of events folded into the workflows: folding happens in workflow
code, which replays (a process counter there would count each event again on every
replay and cache eviction), and since the ingress writes the event log the projection
activity no longer carries the events, so no activity sees them one by one.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.request
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from workflows.events import Channel
from workflows.scenarios import Scenario
from workflows.touches import Outcome

log = structlog.get_logger(__name__)

REGISTRY = CollectorRegistry()

TOUCHES = Counter(
    "goldenroute_touches", "Touches decided and recorded, by scenario and outcome (each touch once)",
    ["scenario", "outcome"], registry=REGISTRY,
)
DELIVERIES = Counter(
    "goldenroute_deliveries",
    "Attempts to send a touch, by channel and how they ended: sent, duplicate (already sent), failed",
    ["channel", "state"], registry=REGISTRY,
)
DELIVERY_SECONDS = Histogram(
    "goldenroute_delivery_seconds", "Latency of the delivery activities (deliver_touch, record_outcomes)",
    ["activity"], registry=REGISTRY,
)

DELIVERY_STATES = ("sent", "duplicate", "failed", "uncertain")
# Present at 0 from the start, so rate() and increase() have a baseline (the labels are bounded).
for _scenario in Scenario:
    for _outcome in Outcome:
        TOUCHES.labels(_scenario.value, _outcome.value)
for _channel in Channel:
    for _state in DELIVERY_STATES:
        DELIVERIES.labels(_channel.value, _state)


def touches_recorded(recorded: Iterable[tuple[str, str]]) -> None:
    """Count newly recorded touches, each a (scenario, outcome); call it after the commit."""
    for scenario, outcome in recorded:
        TOUCHES.labels(str(scenario), str(outcome)).inc()


def delivery(channel: str, state: str) -> None:
    assert state in DELIVERY_STATES, state
    DELIVERIES.labels(str(channel), state).inc()


def timed(activity: str) -> contextlib.AbstractContextManager:
    """``with timed("deliver_touch"):`` observes the block's duration, also when it raises."""
    return DELIVERY_SECONDS.labels(activity).time()


# --- the endpoint -------------------------------------------------------------------------------

SDK_SCRAPE_TIMEOUT = 5.0


class MetricsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int) -> None:
        super().__init__(("0.0.0.0", port), _MetricsHandler)
        self.sdk_url: str | None = None  # the SDK's exporter on loopback, once its runtime exists

    def page(self) -> bytes:
        sdk = b""
        if self.sdk_url is not None:
            try:
                with urllib.request.urlopen(self.sdk_url, timeout=SDK_SCRAPE_TIMEOUT) as response:
                    sdk = response.read()
            except OSError as error:
                log.warning("metrics.sdk_unavailable", url=self.sdk_url, error=str(error))
        if sdk and not sdk.endswith(b"\n"):
            sdk += b"\n"
        return sdk + generate_latest(REGISTRY)


class _MetricsHandler(BaseHTTPRequestHandler):
    server: MetricsServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.server.page()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # a scrape every 15 s is not news
        pass


def _loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _sdk_runtime(attempts: int = 5) -> tuple[Runtime, int]:
    """A runtime whose SDK metrics are served on a free loopback port (picked again if taken meanwhile)."""
    for attempt in range(1, attempts + 1):
        port = _loopback_port()
        try:
            config = PrometheusConfig(bind_address=f"127.0.0.1:{port}")
            return Runtime(telemetry=TelemetryConfig(metrics=config)), port
        except ValueError:  # "Failed starting Prometheus exporter: Address already in use"
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


@contextlib.contextmanager
def serve_metrics(port: int) -> Iterator[Runtime | None]:
    """Serve the SDK's metrics and ours on ``port`` (0: neither); yields the runtime for the client."""
    if port == 0:
        yield None
        return
    try:
        server = MetricsServer(port)
    except OSError as error:
        raise RuntimeError(f"METRICS_PORT {port} cannot be used ({error.strerror or error}): "
                           "set METRICS_PORT to a free port, or 0 for no metrics") from None
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    try:
        runtime, sdk_port = _sdk_runtime()
        server.sdk_url = f"http://127.0.0.1:{sdk_port}/metrics"
        log.info("metrics.serving", port=port, sdk_port=sdk_port)
        yield runtime
    finally:
        server.shutdown()
        server.server_close()
