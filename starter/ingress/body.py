"""Reading a request body with a limit, for every route of the HTTP ingress."""

from __future__ import annotations

from fastapi import Request


class TooLarge(Exception):
    """The body (declared or streamed) is larger than the route takes."""


async def read_body(request: Request, limit: int) -> bytes:
    """The body, counted while it streams in: a sender that lies about its length is cut off at the limit."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)
