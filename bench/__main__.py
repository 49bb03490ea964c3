"""``python -m bench [--quick]``: the six benchmarks, each beside a baseline measured in the same run.

1. cost per member-year (Temporal Cloud actions vs the floor)   python -m bench.cost
2. ingest throughput (events/s vs signal-with-start to a no-op) python -m bench.ingest
3. worker memory per cached member                              python -m bench.memory
4. replay of a member-year (vs a trivial workflow)              python -m bench.replay
5. preview speed (vs a bare test server)                        python -m bench.preview
6. carried state after 1, 5, 10 years (vs 1 year)               python -m bench.state_size

One embedded PostgreSQL and one dev server serve them all. Memory runs last (it
is the longest) within a time budget, so the whole run stays under twelve minutes.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import time
import traceback
from datetime import datetime, timezone
from importlib.metadata import version

import psutil

from bench import cost, ingest, memory, preview, replay, state_size
from bench.common import Stack, Target, arguments, cancel_on_sigterm, quiet_logging

ISSUE_14 = ("cost", "ingest", "memory", "replay")  # the benchmarks of issue 14's table
WHOLE_RUN = 720.0  # seconds: what is left of it is the memory benchmark's budget


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or model
    memory_gib = psutil.virtual_memory().total / 2**30
    return (f"{os.cpu_count()} cores, {memory_gib:.0f} GiB, {model}, "
            f"{datetime.now(timezone.utc):%Y-%m-%d}; Python {platform.python_version()}, "
            f"temporalio {version('temporalio')}")


async def main(quick: bool) -> int:
    started = time.monotonic()
    print(f"goldenroute benchmarks{' (--quick)' if quick else ''} — {machine()}\n", flush=True)
    targets: list[Target] = []
    failed: list[str] = []
    stack = Stack()
    try:
        async def run(name: str, measure, report, **options):
            began = time.monotonic()
            try:
                result = await measure(stack, quick=quick, **options)
            except Exception:
                failed.append(name)
                print(f"== {name}: FAILED ==\n{traceback.format_exc()}", flush=True)
                return None
            print(report(result), flush=True)
            print(f"({name}: {time.monotonic() - began:.0f} s)\n", flush=True)
            targets.extend(result.targets())
            return result

        await run("state", state_size.measure, state_size.report)
        costs = await run("cost", cost.measure, cost.report)
        loyal = costs.by_name("loyal_buyer").histories if costs else None
        await run("replay", replay.measure, replay.report, member_histories=loyal)
        await run("preview", preview.measure, preview.report)
        await run("ingest", ingest.measure, ingest.report)
        budget = max(60.0, WHOLE_RUN - (time.monotonic() - started))
        await run("memory", memory.measure, memory.report, budget=budget)
    finally:
        await stack.close()
    print(f"== Targets ({time.monotonic() - started:.0f} s in all; info: shown, not judged) ==")
    for target in targets:
        print(target.line())
    met = sum(t.met is True for t in targets)
    judged = sum(t.met is not None for t in targets)
    issue = [t for t in targets if t.benchmark in ISSUE_14 and t.met is not None]
    print(f"  {met} of {judged} targets met; issue 14's (actions, dollars, replay, ingest through HTTP, memory, "
          f"GC pause at 10,000): {sum(t.met is True for t in issue)} of {len(issue)}"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    print("  scale out (two workers, one killed -9 in a storm of 1,000 members): make faults, bench.scale_out")
    return 1 if failed else 0


if __name__ == "__main__":
    args = arguments(__doc__.splitlines()[0])
    quiet_logging()
    try:
        code = asyncio.run(cancel_on_sigterm(main(args.quick)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: servers stopped", file=sys.stderr)
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the SDK's native threads can abort a finalising interpreter (sdk-python#300)
