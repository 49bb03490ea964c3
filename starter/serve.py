"""``goldenroute serve``: the HTTP ingress and its forwarder, in one process.

uvicorn runs inside the process's own event loop (not ``uvicorn.run``), so the same
code serves ``goldenroute serve`` and the embedded ``goldenroute dev``; signals stay
with the process — SIGTERM stops taking requests, lets those in flight finish, then
stops forwarding (what is not yet forwarded waits in the event log for the next
forwarder).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import signal
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import structlog
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from starter.ingress.forwarder import Forwarder
from starter.ingress.http import create_app
from worker.client import connect
from worker.main import database
from worker.settings import Settings

log = structlog.get_logger(__name__)

# Requests in flight get this long to finish when the process is asked to stop.
GRACEFUL_SHUTDOWN_SECONDS = 10
DEV_SOURCE = "dev"
DEV_SECRET_FILE = "ingress-dev-secret"


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the embedding process decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as error:
        raise RuntimeError(f"the HTTP ingress cannot listen on {host}:{port}: {error.strerror} "
                           f"(another one running? INGRESS_PORT chooses the port)") from None


@contextlib.asynccontextmanager
async def serving(app: FastAPI, forwarder: Forwarder | None, host: str, port: int) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` (0: any free port) with ``forwarder`` running beside it; yields the URL."""
    sock = _listen(host, port)
    # Our own ingress.* lines say when it starts and stops; uvicorn speaks up only about problems.
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, logging.getLogger().level))
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False, server_header=False,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)
    server = _EmbeddedServer(config)
    serve_task = asyncio.create_task(server.serve(sockets=[sock]))
    forward_task = asyncio.create_task(forwarder.run()) if forwarder else None
    try:
        while not server.started:
            if serve_task.done():
                await serve_task
                raise RuntimeError("the HTTP ingress stopped while starting")
            await asyncio.sleep(0.01)
        bound_host, bound_port = sock.getsockname()[:2]
        yield f"http://{'[' + bound_host + ']' if ':' in bound_host else bound_host}:{bound_port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serve_task
        if forward_task is not None:
            forward_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forward_task
        sock.close()


@contextlib.asynccontextmanager
async def ingress(settings: Settings, host: str, port: int, *, insecure: bool = False,
                  extend: Callable[[FastAPI, asyncpg.Pool], None] | None = None) -> AsyncIterator[str]:
    """The whole ingress on ``settings``: a client, a (migrated) pool, the forwarder and the app; yields the URL.
    ``extend`` adds routes on the same app and pool (``goldenroute dev``'s page of what members received)."""
    client = await connect(settings)
    async with database(settings) as pool:
        forwarder = Forwarder(pool, client, settings.task_queue)
        app = create_app(settings, pool, forwarder, client, insecure=insecure)
        if extend is not None:
            extend(app, pool)
        async with serving(app, forwarder, host, port) as url:
            yield url


async def serve(settings: Settings, host: str | None, port: int | None, insecure: bool) -> None:
    """Run until SIGTERM or SIGINT. Refuses to start without secrets unless ``insecure`` on loopback."""
    host = host or ("127.0.0.1" if insecure else settings.ingress_host)
    port = settings.ingress_port if port is None else port
    if insecure and not _is_loopback(host):
        raise RuntimeError(f"--insecure-dev accepts unsigned events, so it listens on 127.0.0.1 only, not {host}")
    if not settings.ingress_secrets and not insecure:
        raise RuntimeError("no ingress secrets: set GOLDENROUTE_INGRESS_SECRETS=source=secret,… "
                           "(or try it locally with --insecure-dev)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with ingress(settings, host, port, insecure=insecure) as url:
            log.info("ingress.started", url=url, sources=sorted(settings.ingress_secrets), insecure=insecure,
                     openapi=f"{url}/openapi.json")
            await stop.wait()
            log.info("ingress.stopping", grace_seconds=GRACEFUL_SHUTDOWN_SECONDS)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("ingress.stopped")


def dev_secret(settings: Settings) -> tuple[Settings, str | None]:
    """Settings for the dev stack's ingress: the configured secrets, or else a generated one
    for source ``dev``, kept in GOLDENROUTE_HOME so that it stays the same across runs (returned
    for the banner; a configured secret is never returned)."""
    if settings.ingress_secrets:
        return settings, None
    path = Path(settings.home).expanduser() / DEV_SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    secret = path.read_text().strip()
    return settings.model_copy(update={"ingress_secrets": {DEV_SOURCE: SecretStr(secret)}}), secret


DEV_LOOPBACK_FILES = {"unsubscribe_secret": "dev-unsubscribe-secret", "line_channel_secret": "dev-line-channel-secret"}


def dev_loopback(settings: Settings) -> Settings:
    """The dev stack's loop back (starter/ingress/loopback.py): UNSUBSCRIBE_SECRET and
    LINE_CHANNEL_SECRET, when unset, generated once into GOLDENROUTE_HOME (a link in a mail
    the stack sent yesterday must still work today)."""
    update: dict[str, SecretStr] = {}
    for field, name in DEV_LOOPBACK_FILES.items():
        if getattr(settings, field) is not None:
            continue
        path = Path(settings.home).expanduser() / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_hex(32))
        update[field] = SecretStr(path.read_text().strip())
    return settings.model_copy(update=update)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
