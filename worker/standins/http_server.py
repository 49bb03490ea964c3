"""What the HTTP stand-ins share: an app served on a local port inside the running event
loop, and the faults a test or a newcomer asks for.

Faults are taken in order, one by each request to a stand-in's endpoint:

- ``error``: answer 500 (or another status and error code) and do nothing — nothing is taken;
- ``throttle``: answer 429 with ``Retry-After`` and do nothing;
- ``slow``: handle the request, then answer only after ``seconds`` — beyond the client's
  timeout the message is delivered but the client never learns it;
- ``lost_answer``: handle the request, then answer 500 — delivered, the answer says otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Self

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

FaultKind = Literal["error", "throttle", "slow", "lost_answer"]


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    status: int = 500
    code: str = "internal_error"
    retry_after: int = 1
    seconds: float = 0.0


class Faults:
    """The faults the next requests meet, in order."""

    def __init__(self) -> None:
        self._next: deque[Fault] = deque()

    def error(self, times: int = 1, status: int = 500, code: str = "internal_error") -> None:
        self._next.extend([Fault("error", status=status, code=code)] * times)

    def throttle(self, times: int = 1, retry_after: int = 1) -> None:
        self._next.extend([Fault("throttle", status=429, retry_after=retry_after)] * times)

    def slow(self, times: int = 1, seconds: float = 30.0) -> None:
        self._next.extend([Fault("slow", seconds=seconds)] * times)

    def lost_answer(self, times: int = 1) -> None:
        self._next.extend([Fault("lost_answer")] * times)

    def take(self) -> Fault | None:
        return self._next.popleft() if self._next else None

    def clear(self) -> None:
        self._next.clear()

    def __len__(self) -> int:
        return len(self._next)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the embedding process decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


class HttpStandIn:
    """Serves ``self.app`` on ``host:port`` (0: any free port) while entered."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.url = ""
        self.faults = Faults()
        self.app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        self._closing = asyncio.Event()
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    async def answer(self, request: Request, handle: Callable[[Request], Awaitable[Response]]) -> Response:
        """``handle(request)`` under the next fault, if one is waiting."""
        fault = self.faults.take()
        if fault is not None and fault.kind == "error":
            return JSONResponse({"error": {"code": fault.code}}, status_code=fault.status)
        if fault is not None and fault.kind == "throttle":
            return JSONResponse({"error": {"code": "rate_limited"}}, status_code=429,
                                headers={"Retry-After": str(fault.retry_after)})
        response = await handle(request)
        if fault is not None and fault.kind == "slow":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(fault.seconds):
                    await self._closing.wait()  # leaving the stand-in ends the wait
        if fault is not None and fault.kind == "lost_answer":
            return JSONResponse({"error": {"code": "internal_error"}}, status_code=500)
        return response

    async def __aenter__(self) -> Self:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._socket = socket.create_server((self.host, self.port), family=family)
        self._closing.clear()
        logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, logging.getLogger().level))
        config = uvicorn.Config(self.app, lifespan="off", log_config=None, access_log=False, server_header=False,
                                timeout_graceful_shutdown=2)
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                await self._task
                raise RuntimeError(f"{type(self).__name__} stopped while starting")
            await asyncio.sleep(0.01)
        host, self.port = self._socket.getsockname()[:2]
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._socket is not None:
            self._socket.close()
