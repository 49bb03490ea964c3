"""The embedded dev stack with real PostgreSQL and a real Temporal dev server (no mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import psutil
import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError

from worker.devstack import (DevStack, free_port, recover_leftovers, start_embedded_postgres,
                             start_temporal_dev_server)
from worker.discovery import RunningStack, publish
from worker.settings import Settings
from workflows.search import CLI_TYPES

NAMESPACE = "devstack-test"
PROJECT = Path(__file__).resolve().parents[1]
START_POSTGRES_AND_PRINT_PID = """
import sys
from pathlib import Path
from worker.devstack import start_embedded_postgres
print(start_embedded_postgres(Path(sys.argv[1])).server.get_pid())
"""


def _processes_using(path: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if process.info["status"] != psutil.STATUS_ZOMBIE and any(str(path) in a for a in cmdline):
            found.append(process)
    return found


async def test_embedded_postgres_starts_serves_and_is_reused(tmp_path: Path) -> None:
    db = start_embedded_postgres(tmp_path / "home" / "pgdata")
    try:
        assert db.database_url.startswith("postgresql://") and "/goldenroute?" in db.database_url
        connection = await asyncpg.connect(db.database_url)
        try:
            assert await connection.fetchval("select 1") == 1
            assert await connection.fetchval("select current_database()") == "goldenroute"
        finally:
            await connection.close()
        again = start_embedded_postgres(tmp_path / "home" / "pgdata")
        assert again.server.get_pid() == db.server.get_pid()
        # Another process (a second `goldenroute dev`, or one after a crash) reuses it too.
        other = subprocess.run(
            [sys.executable, "-c", START_POSTGRES_AND_PRINT_PID, str(tmp_path / "home" / "pgdata")],
            cwd=PROJECT, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        assert int(other.stdout.split()[-1]) == db.server.get_pid()
    finally:
        db.stop()
    db.stop()  # idempotent

    restarted = start_embedded_postgres(tmp_path / "home" / "pgdata")
    try:
        connection = await asyncpg.connect(restarted.database_url)
        assert await connection.fetchval("select 1") == 1
        await connection.close()
    finally:
        restarted.stop()


async def _custom_search_attributes(client: Client) -> dict[str, int]:
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=NAMESPACE)
    )
    return dict(listed.custom_attributes)


async def test_temporal_dev_server_has_search_attributes_and_survives_restart(tmp_path: Path) -> None:
    db_file = tmp_path / "temporal.db"
    port, ui_port = free_port(), free_port()
    workflow_id = f"member-{uuid.uuid4()}"

    server = await start_temporal_dev_server(
        db_file, port=port, ui_port=ui_port, namespace=NAMESPACE, dynamic_config={"limit.maxIDLength": 64}
    )
    try:
        assert server.address == f"127.0.0.1:{port}"
        client = await Client.connect(server.address, namespace=NAMESPACE)
        attributes = await _custom_search_attributes(client)
        for name, kind in CLI_TYPES.items():
            assert attributes[name] == IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{kind.upper()}")
        await client.start_workflow("AnyType", id=workflow_id, task_queue="nobody")
        with pytest.raises(RPCError, match="length"):  # the dynamic config value took effect
            await client.start_workflow("AnyType", id="x" * 65, task_queue="nobody")
        with pytest.raises(RuntimeError, match="in use"):
            await start_temporal_dev_server(
                tmp_path / "other.db", port=port, ui_port=free_port(), namespace=NAMESPACE
            )
    finally:
        await server.stop()
    assert server.process.returncode is not None

    restarted = await start_temporal_dev_server(
        db_file, port=port, ui_port=ui_port, namespace=NAMESPACE, headless=True
    )
    try:
        client = await Client.connect(restarted.address, namespace=NAMESPACE)
        description = await client.get_workflow_handle(workflow_id).describe()
        assert description.workflow_type == "AnyType"
        assert set(CLI_TYPES) <= set(await _custom_search_attributes(client))
    finally:
        await restarted.stop()


async def test_dev_stack_starts_both_and_publishes_its_addresses(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", temporal_port=free_port(), ui_port=free_port())
    async with DevStack(settings) as stack:
        assert stack.settings.temporal_address == f"127.0.0.1:{settings.temporal_port}"
        assert stack.settings.database_url is not None
        assert stack.ui_url == f"http://localhost:{settings.ui_port}"
        published = json.loads(settings.dev_stack_file.read_text())
        assert published | {"pids": {}} == {
            "temporal_address": stack.settings.temporal_address,
            "database_url": stack.settings.database_url,
            "temporal_namespace": settings.temporal_namespace,
            "task_queue": settings.task_queue,
            "ui_url": stack.ui_url,
            "home": str(settings.home.resolve()),
            "pids": {},
        }
        # The processes it started, so that a stack whose `dev` was killed is not taken for running.
        assert set(published["pids"]) == {"dev", "postgres", "temporal"}
        assert settings.with_dev_stack() == stack.settings
        connection = await asyncpg.connect(stack.settings.database_url)
        assert await connection.fetchval("select 1") == 1
        await connection.close()
        await Client.connect(stack.settings.temporal_address, namespace=settings.temporal_namespace)
    assert not settings.dev_stack_file.exists()
    assert not (settings.home / "pgdata" / "postmaster.pid").exists()


async def test_dev_stack_starts_nothing_when_both_addresses_are_given(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path, temporal_address="elsewhere:7233", database_url="postgresql://x@y/z"
    )
    async with DevStack(settings) as stack:
        assert stack.settings == settings and stack.ui_url is None
        assert json.loads(settings.dev_stack_file.read_text())["ui_url"] is None
    assert not settings.dev_stack_file.exists()
    assert not (tmp_path / "pgdata").exists()


async def test_dev_stack_stops_what_it_started_when_the_body_fails(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, temporal_address="elsewhere:7233", temporal_port=free_port())
    with pytest.raises(RuntimeError, match="body failed"):
        async with DevStack(settings) as stack:
            assert stack.settings.database_url is not None
            raise RuntimeError("body failed")
    assert not settings.dev_stack_file.exists()
    assert not (tmp_path / "pgdata" / "postmaster.pid").exists()


async def test_temporal_dev_server_that_dies_reports_its_log(tmp_path: Path) -> None:
    unusable = tmp_path / "a-directory.db"
    unusable.mkdir()
    with pytest.raises(RuntimeError, match="exited with code") as raised:
        server = await start_temporal_dev_server(
            unusable, port=free_port(), ui_port=free_port(), namespace=NAMESPACE
        )
        await server.stop()  # not reached unless the test is broken; then don't leak the server
    assert "unable to open database file" in str(raised.value)  # the tail of the server's log


async def test_dev_stack_stops_temporal_when_cancelled_while_running_or_starting(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path, database_url="postgresql://x@y/z", temporal_port=free_port(), ui_port=free_port()
    )
    entered = asyncio.Event()

    async def run() -> None:
        async with DevStack(settings):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(run())
    await asyncio.wait_for(entered.wait(), 30)
    assert _processes_using(tmp_path / "temporal.db")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not settings.dev_stack_file.exists()
    assert not _processes_using(tmp_path / "temporal.db")

    entered.clear()
    task = asyncio.create_task(run())
    while not _processes_using(tmp_path / "temporal.db"):
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not entered.is_set()  # cancelled while the server was still starting
    assert not _processes_using(tmp_path / "temporal.db")


# --- one stack per home; a killed `goldenroute dev` leaves servers behind, the next one recovers ---

BIN = Path(sys.executable).parent
EXAMPLE = PROJECT / "examples" / "sample_converts.ndjson"
EXAMPLE_MEMBER = "m-sample-001"
STARTUP_TIMEOUT = 60.0


def _goldenroute() -> list[str]:
    script = BIN / "goldenroute"
    return [str(script)] if script.exists() else [sys.executable, "-m", "starter.cli"]


def _dev_env(home: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if name not in {"TEMPORAL_ADDRESS", "DATABASE_URL", "TEMPORAL_NAMESPACE", "TASK_QUEUE"}}
    env.update({
        "GOLDENROUTE_HOME": str(home), "XDG_STATE_HOME": str(home / "user-state"),
        "TEMPORAL_PORT": str(free_port()), "TEMPORAL_UI_PORT": str(free_port()),
        "INGRESS_PORT": str(free_port()), "METRICS_PORT": str(free_port()),
        "LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1",
    })
    return env


def _start_dev(env: dict[str, str], stderr_file: Path) -> subprocess.Popen[bytes]:
    with stderr_file.open("wb") as stderr:
        return subprocess.Popen([*_goldenroute(), "dev"], cwd=PROJECT, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)


def _wait_until_up(process: subprocess.Popen[bytes], stderr_file: Path) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        text = stderr_file.read_text(errors="replace")
        if '"worker.started"' in text:
            return text
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"`goldenroute dev` not up (exit code {process.poll()}):\n{text[-4000:]}")
        time.sleep(0.1)


def _log_events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _servers(home: Path) -> dict[str, list[int]]:
    """The Temporal dev server and the PostgreSQL postmaster running on this home's data."""
    found: dict[str, list[int]] = {"temporal": [], "postgres": []}
    for process in _processes_using(home):
        with contextlib.suppress(psutil.Error):
            name = Path(process.cmdline()[0]).name
            if name in found:
                found[name].append(process.pid)
    return found


def _stop_leftovers(processes: list[subprocess.Popen[bytes]], home: Path) -> None:
    """Whatever happened above, leave nothing running: only what this test started, by PID."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    leftovers = _processes_using(home)
    for leftover in leftovers:
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.terminate()
    _, alive = psutil.wait_procs(leftovers, timeout=10)
    for leftover in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.kill()


def _run(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*_goldenroute(), *args], cwd=PROJECT, env=env, input=stdin,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def _member_state(env: dict[str, str]) -> dict:
    deadline = time.monotonic() + 30
    while True:
        state = json.loads(_run(env, "state", EXAMPLE_MEMBER, "--json").stdout)
        if state["purchase_count"] == 1 or time.monotonic() > deadline:  # its events folded in
            return state
        time.sleep(0.3)


async def _events_logged(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetchval("SELECT count(*) FROM member_events WHERE member_id = $1", EXAMPLE_MEMBER)
    finally:
        await connection.close()


async def test_a_killed_dev_leaves_servers_that_the_next_dev_stops_and_starts_afresh(tmp_path: Path) -> None:
    home = (tmp_path / "home").resolve()
    env = _dev_env(home)
    started: list[subprocess.Popen[bytes]] = []
    try:
        first = _start_dev(env, tmp_path / "first.log")
        started.append(first)
        _wait_until_up(first, tmp_path / "first.log")
        record = json.loads((home / "dev-stack.json").read_text())
        _run(env, "send", str(EXAMPLE))
        before = _member_state(env)
        assert before["purchase_count"] == 1, before
        logged = await _events_logged(record["database_url"])
        assert logged == len(EXAMPLE.read_text().splitlines())

        os.kill(first.pid, signal.SIGKILL)  # the dev process only: its servers run in sessions of their own
        first.wait(10)
        left = _servers(home)
        assert left == {"temporal": [record["pids"]["temporal"]], "postgres": [record["pids"]["postgres"]]}

        second = _start_dev(env, tmp_path / "second.log")  # the same home and ports
        started.append(second)
        text = _wait_until_up(second, tmp_path / "second.log")
        assert "goldenroute dev stack is up" in text
        stopped = {(e["process"], e["pid"]) for e in _log_events(text) if e.get("event") == "devstack.leftover"}
        assert stopped == {("temporal", record["pids"]["temporal"]), ("postgres", record["pids"]["postgres"])}
        now = _servers(home)
        assert len(now["temporal"]) == 1 and len(now["postgres"]) == 1, now
        assert not set(now["temporal"] + now["postgres"]) & set(left["temporal"] + left["postgres"])
        republished = json.loads((home / "dev-stack.json").read_text())
        assert republished["pids"] == {"dev": second.pid, "temporal": now["temporal"][0],
                                       "postgres": now["postgres"][0]}

        # What was sent before is still there: in the workflow, and in the event log.
        after = _member_state(env)
        assert {k: after[k] for k in ("member_id", "purchase_count", "stage")} == \
            {k: before[k] for k in ("member_id", "purchase_count", "stage")}
        assert await _events_logged(republished["database_url"]) == logged

        second.send_signal(signal.SIGINT)
        assert second.wait(30) == 0
        deadline = time.monotonic() + 10
        while _processes_using(home) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert _servers(home) == {"temporal": [], "postgres": []}
    finally:
        _stop_leftovers(started, home)


async def test_a_stranger_on_the_port_is_named_and_nothing_of_ours_is_stopped(tmp_path: Path) -> None:
    home = (tmp_path / "home").resolve()
    # A PostgreSQL left running in this home (as by a killed dev), and a stranger on the Temporal port.
    leftover = subprocess.run([sys.executable, "-c", START_POSTGRES_AND_PRINT_PID, str(home / "pgdata")],
                              cwd=PROJECT, capture_output=True, text=True, check=True, timeout=60)
    postgres_pid = int(leftover.stdout.split()[-1])
    port = free_port()
    stranger = subprocess.Popen(
        [sys.executable, "-c", "import socket, sys, time\n"
         "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); print('ready', flush=True)\n"
         "time.sleep(120)", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert stranger.stdout is not None and stranger.stdout.readline().strip() == "ready"
        settings = Settings(home=home, temporal_port=port, ui_port=free_port())
        with pytest.raises(RuntimeError) as raised:
            async with DevStack(settings):
                pass
        message = str(raised.value)
        assert f"port {port} (TEMPORAL_PORT)" in message and f"pid {stranger.pid} (" in message, message
        assert "nothing was stopped" in message
        assert stranger.poll() is None
        assert psutil.pid_exists(postgres_pid) and _servers(home)["postgres"] == [postgres_pid]
        assert not settings.dev_stack_file.exists()
    finally:
        stranger.kill()
        stranger.wait()
        start_embedded_postgres(home / "pgdata").stop()


def test_a_stale_record_naming_other_processes_gets_none_of_them_signalled(tmp_path: Path) -> None:
    """PIDs are recycled: a record's PID counts only when its command line names this home's data."""
    home = (tmp_path / "home").resolve()
    home.mkdir()
    strangers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(2)]
    try:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        record = RunningStack(temporal_address="127.0.0.1:1", home=str(home),
                              pids={"dev": dead.pid, "temporal": strangers[0].pid, "postgres": strangers[1].pid})
        publish(home / "dev-stack.json", record)
        leftovers = recover_leftovers(home, postgres=True, temporal=True, ports={})
        assert (leftovers.temporal, leftovers.postgres, leftovers.dev_pid) == ([], None, dead.pid)
        assert all(s.poll() is None for s in strangers)
    finally:
        for stranger in strangers:
            stranger.kill()
            stranger.wait()


async def test_a_second_dev_on_the_same_home_is_refused_and_stops_nothing(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url="postgresql://x@y/z",
                        temporal_port=free_port(), ui_port=free_port())
    async with DevStack(settings) as running:
        other = settings.model_copy(update={"temporal_port": free_port(), "ui_port": free_port()})
        with pytest.raises(RuntimeError, match=rf"another goldenroute dev \(pid {os.getpid()}\) is running"):
            async with DevStack(other):
                pass
        client = await Client.connect(running.settings.temporal_address, namespace=settings.temporal_namespace)
        await client.count_workflows()  # still serving
        assert json.loads(settings.dev_stack_file.read_text())["pids"]["dev"] == os.getpid()
    assert not _processes_using(tmp_path / "temporal.db")
