"""What every benchmark shares: the embedded servers, a quiet runtime, timing and printing.

A :class:`Stack` starts each server the first time a benchmark asks for it and
stops them all at the end, so ``python -m bench`` starts PostgreSQL and the dev
server once for all five benchmarks, and ``python -m bench.cost`` only what it needs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, NoReturn, Sequence

import asyncpg
import psutil
from temporalio.testing import WorkflowEnvironment

from worker.client import quiet_runtime
from worker.converter import DATA_CONVERTER

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def binary(name: str) -> str:
    """A binary shipped in the venv (temporal, temporal-test-server), or on PATH."""
    found = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        raise RuntimeError(f"{name} not found next to {sys.executable} or on PATH: run `make install`")
    return found


_quiet = False


def quiet_logging() -> None:
    """The engine logs through structlog; a benchmark prints only its figures."""
    from worker.logging import configure_logging

    global _quiet
    _quiet = True
    configure_logging("console", "WARNING")
    logging.getLogger("temporalio").setLevel(logging.ERROR)


def requiet_logging() -> None:
    """After something configured logging its own way (the CLI): quiet again, if the benchmark was."""
    if _quiet:
        quiet_logging()


class Stack:
    """Embedded servers, each started on first use and stopped by :meth:`close`."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="goldenroute-bench-"))
        self._postgres = None
        self._dev: WorkflowEnvironment | None = None
        self._lock = asyncio.Lock()
        self._pools: list[asyncpg.Pool] = []
        self.database_urls: dict[asyncpg.Pool, str] = {}  # for a process of its own (a worker child)

    async def database(self, label: str) -> asyncpg.Pool:
        """A fresh, migrated database on the embedded PostgreSQL (started once)."""
        from activities import db
        from worker.devstack import start_embedded_postgres

        async with self._lock:
            if self._postgres is None:
                self._postgres = await asyncio.to_thread(start_embedded_postgres, self.home / "pgdata")
                OUR_PGDATA.add(str((self.home / "pgdata").resolve()))
        url = self._postgres.database_url
        name = f"bench_{label}_{uuid.uuid4().hex[:6]}"
        admin = await asyncpg.connect(url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        pool = await db.create_pool(_with_database(url, name), max_size=10)
        await db.migrate(pool)
        self._pools.append(pool)
        self.database_urls[pool] = _with_database(url, name)
        return pool

    async def dev_server(self) -> WorkflowEnvironment:
        """The Temporal dev server (CLI), with goldenroute's search attributes registered."""
        from workflows import search

        async with self._lock:
            if self._dev is None:
                # The CLI prints its banner and warnings on the standard streams it inherits: a log file.
                with _streams_to(self.home / "temporal-dev.log"):
                    self._dev = await WorkflowEnvironment.start_local(
                        data_converter=DATA_CONVERTER,
                        dev_server_existing_path=binary("temporal"),
                        search_attributes=list(search.ALL),
                        runtime=quiet_runtime(),
                    )
        return self._dev

    async def time_skipping(self) -> WorkflowEnvironment:
        """A new time-skipping test server (its clock only moves forward: one per benchmark)."""
        return await start_time_skipping()

    async def close(self) -> None:
        for pool in self._pools:
            with contextlib.suppress(Exception):
                await pool.close()
        if self._dev is not None:
            with contextlib.suppress(Exception):
                await self._dev.shutdown()
        if self._postgres is not None:
            await asyncio.to_thread(self._postgres.stop)
        shutil.rmtree(self.home, ignore_errors=True)


@contextlib.contextmanager
def _streams_to(log_file: Path):
    """Point file descriptors 1 and 2 at ``log_file`` while a child process is spawned (it keeps them)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log_file, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def _with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def start_time_skipping(register: bool = True) -> WorkflowEnvironment:
    from worker.client import register_search_attributes

    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=DATA_CONVERTER,
        test_server_existing_path=binary("temporal-test-server"),
        runtime=quiet_runtime(),
    )
    if register:
        await register_search_attributes(env.client, env.client.namespace)
    return env


@contextlib.asynccontextmanager
async def stack_for(existing: Stack | None) -> AsyncIterator[Stack]:
    """Use ``existing`` (``python -m bench``) or a stack of one's own (a benchmark run alone)."""
    if existing is not None:
        yield existing
        return
    stack = Stack()
    try:
        yield stack
    finally:
        await stack.close()


# --- CPU accounting --------------------------------------------------------------------


# The data folders of the PostgreSQL servers this process's stacks started (the CPU meter counts
# only those: the machine is shared, and another PostgreSQL or Temporal server is not ours).
OUR_PGDATA: set[str] = set()


class CpuMeter:
    """CPU seconds used by this process, the Temporal server(s) and PostgreSQL between start and read.

    Only this run's servers: a Temporal server that is a child of this process (the dev server,
    the time-skipping servers) and PostgreSQL processes of a data folder in ``OUR_PGDATA`` (the
    postmaster and its backends).
    """

    _ours: dict[int, bool] = {}  # pid → one of ours (decided once per process)

    def __init__(self) -> None:
        self._start = self._sample()

    @classmethod
    def _kind(cls, process: psutil.Process) -> str | None:
        if process.pid == os.getpid():
            return "python"
        name = process.info["name"] or ""
        kind = "temporal" if name.startswith("temporal") else "postgres" if name.startswith("postgres") else None
        if kind is None:
            return None
        if process.pid not in cls._ours:
            cls._ours[process.pid] = cls._is_ours(process, kind)
        return kind if cls._ours[process.pid] else None

    @staticmethod
    def _is_ours(process: psutil.Process, kind: str) -> bool:
        if kind == "temporal":
            return any(parent.pid == os.getpid() for parent in process.parents())
        for candidate in (process, process.parent()):  # the postmaster, or a backend's postmaster
            if candidate is not None and any(d in " ".join(candidate.cmdline()) for d in OUR_PGDATA):
                return True
        return False

    def _sample(self) -> dict[int, tuple[str, float]]:
        found = {}
        for process in psutil.process_iter(["name"]):
            try:
                kind = self._kind(process)
                if kind:
                    times = process.cpu_times()
                    found[process.pid] = (kind, times.user + times.system)
            except psutil.Error:
                continue
        return found

    def read(self) -> dict[str, float]:
        used: dict[str, float] = {"python": 0.0, "temporal": 0.0, "postgres": 0.0}
        for pid, (kind, seconds) in self._sample().items():
            used[kind] += seconds - self._start.get(pid, (kind, 0.0))[1]
        return used


# --- timing --------------------------------------------------------------------------------


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await call()
    return time.perf_counter() - start


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.1,
                     what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


# --- reporting -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One target line of the summary: the figure, what it must be, and whether it is."""

    benchmark: str
    figure: str
    goal: str
    met: bool | None  # None: no target (a figure for information)

    def line(self) -> str:
        mark = {True: "MET   ", False: "MISSED", None: "info  "}[self.met]
        return f"  {mark} {self.benchmark:<8} {self.figure:<44} target {self.goal}"


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def arguments(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    return parser.parse_args(argv)


async def cancel_on_sigterm(coroutine):
    """Run ``coroutine``; SIGTERM cancels it (as Ctrl-C does), so the servers it started are stopped."""
    import signal

    task = asyncio.ensure_future(coroutine)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await task
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def exit_with(main) -> NoReturn:
    """Run ``main`` (a coroutine returning an exit status) with quiet logging, SIGTERM and Ctrl-C
    stopping its servers (130), and leave at once with its status."""
    quiet_logging()
    code = 130
    try:
        code = asyncio.run(cancel_on_sigterm(main)) or 0
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: servers stopped", file=sys.stderr)
    sys.stdout.flush()
    # The SDK's native threads can abort a finalising interpreter (temporalio/sdk-python#300).
    os._exit(code)


def run_alone(description: str, measure, report, argv: list[str] | None = None) -> None:
    """``python -m bench.X [--quick]``: one benchmark with a stack of its own; prints its report."""
    args = arguments(description, argv)

    async def main() -> int:
        async with stack_for(None) as stack:
            result = await measure(stack, quick=args.quick)
        print(report(result))
        for target in result.targets():
            print(target.line())
        return 0

    exit_with(main())
