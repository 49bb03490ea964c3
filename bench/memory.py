"""Benchmark 3 — worker memory per cached member workflow.

A worker process of its own (``bench/memory_worker.py``: ``build_worker`` with dry-run
channels, so PostgreSQL is not in the measurement) runs against the dev server
with a sticky cache sized to hold every member. Its RSS (psutil) is read with none
cached, then with 1k, 5k and 10k members cached (``--quick``: 200, 500), growing
the same worker. Each member is driven in by signal-with-start of a registration and
an order (a realistic state: F1, the S03 touches planned), and counted in once its
workflow has folded both events (the dry-run projection sees its second event);
RSS is read once the worker is idle. The SDK's ``sticky_cache_size`` metric confirms
how many are cached.

The none-cached baseline is the same worker after a warm-up: a few members that
ran and were erased (completed, so out of the cache), so that imports and the
sandbox's first-use costs are not charged to the members. A second baseline,
measured the same way in a worker process of its own: the trivial workflow of
``bench/noop.py`` (same sandboxed runner, same two signals with the same payloads)
— what the SDK itself keeps per cached workflow, whatever the workflow does.

    python -m bench.memory [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import psutil
from temporalio.client import Client

from bench.common import ROOT, Stack, Target, stack_for, table, wait_until
from bench.noop import NoopWorkflow
from bench.personas import memory_stream
from starter.ingress import signal_with_start
from starter.preview import strip_contacts as strip_contacts_offline
from worker.devstack import free_port
from workflows.events import parse_event

TARGET_KIB = 100.0
GC_TARGET_MS, GC_TARGET_AT = 500.0, 10_000  # issue 14: longest GC pause < 0.5 s at 10,000 cached
SIZES, QUICK_SIZES = (1_000, 5_000, 10_000), (200, 500)
WARM_UP = 10
CONCURRENCY = 64  # members signalled at once (each member's two events in order)
BUDGET = 600.0  # seconds for all sizes; a slower machine reports the sizes it reached in time


@dataclass
class Point:
    members: int
    rss: int
    cache_size: int | None  # the SDK's sticky_cache_size gauge, if read
    seconds: float  # to drive this stage's new members in
    gc_ms: float = 0.0  # the worker's longest garbage-collector pause so far


@dataclass
class NoopPoint:
    instances: int
    baseline_rss: int
    rss: int

    @property
    def kib_per_instance(self) -> float:
        return (self.rss - self.baseline_rss) / 1024 / self.instances


@dataclass
class MemoryResult:
    baseline_rss: int
    points: list[Point]
    noop: NoopPoint | None = None
    mode: str = "member"
    notes: list[str] = field(default_factory=list)

    def kib_per_member(self, point: Point) -> float:
        return (point.rss - self.baseline_rss) / 1024 / point.members

    def marginal(self, n: int) -> float | None:
        if n == 0:
            return None
        before, point = self.points[n - 1], self.points[n]
        return (point.rss - before.rss) / 1024 / (point.members - before.members)

    def targets(self) -> list[Target]:
        if not self.points:
            return [Target("memory", "no size reached", f"<= {TARGET_KIB:.0f} KiB/member", False)]
        largest = self.points[-1]
        kib = self.kib_per_member(largest)
        # Judged at 10,000 cached (the full run); at fewer (--quick, or a slow machine's budget) only shown.
        at_size = largest.members >= GC_TARGET_AT
        gc = Target("memory", f"longest GC pause {largest.gc_ms:.0f} ms at {largest.members} cached",
                    f"< {GC_TARGET_MS:.0f} ms at {GC_TARGET_AT:,}" + ("" if at_size else " (not reached: not judged)"),
                    largest.gc_ms < GC_TARGET_MS if at_size else None)
        return [Target("memory", f"{kib:.0f} KiB/member at {largest.members} cached",
                       f"<= {TARGET_KIB:.0f} KiB/member", kib <= TARGET_KIB), gc]


class WorkerProcess:
    """The measured worker: started, read line by line, idle-checked, stopped."""

    def __init__(self, process: asyncio.subprocess.Process, metrics_port: int) -> None:
        self.process = process
        self.ps = psutil.Process(process.pid)
        self.metrics_port = metrics_port
        self.logged = 0
        self.gc_ms = 0.0
        self.ready = asyncio.Event()
        self.deadlocks = 0  # the SDK's "potential deadlock" (TMPRL1101) reports on the worker's stderr
        self.first_deadlock: str | None = None
        self.stderr_tail: list[str] = []
        self._reader = asyncio.create_task(self._read())
        self._errors = asyncio.create_task(self._read_errors())

    @classmethod
    async def start(cls, client: Client, task_queue: str, max_cached: int, mode: str = "member") -> "WorkerProcess":
        port = free_port()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.memory_worker", client.service_client.config.target_host,
            client.namespace, task_queue, str(max_cached), str(port), mode,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        worker = cls(process, port)
        try:
            await asyncio.wait_for(worker.ready.wait(), 60)
        except BaseException:
            await worker.stop()
            raise
        return worker

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode().strip()
            if line == "ready":
                self.ready.set()
            elif line.startswith("logged "):
                self.logged = int(line.split()[1])
            elif line.startswith("gc "):
                self.gc_ms = float(line.split()[1])

    async def _read_errors(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            if "TMPRL1101" in line:
                self.deadlocks += 1
                self.first_deadlock = self.first_deadlock or line.strip()
            self.stderr_tail = [*self.stderr_tail[-19:], line]

    def progress_to(self, expected: int, stall: float = 60.0):
        """A check for ``wait_until``: the count reached ``expected``; fails fast if the worker died or stalled."""
        last = [self.logged, time.monotonic()]

        async def check() -> bool:
            if self.process.returncode is not None:
                raise RuntimeError(f"the worker process exited with {self.process.returncode}: "
                                   + "\n".join(self.stderr_tail))
            if self.logged != last[0]:
                last[:] = [self.logged, time.monotonic()]
            elif time.monotonic() - last[1] > stall:
                raise TimeoutError(f"no progress for {stall:.0f} s at {self.logged} of {expected} events")
            return self.logged >= expected

        return check

    def rss(self) -> int:
        return self.ps.memory_info().rss

    async def idle(self, timeout: float = 60.0) -> None:
        """Until the worker used under 3 % of a core over two half-second windows in a row."""
        quiet = 0
        deadline = time.monotonic() + timeout
        self.ps.cpu_percent(None)
        while quiet < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            quiet = quiet + 1 if self.ps.cpu_percent(None) < 3.0 else 0

    def cache_size(self) -> int | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return None
        found = re.search(r"^temporal_sticky_cache_size(?:\{[^}]*\})? (\d+)", text, re.MULTILINE)
        return int(found.group(1)) if found else None

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
        self._reader.cancel()
        self._errors.cancel()


async def drive(client: Client, task_queue: str, member_ids: list[str], *, erase: bool = False) -> None:
    """Each member: registration + order (+ erasure) by signal-with-start, CONCURRENCY members at a time."""
    gate = asyncio.Semaphore(CONCURRENCY)
    now = datetime.now(timezone.utc)

    async def one(member_id: str) -> None:
        events = strip_contacts_offline(memory_stream(member_id, now))
        if erase:
            events.append(parse_event({"type": "member_erased", "event_id": f"{member_id}-erased",
                                       "member_id": member_id, "occurred_at": now.isoformat()}))
        async with gate:
            for event in events:
                await signal_with_start(client, event, task_queue)

    await asyncio.gather(*(one(m) for m in member_ids))


NOOP_INSTANCES = 500  # at most: the trivial baseline at the first size, or this many


async def measure_noop(client: Client, instances: int, warm_up: int) -> NoopPoint:
    """RSS per cached trivial workflow: the SDK's own share of a cached member."""
    task_queue = f"bench-memory-noop-{uuid.uuid4().hex[:8]}"
    run = uuid.uuid4().hex[:6]
    worker = await WorkerProcess.start(client, task_queue, instances + warm_up + 100, "noop")
    gate = asyncio.Semaphore(CONCURRENCY)
    now = datetime.now(timezone.utc)

    async def one(n: int, expected: int) -> str:
        workflow = f"noop-{run}-{n:06d}"
        async with gate:
            for event in strip_contacts_offline(memory_stream(workflow, now)):  # the members' payloads
                await client.start_workflow(NoopWorkflow.run, expected, id=workflow, task_queue=task_queue,
                                            start_signal="event", start_signal_args=[event])
        return workflow

    try:
        warm = await asyncio.gather(*(one(-n - 1, 2) for n in range(warm_up)))  # complete: leave the cache
        for workflow in warm:
            await asyncio.wait_for(client.get_workflow_handle(workflow).result(), 60)
        await worker.idle()
        baseline = worker.rss()
        await asyncio.gather(*(one(n, 0) for n in range(instances)))  # 0: wait for ever, stay cached

        async def all_cached() -> bool:
            return (worker.cache_size() or 0) >= instances

        await wait_until(all_cached, 120, interval=0.2, what=f"{instances} trivial workflows cached")
        await worker.idle()
        return NoopPoint(instances, baseline, worker.rss())
    finally:
        await worker.stop()
        await _terminate_all(client, task_queue)


async def measure(stack: Stack | None = None, quick: bool = False, sizes: tuple[int, ...] | None = None,
                  budget: float = BUDGET, warm_up: int = WARM_UP, mode: str = "member",
                  noop_instances: int | None = None) -> MemoryResult:
    """``mode="unsandboxed"``: a diagnostic (how much of a member is the sandbox), not how goldenroute runs.

    ``noop_instances=0`` skips the trivial-workflow baseline.
    """
    sizes = sizes or (QUICK_SIZES if quick else SIZES)
    deadline = time.monotonic() + budget
    async with stack_for(stack) as stack:
        env = await stack.dev_server()
        client = env.client
        if noop_instances is None:
            noop_instances = min(sizes[0], NOOP_INSTANCES)
        noop = await measure_noop(client, noop_instances, warm_up) if noop_instances else None
        task_queue = f"bench-memory-{uuid.uuid4().hex[:8]}"
        run = uuid.uuid4().hex[:6]
        worker = await WorkerProcess.start(client, task_queue, max(sizes) + warm_up + 100, mode)
        try:
            # Warm-up: members that run and complete (erased), leaving the cache empty again.
            warm = [f"mem-{run}-warm-{n}" for n in range(warm_up)]
            await drive(client, task_queue, warm, erase=True)
            for member in warm:
                await asyncio.wait_for(client.get_workflow_handle(f"member-{member}").result(), 60)
            await worker.idle()
            baseline = worker.rss()
            logged_before = worker.logged
            result = MemoryResult(baseline_rss=baseline, points=[], noop=noop, mode=mode)
            cached = 0
            for size in sizes:
                started = time.monotonic()
                new = [f"mem-{run}-{n:06d}" for n in range(cached, size)]
                expected = logged_before + 2 * size
                try:
                    await asyncio.wait_for(drive(client, task_queue, new), max(deadline - time.monotonic(), 1.0))

                    await wait_until(worker.progress_to(expected), max(deadline - time.monotonic(), 1.0),
                                     interval=0.2, what=f"{size} members to fold their events")
                except (asyncio.TimeoutError, TimeoutError) as error:
                    result.notes.append(f"stopped at {cached} members cached: {size} did not fit in the "
                                        f"{budget:.0f} s budget on this machine ({error})")
                    break
                seconds = time.monotonic() - started
                cached = size
                await worker.idle()
                result.points.append(Point(size, worker.rss(), worker.cache_size(), seconds, worker.gc_ms))
        finally:
            await worker.stop()
            await _terminate_all(client, task_queue)
        if worker.deadlocks:
            result.notes.append(
                f"the worker reported {worker.deadlocks} potential deadlock(s) (an activation that did not yield "
                f"within 2 s; the workflow task is failed and retried): {worker.first_deadlock}")
    return result


async def _terminate_all(client: Client, task_queue: str) -> None:
    """The members stay running on a shared dev server: end them in one batch operation."""
    from temporalio.api.workflowservice.v1 import StartBatchOperationRequest
    from temporalio.api.batch.v1 import BatchOperationTermination

    with contextlib.suppress(Exception):
        await client.workflow_service.start_batch_operation(StartBatchOperationRequest(
            namespace=client.namespace, job_id=f"bench-{uuid.uuid4().hex[:8]}",
            visibility_query=f'TaskQueue="{task_queue}" AND ExecutionStatus="Running"',
            reason="benchmark finished", termination_operation=BatchOperationTermination(),
        ))


def report(result: MemoryResult) -> str:
    rows = [["none cached (after warm-up)", "-", f"{result.baseline_rss / 2**20:.1f}", "-", "-", "-", "-"]]
    for n, point in enumerate(result.points):
        marginal = result.marginal(n)
        rows.append([f"{point.members} members", point.cache_size if point.cache_size is not None else "?",
                     f"{point.rss / 2**20:.1f}", f"{result.kib_per_member(point):.1f}",
                     f"{marginal:.1f}" if marginal is not None else "-", f"{point.seconds:.0f}",
                     f"{point.gc_ms:.0f}"])
    mode = "" if result.mode == "member" else f", {result.mode} (diagnostic)"
    lines = [
        f"== 3. Worker memory per cached member (separate worker process, dry-run channels, dev server{mode}) ==",
        table(rows, ["worker", "sticky cache", "RSS MiB", "KiB/member", "marginal KiB/member", "drive-in s",
                     "longest GC pause ms"]),
    ]
    if result.noop is not None:
        noop = result.noop
        line = (f"baseline, trivial workflow (same runner, same two signals): {noop.kib_per_instance:.1f} KiB "
                f"per cached instance at {noop.instances} ({noop.baseline_rss / 2**20:.1f} → {noop.rss / 2**20:.1f} MiB)")
        if result.points:
            member = result.kib_per_member(result.points[-1])
            line += f"; a member costs {member / noop.kib_per_instance:.1f}x that, {member - noop.kib_per_instance:.0f} KiB more"
        lines.append(line)
    return "\n".join(lines + result.notes)


if __name__ == "__main__":
    from bench.common import run_alone

    run_alone(__doc__.splitlines()[0], measure, report)
