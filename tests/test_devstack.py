"""The embedded dev stack with real PostgreSQL and a real Temporal dev server (no mocks)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import psutil
import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError

from worker.devstack import DevStack, free_port, start_embedded_postgres, start_temporal_dev_server
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
