"""Benchmark 4 — replay: time to rebuild a one-year member from its history (a cache miss, a new worker).

``temporalio.worker.Replayer`` with the worker's own sandboxed runner
(``WORKFLOW_RUNNER``) and ``DATA_CONVERTER`` replays the loyal buyer's
year (benchmark 1's history; recorded afresh when run alone); the baseline
replays a trivial workflow's history (``bench/noop.py``: started by
signal-with-start, one signal, completed) the same way. Each figure is the
median of several timed replays after one untimed warm-up; a replay that is not
deterministic fails the benchmark.

The year is all the member's runs, one after the other (it continues as new as its history
grows, ``workflows.member.HISTORY_GROWTH``). A worker that misses its cache replays only the
member's current run: the longest run of the year is printed beside the year, as what a
cache miss costs at worst.

    python -m bench.replay [--quick]
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from worker.converter import DATA_CONVERTER
from temporalio.worker import Replayer, Worker

from bench.common import Stack, Target, median, stack_for, table
from bench.noop import NoopWorkflow
from worker.main import WORKFLOW_RUNNER
from workflows.member import MemberWorkflow

TARGET_MS = 50.0
RUNS, QUICK_RUNS = 15, 5


@dataclass
class ReplayResult:
    member_ms: float
    trivial_ms: float
    member_events: int
    trivial_events: int
    member_tasks: int  # workflow tasks in the member's history: each is one activation to replay
    trivial_tasks: int
    runs: int
    member_samples: list[float]
    longest_run_ms: float = 0.0  # the longest single run of the year: a cache miss at worst
    longest_run_events: int = 0
    longest_run_tasks: int = 0
    member_runs: int = 1

    @property
    def ratio(self) -> float:
        return self.member_ms / self.trivial_ms

    def targets(self) -> list[Target]:
        return [Target("replay", f"{self.member_ms:.1f} ms ({self.ratio:.1f}x trivial), a member-year",
                       f"< {TARGET_MS:.0f} ms", self.member_ms < TARGET_MS),
                Target("replay", f"  {self.longest_run_ms:.1f} ms, its longest run (what a cache miss replays)",
                       f"< {TARGET_MS:.0f} ms", None)]


async def record_member_year(stack: Stack) -> list[WorkflowHistory]:
    """The loyal buyer's year, as benchmark 1 runs it."""
    from bench.cost import run_personas
    from bench.personas import BY_NAME

    pool = await stack.database("replay")
    env = await stack.time_skipping()
    try:
        ((_, _, _, histories, _),) = await run_personas(env, pool, [BY_NAME["loyal_buyer"]])
    finally:
        await env.shutdown()
    return histories


async def record_trivial(stack: Stack) -> WorkflowHistory:
    env = await stack.time_skipping()
    try:
        task_queue = f"bench-noop-{uuid.uuid4().hex[:8]}"
        async with Worker(env.client, task_queue=task_queue, workflows=[NoopWorkflow], workflow_runner=WORKFLOW_RUNNER):
            handle = await env.client.start_workflow(
                NoopWorkflow.run, 1, id=f"noop-{uuid.uuid4().hex[:8]}", task_queue=task_queue,
                start_signal="event", start_signal_args=[{"type": "noop"}])
            await handle.result()
        return await handle.fetch_history()
    finally:
        await env.shutdown()


async def time_replays(replayer: Replayer, histories: list[WorkflowHistory], runs: int) -> list[float]:
    """Milliseconds per replay of all ``histories`` (the runs of one workflow), after one warm-up."""
    samples = []
    for n in range(runs + 1):
        started = time.perf_counter()
        # One replay worker for all the runs, as one worker replays whatever it is given.
        await replayer.replay_workflows(_each(histories))  # raises on nondeterminism
        if n:
            samples.append((time.perf_counter() - started) * 1000)
    return samples


async def measure(stack: Stack | None = None, quick: bool = False,
                  member_histories: list[WorkflowHistory] | None = None, runs: int | None = None) -> ReplayResult:
    runs = runs or (QUICK_RUNS if quick else RUNS)
    async with stack_for(stack) as stack:
        if member_histories is None:
            member_histories = await record_member_year(stack)
        trivial = await record_trivial(stack)
    member_replayer = Replayer(workflows=[MemberWorkflow], data_converter=DATA_CONVERTER,
                               workflow_runner=WORKFLOW_RUNNER)
    trivial_replayer = Replayer(workflows=[NoopWorkflow], data_converter=DATA_CONVERTER,
                                workflow_runner=WORKFLOW_RUNNER)
    member = await time_replays(member_replayer, member_histories, runs)
    longest = max(member_histories, key=lambda h: len(h.events))
    longest_run = await time_replays(member_replayer, [longest], runs)
    baseline = await time_replays(trivial_replayer, [trivial], runs)
    return ReplayResult(member_ms=median(member), trivial_ms=median(baseline),
                        member_events=sum(len(h.events) for h in member_histories),
                        trivial_events=len(trivial.events), runs=runs, member_samples=member,
                        member_tasks=sum(_tasks(h) for h in member_histories), trivial_tasks=_tasks(trivial),
                        longest_run_ms=median(longest_run), longest_run_events=len(longest.events),
                        longest_run_tasks=_tasks(longest), member_runs=len(member_histories))


async def _each(histories: list[WorkflowHistory]):
    for history in histories:
        yield history


def _tasks(history: WorkflowHistory) -> int:
    return sum(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED for e in history.events)


def report(result: ReplayResult) -> str:
    rows = [
        [f"loyal buyer, one year ({result.member_runs} runs)", result.member_events, result.member_tasks, f"{result.member_ms:.1f}",
         f"{min(result.member_samples):.1f}", f"{max(result.member_samples):.1f}",
         f"{result.member_ms / result.member_tasks:.2f}"],
        ["  its longest run (a cache miss, at worst)", result.longest_run_events, result.longest_run_tasks,
         f"{result.longest_run_ms:.1f}", "", "", f"{result.longest_run_ms / max(1, result.longest_run_tasks):.2f}"],
        ["trivial workflow (baseline)", result.trivial_events, result.trivial_tasks, f"{result.trivial_ms:.1f}",
         "", "", f"{result.trivial_ms / result.trivial_tasks:.2f}"],
    ]
    return "\n".join([
        f"== 4. Replay (Replayer, WORKFLOW_RUNNER sandbox, median of {result.runs}) ==",
        table(rows, ["history", "events", "workflow tasks", "median ms", "min ms", "max ms", "ms/task"]),
        f"member-year / trivial: {result.ratio:.1f}x",
    ])


if __name__ == "__main__":
    from bench.common import run_alone

    run_alone(__doc__.splitlines()[0], measure, report)
