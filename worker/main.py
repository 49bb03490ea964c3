"""The worker: wires the pool, the activities and the workflow, and runs until told to stop."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import AsyncIterator

import asyncpg
import structlog
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import db
from activities.broadcast import BroadcastActivities
from activities.contacts import ContactActivities
from activities.delivery import DeliveryActivities
from activities.projection import ProjectionActivities
from activities.restore import RestoreActivities
from activities.shop_versions import ConfigRefresher, ShopVersions, StoredVersionInvalid
from worker.client import connect
from worker.metrics import serve_metrics
from worker.senders import build_senders, unsubscribe_links
from worker.settings import Settings
from workflows import versions
from workflows.broadcast import BroadcastWorkflow
from workflows.member import NETWORK_CHANNELS, MemberWorkflow, channel_queue

log = structlog.get_logger(__name__)

# Activities in flight get this long to finish when the worker is asked to stop.
GRACEFUL_SHUTDOWN = timedelta(seconds=20)



# The pure core is deterministic by construction (tests/unit check it without
# Temporal); passing it through keeps one copy of each pydantic class, so models
# built inside the workflow validate against the same classes the converter uses.
# The member workflow's own module too (issue 14): the sandbox re-imported it for every
# run it caches, a copy of its code per cached member (201 -> 159 KiB a member in the quick
# memory benchmark). Its determinism rests, like the core's, on workflow.* for time and
# randomness and on the replay tests over recorded histories, not on the sandbox's proxies.
PURE_CORE = (
    "workflows.events", "workflows.lifecycle", "workflows.touches", "workflows.scenarios",
    "workflows.policy", "workflows.messages", "workflows.search", "workflows.entries",
    "workflows.projection", "workflows.facts", "workflows.rules", "workflows.shop", "workflows.ledger",
    # The configuration book a worker refreshes must be the one its workflows read.
    "workflows.versions", "workflows.broadcasts", "workflows.segments", "workflows.broadcast_messages",
    "activities", "workflows.member",
)


def _restrictions() -> SandboxRestrictions:
    """The default sandbox with the pure core passed through, less its proxy of ``zoneinfo``.

    A ZoneInfo is deterministic for a given tzdata, and the proxy the sandbox wraps
    it in is not a ``tzinfo``, so ``astimezone`` refuses it.
    """
    default = SandboxRestrictions.default
    members = default.invalid_module_members
    children = {name: m for name, m in members.children.items() if name != "zoneinfo"}
    return dataclasses.replace(
        default.with_passthrough_modules("zoneinfo", *PURE_CORE),
        invalid_module_members=dataclasses.replace(members, children=children),
    )


WORKFLOW_RUNNER = SandboxedWorkflowRunner(restrictions=_restrictions())


def activities(pool: asyncpg.Pool, shops: ShopVersions | None = None, senders: dict | None = None,
               unsubscribe=None) -> list:
    """The production activities, with their dependencies (``shops``: the configuration
    versions a touch's message is rendered with; ``senders``: the vendor adapter per channel;
    ``unsubscribe``: the members' one-click links, ``worker.senders.unsubscribe_links``)."""
    delivery = DeliveryActivities(pool, shops=shops, senders=senders, unsubscribe=unsubscribe)
    contacts = ContactActivities(pool)
    projection = ProjectionActivities(pool)
    restore = RestoreActivities(pool)
    return [delivery.deliver, delivery.record_outcomes, contacts.erase_member, projection.project,
            restore.load_member_log]


class WorkerGroup:
    """The member workflows' worker and, per network channel, a worker of its sends on the
    channel's own task queue (``workflows.member.channel_queue``) with its own rate limit
    (across all workers) and concurrency: a LINE outage holds LINE's slots, not email's.
    Used like one ``temporalio.worker.Worker``: ``async with``, ``run()``, ``shutdown()``."""

    def __init__(self, workers: list[Worker]) -> None:
        self.workers = workers

    @property
    def main(self) -> Worker:
        return self.workers[0]

    async def run(self) -> None:
        await asyncio.gather(*(w.run() for w in self.workers))

    async def shutdown(self) -> None:
        await asyncio.gather(*(w.shutdown() for w in self.workers))

    async def __aenter__(self) -> "WorkerGroup":
        for worker in self.workers:
            await worker.__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        for worker in reversed(self.workers):
            await worker.__aexit__(*exc)


def build_worker(client: Client, pool: asyncpg.Pool | None, settings: Settings, *,
                 activity_functions: list | None = None, shops: ShopVersions | None = None,
                 senders: dict | None = None, unsubscribe=None, **options) -> WorkerGroup:
    """The one place that builds a worker; tests, preview and ``goldenroute dev`` use it too.

    ``activity_functions`` replaces the production activities (``goldenroute preview``
    runs its channels dry); otherwise they are built on ``pool``.
    """
    if activity_functions is None:
        assert pool is not None, "the production activities need a PostgreSQL pool"
        activity_functions = activities(pool, shops, senders, unsubscribe)
    if pool is not None:  # a broadcast's runs: their pages signal the member workflows on this queue
        broadcast = BroadcastActivities(pool, client, settings.task_queue)
        activity_functions = [*activity_functions, broadcast.snapshot_audience, broadcast.request_page,
                              broadcast.forward_rest, broadcast.close_run]
    main = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[MemberWorkflow, BroadcastWorkflow],
        activities=activity_functions,
        workflow_runner=WORKFLOW_RUNNER,
        max_cached_workflows=settings.max_cached_workflows,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        **options,
    )
    deliver = [f for f in activity_functions if _activity_name(f) == "deliver_touch"]
    channel_workers = [
        Worker(
            client, task_queue=channel_queue(settings.task_queue, channel), activities=deliver,
            max_concurrent_activities=settings.channel_concurrency.get(channel.value, 10),
            max_task_queue_activities_per_second=settings.channel_rates.get(channel.value, 20.0),
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        )
        for channel in sorted(NETWORK_CHANNELS)
    ] if deliver else []
    return WorkerGroup([main, *channel_workers])


def _activity_name(function) -> str | None:
    definition = activity._Definition.from_callable(function)
    return definition.name if definition else None


@asynccontextmanager
async def database(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set and no dev stack is running: start one with `goldenroute dev`")
    pool = await db.create_pool(settings.database_url)
    try:
        await db.migrate(pool)
        yield pool
    finally:
        await pool.close()


@asynccontextmanager
async def shop_configuration(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[ConfigRefresher]:
    """The shop's configuration versions for this worker (``workflows.versions``): read before
    it starts (a worker that cannot read them does not start), installed for its task queue's
    workflows, and refreshed beside it every CONFIG_REFRESH_SECONDS until it has stopped."""
    refresher = ConfigRefresher(pool, timedelta(seconds=settings.config_lead_seconds))
    try:
        await refresher.refresh()
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, StoredVersionInvalid) as error:
        raise RuntimeError(f"cannot read the shop's configuration versions from PostgreSQL: {error}") from error
    versions.install(settings.task_queue, refresher.book)
    done = asyncio.Event()
    refreshing = asyncio.create_task(refresher.run(done, timedelta(seconds=settings.config_refresh_seconds)))
    try:
        yield refresher
    finally:
        done.set()
        await refreshing
        if versions.book_for(settings.task_queue) is refresher.book:
            versions.uninstall(settings.task_queue)


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``stop``), then let in-flight work finish."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # METRICS_PORT: the SDK's metrics and the business metrics of worker.metrics, on one endpoint.
    with serve_metrics(settings.metrics_port) as runtime:
        client = await connect(settings, runtime)
        async with database(settings) as pool, shop_configuration(pool, settings) as config:
            senders = build_senders(settings)
            worker = build_worker(client, pool, settings, shops=config.shops, senders=senders,
                                  unsubscribe=unsubscribe_links(settings))
            latest = config.shops.latest()
            log.info("worker.started", task_queue=settings.task_queue, namespace=settings.temporal_namespace,
                     temporal=settings.temporal_address, metrics_port=settings.metrics_port or None,
                     config_version=latest.number if latest else 0,
                     senders=sorted(c.value for c in senders) or "none: every channel in the outbox")
            running = asyncio.create_task(worker.run())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not running.done():
                log.info("worker.stopping", grace_seconds=GRACEFUL_SHUTDOWN.total_seconds())
                await worker.shutdown()
            stopping.cancel()
            await running
            for sender in senders.values():
                await sender.aclose()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(signum)
    log.info("worker.stopped")
