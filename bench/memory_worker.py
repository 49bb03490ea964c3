"""The worker process the memory benchmark measures: the real worker, channels dry, no PostgreSQL.

    python -m bench.memory_worker ADDRESS NAMESPACE TASK_QUEUE MAX_CACHED METRICS_PORT [MODE]

MODE ``member`` (the default): ``build_worker`` with the dry-run activities
(``activities/dry_run.py``), their in-memory record of every touch bounded to the
newest 64 (unbounded, it would grow with the members and be counted as cache),
and an interceptor that counts the events each activity carries to the projection.
MODE ``noop``: the
same runner and cache with only the trivial ``bench/noop.py`` workflow — the
baseline of what the SDK itself keeps per cached workflow. MODE ``unsandboxed``
(a diagnostic, not how goldenroute runs): the member worker with
``UnsandboxedWorkflowRunner``, to see how much of a member is the sandbox.

It prints ``ready`` once polling, then ``logged N`` whenever the number of events
the member workflows have folded changes (two per member once a snapshot handed to the
projection shows its order: every member has folded its registration and its order), and ``gc MS`` when the
longest garbage-collector pause so far grows (the SDK fails a workflow task whose
activation does not yield within 2 s: a long pause with a big heap can do that). It serves the SDK's
Prometheus metrics (``temporal_sticky_cache_size``) on METRICS_PORT, and stops on
SIGTERM or when its standard input closes (the benchmark ended).
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import time

from collections import OrderedDict

from temporalio.client import Client
from worker.converter import DATA_CONVERTER
from temporalio.runtime import LoggingConfig, PrometheusConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    UnsandboxedWorkflowRunner,
    Worker,
)

from activities.dry_run import DryRunChannels
from bench.noop import NoopWorkflow
from worker.main import WORKFLOW_RUNNER, build_worker
from worker.settings import Settings
from workflows.member import MemberWorkflow
from workflows.projection import ProjectionRequest

MODES = ("member", "noop", "unsandboxed")
KEPT_TOUCHES = 64


class _Newest(OrderedDict):
    """A dict that keeps only its newest ``KEPT_TOUCHES`` entries."""

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        while len(self) > KEPT_TOUCHES:
            self.popitem(last=False)


def bounded_dry_run() -> DryRunChannels:
    channels = DryRunChannels()
    if hasattr(channels, "_deliveries"):  # its record of every touch, for the preview's report
        channels._deliveries = _Newest(channels._deliveries)
    return channels


class ProjectionCounter(Interceptor):
    """Counts the events the member workflows have folded, from the snapshots their activities carry.

    The ingress writes the event log, so a snapshot is what a workflow hands to PostgreSQL:
    a member counts its registration and its order once a snapshot shows F = 1.
    """

    def __init__(self) -> None:
        self.logged = 0
        self.members: set[str] = set()

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Counting(next, self)


class _Counting(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, counter: ProjectionCounter) -> None:
        super().__init__(next)
        self._counter = counter

    async def execute_activity(self, input: ExecuteActivityInput):
        result = await super().execute_activity(input)
        for arg in input.args:
            projection = arg if isinstance(arg, ProjectionRequest) else getattr(arg, "projection", None)
            if isinstance(projection, ProjectionRequest) and projection.snapshot.purchase_count >= 1 \
                    and projection.member_id not in self._counter.members:
                self._counter.members.add(projection.member_id)
                self._counter.logged += 2  # the registration and the order
        return result


class GcPauses:
    """The longest garbage-collector pause, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.longest_ms = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.longest_ms = max(self.longest_ms, (time.perf_counter() - self._started) * 1000)


def worker_for(mode: str, client: Client, task_queue: str, max_cached: int, counter: ProjectionCounter) -> Worker:
    channels = bounded_dry_run()
    if mode == "member":
        return build_worker(client, None, Settings(task_queue=task_queue, max_cached_workflows=max_cached),
                            activity_functions=channels.activities, interceptors=[counter])
    if mode == "noop":
        return Worker(client, task_queue=task_queue, workflows=[NoopWorkflow], workflow_runner=WORKFLOW_RUNNER,
                      max_cached_workflows=max_cached)
    if mode == "unsandboxed":
        return Worker(client, task_queue=task_queue, workflows=[MemberWorkflow], activities=channels.activities,
                      workflow_runner=UnsandboxedWorkflowRunner(), max_cached_workflows=max_cached,
                      interceptors=[counter])
    raise SystemExit(f"unknown mode {mode!r}: one of {', '.join(MODES)}")


async def main(address: str, namespace: str, task_queue: str, max_cached: int, metrics_port: int,
               mode: str = "member") -> None:
    runtime = Runtime(telemetry=TelemetryConfig(
        logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR")),
        metrics=PrometheusConfig(bind_address=f"127.0.0.1:{metrics_port}"),
    ))
    client = await Client.connect(address, namespace=namespace, data_converter=DATA_CONVERTER,
                                  runtime=runtime)
    counter = ProjectionCounter()
    pauses = GcPauses()
    worker = worker_for(mode, client, task_queue, max_cached, counter)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not os.read(sys.stdin.fileno(), 1024) else None)
    async with worker:
        print("ready", flush=True)
        reported, longest = -1, 0.0
        while not stop.is_set():
            if counter.logged != reported:
                reported = counter.logged
                print(f"logged {reported}", flush=True)
            if pauses.longest_ms > longest:
                longest = pauses.longest_ms
                print(f"gc {longest:.1f}", flush=True)
            try:
                await asyncio.wait_for(stop.wait(), 0.2)
            except asyncio.TimeoutError:
                pass


if __name__ == "__main__":
    address, namespace, task_queue, max_cached, metrics_port = sys.argv[1:6]
    asyncio.run(main(address, namespace, task_queue, int(max_cached), int(metrics_port), *sys.argv[6:7]))
    sys.stdout.flush()
    os._exit(0)
