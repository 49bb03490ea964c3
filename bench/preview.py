"""Benchmark 5 — preview speed: one member-year through ``goldenroute preview``.

Wall time of ``goldenroute preview examples/preview/07_loyal_monthly.ndjson --json``
as the user runs it (``starter.cli.main``, its standard output captured): a
time-skipping test server of its own, search attributes registered, the real
MemberWorkflow with dry-run channels, 25 events over 365 simulated days.

Baseline: the bare time-skipping test server started, one trivial workflow run
on it (``bench/noop.py``: signal-with-start, completes), the server shut down —
what any preview must spend before it does anything of its own. Each figure is
the median of several runs.

    python -m bench.preview [--quick]
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from contextlib import redirect_stdout
from dataclasses import dataclass

from temporalio.worker import Worker

from bench.common import ROOT, Stack, Target, median, requiet_logging, start_time_skipping, table
from bench.noop import NoopWorkflow
from worker.main import WORKFLOW_RUNNER

EXAMPLE = ROOT / "examples" / "preview" / "07_loyal_monthly.ndjson"
RUNS, QUICK_RUNS = 3, 1


@dataclass
class PreviewResult:
    preview_s: list[float]
    baseline_s: list[float]
    touches: int

    @property
    def preview(self) -> float:
        return median(self.preview_s)

    @property
    def baseline(self) -> float:
        return median(self.baseline_s)

    @property
    def ratio(self) -> float:
        return self.preview / self.baseline

    def targets(self) -> list[Target]:
        return [Target("preview", f"{self.preview:.2f} s per member-year ({self.ratio:.1f}x bare server)",
                       "none (README: about a second)", None)]


def preview_once(path=EXAMPLE) -> tuple[float, str]:
    """``goldenroute preview PATH --json`` in this process: (seconds, standard output). Blocking."""
    from starter.cli import main

    output = io.StringIO()
    started = time.perf_counter()
    with redirect_stdout(output):
        code = main(["preview", str(path), "--json"])
    seconds = time.perf_counter() - started
    requiet_logging()  # the CLI configured logging for itself
    if code != 0:
        raise RuntimeError(f"goldenroute preview exited {code}")
    return seconds, output.getvalue()


async def baseline_once() -> float:
    started = time.perf_counter()
    env = await start_time_skipping(register=False)
    try:
        task_queue = f"bench-noop-{uuid.uuid4().hex[:8]}"
        async with Worker(env.client, task_queue=task_queue, workflows=[NoopWorkflow],
                          workflow_runner=WORKFLOW_RUNNER):
            await env.client.execute_workflow(
                NoopWorkflow.run, 1, id=f"noop-{uuid.uuid4().hex[:8]}", task_queue=task_queue,
                start_signal="event", start_signal_args=[{"type": "noop"}])
    finally:
        await env.shutdown()
    return time.perf_counter() - started


async def measure(stack: Stack | None = None, quick: bool = False, runs: int | None = None) -> PreviewResult:
    """Needs nothing from the stack: the preview and its baseline start their own servers."""
    runs = runs or (QUICK_RUNS if quick else RUNS)
    previews, baselines, touches = [], [], 0
    for _ in range(runs):  # alternated, so machine noise hits both alike
        seconds, output = await asyncio.to_thread(preview_once)
        previews.append(seconds)
        touches = len(json.loads(output))
        baselines.append(await baseline_once())
    return PreviewResult(preview_s=previews, baseline_s=baselines, touches=touches)


def report(result: PreviewResult) -> str:
    rows = [
        [f"goldenroute preview {EXAMPLE.name} --json ({result.touches} touches)", f"{result.preview:.2f}",
         f"{min(result.preview_s):.2f}", f"{max(result.preview_s):.2f}"],
        ["bare test server + one trivial workflow (baseline)", f"{result.baseline:.2f}",
         f"{min(result.baseline_s):.2f}", f"{max(result.baseline_s):.2f}"],
    ]
    return "\n".join([
        f"== 5. Preview speed (median of {len(result.preview_s)}) ==",
        table(rows, ["", "median s", "min s", "max s"]),
        f"preview / baseline: {result.ratio:.1f}x; the member-year itself adds "
        f"{result.preview - result.baseline:.2f} s",
    ])


if __name__ == "__main__":
    from bench.common import run_alone

    run_alone(__doc__.splitlines()[0], measure, report)
