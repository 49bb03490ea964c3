"""The worker's business metrics: counted by the delivery activities against real PostgreSQL,
served with the SDK's metrics on METRICS_PORT by a real worker on the Temporal dev server."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from collections.abc import Iterator

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.contacts import store_contacts
from activities.delivery import DeliveryActivities
from tests.activities.test_delivery import request
from worker import metrics
from worker.devstack import free_port
from worker.main import run_worker
from worker.settings import Settings
from workflows.events import Channel, Contact
from workflows.messages import OutcomeBatch
from workflows.touches import Outcome


class Counts:
    """The metrics' values now, and what changed since."""

    SERIES = {
        "touches S06 sent": ("goldenroute_touches_total", {"scenario": "S06", "outcome": "sent"}),
        "touches S06 suppressed": ("goldenroute_touches_total", {"scenario": "S06", "outcome": "suppressed"}),
        "touches S06 holdout": ("goldenroute_touches_total", {"scenario": "S06", "outcome": "holdout"}),
        "touches S06 expired": ("goldenroute_touches_total", {"scenario": "S06", "outcome": "expired"}),
        "email sent": ("goldenroute_deliveries_total", {"channel": "email", "state": "sent"}),
        "email duplicate": ("goldenroute_deliveries_total", {"channel": "email", "state": "duplicate"}),
        "email failed": ("goldenroute_deliveries_total", {"channel": "email", "state": "failed"}),
        "deliver_touch timed": ("goldenroute_delivery_seconds_count", {"activity": "deliver_touch"}),
        "record_outcomes timed": ("goldenroute_delivery_seconds_count", {"activity": "record_outcomes"}),
    }

    def __init__(self) -> None:
        self.before = self._now()

    def _now(self) -> dict[str, float]:
        return {key: metrics.REGISTRY.get_sample_value(name, labels) or 0.0
                for key, (name, labels) in self.SERIES.items()}

    def changed(self) -> dict[str, float]:
        now = self._now()
        return {key: now[key] - self.before[key] for key in now if now[key] != self.before[key]}


async def test_touches_count_once_and_deliveries_by_how_they_ended(pool, member_id) -> None:
    await store_contacts(pool, {member_id: Contact(email="hanako@example.jp")})
    activities, env = DeliveryActivities(pool), ActivityEnvironment()
    counts = Counts()

    first = await env.run(activities.deliver, request(member_id))
    retry = await env.run(activities.deliver, request(member_id))  # the same key: a retry or a replay
    assert (first.recorded, retry.recorded, retry.sent) == (True, False, True)
    assert counts.changed() == {"touches S06 sent": 1, "email sent": 1, "email duplicate": 1,
                                "deliver_touch timed": 2}

    counts = Counts()
    suppressed = request(member_id, Outcome.SUPPRESSED, None, step="second")
    await env.run(activities.deliver, suppressed)
    await env.run(activities.deliver, suppressed)
    assert counts.changed() == {"touches S06 suppressed": 1, "deliver_touch timed": 2}

    counts = Counts()
    batch = OutcomeBatch(member_id=member_id, touches=(
        request(member_id, Outcome.HOLDOUT, None, step="third"),
        request(member_id, Outcome.EXPIRED, None, step="fourth"),
        request(member_id, Outcome.EXPIRED, None, step="fifth"),
    ))
    assert (await env.run(activities.record_outcomes, batch)).recorded == 3
    assert (await env.run(activities.record_outcomes, batch)).recorded == 0  # a retry
    assert counts.changed() == {"touches S06 holdout": 1, "touches S06 expired": 2, "record_outcomes timed": 2}


async def test_a_send_that_cannot_be_rendered_counts_as_failed_and_records_no_touch(pool, member_id) -> None:
    counts = Counts()
    with pytest.raises(ApplicationError):  # no contact row: nothing to address the email to
        await ActivityEnvironment().run(DeliveryActivities(pool).deliver, request(member_id))
    assert counts.changed() == {"email failed": 1, "deliver_touch timed": 1}
    assert await pool.fetchval("SELECT count(*) FROM touches WHERE member_id = $1", member_id) == 0


def test_every_label_value_is_there_from_the_start() -> None:
    for channel in Channel:
        for state in metrics.DELIVERY_STATES:
            labels = {"channel": channel.value, "state": state}
            assert metrics.REGISTRY.get_sample_value("goldenroute_deliveries_total", labels) is not None
    assert metrics.REGISTRY.get_sample_value("goldenroute_touches_total",
                                             {"scenario": "S12", "outcome": "holdout"}) is not None


def _scrape(port: int) -> tuple[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.headers["Content-Type"], response.read().decode()


async def test_a_running_worker_serves_the_sdk_metrics_and_ours_on_metrics_port(
        database_url: str, dev_server_env, task_queue: str) -> None:
    port = free_port()
    settings = Settings(temporal_address=dev_server_env.client.service_client.config.target_host,
                        database_url=database_url, task_queue=task_queue, metrics_port=port)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop))
    try:
        page = ""
        for _ in range(100):  # the SDK's worker metrics appear once it polls
            if worker.done():
                await worker  # raises what stopped it
            try:
                content_type, page = await asyncio.to_thread(_scrape, port)
            except OSError:
                page = ""
            if f'task_queue="{task_queue}"' in page:
                break
            await asyncio.sleep(0.1)
        assert f'task_queue="{task_queue}"' in page, page[:2000]  # the SDK's, as it writes them
        assert "temporal_" in page
        for name in ("# TYPE goldenroute_touches_total counter", "# TYPE goldenroute_deliveries_total counter",
                     "# TYPE goldenroute_delivery_seconds histogram", "goldenroute_delivery_seconds_bucket{"):
            assert name in page, page[-3000:]
        assert content_type.startswith("text/plain") and "version=0.0.4" in content_type
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
    with pytest.raises(OSError):  # stopped with the worker
        _scrape(port)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_busy_metrics_port_is_named_and_zero_serves_nothing(busy_port: int) -> None:
    with pytest.raises(RuntimeError, match=f"METRICS_PORT {busy_port} cannot be used"):
        with metrics.serve_metrics(busy_port):
            pass
    with metrics.serve_metrics(0) as runtime:
        assert runtime is None
