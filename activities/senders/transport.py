"""What the HTTP senders share: one POST whose network failures become ``Retryable``, and
the vendor's ``Retry-After``.

The reasons say whether the request may have reached the vendor, which is what decides
whether repeating it is safe where the vendor keeps no idempotency key (SMS):
``<vendor>:unreachable`` — no connection was made, nothing was sent; ``<vendor>:timeout``
and ``<vendor>:connection`` — the request may have been received and acted on.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

from activities.senders.base import Retryable

# A vendor asking for longer than this is asked again sooner: Temporal's retry policy decides.
MAX_RETRY_AFTER = 3600.0


async def post(client: httpx.AsyncClient, url: str, *, vendor: str, content: bytes,
               headers: Mapping[str, str], timeout: float) -> httpx.Response:
    try:
        return await client.post(url, content=content, headers=headers, timeout=timeout)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout):
        raise Retryable(f"{vendor}:unreachable") from None
    except httpx.TimeoutException:
        raise Retryable(f"{vendor}:timeout", maybe_delivered=True) from None
    except httpx.TransportError:
        raise Retryable(f"{vendor}:connection", maybe_delivered=True) from None


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def error_code(response: httpx.Response) -> str:
    """The vendor's error code from a JSON body ``{"error": {"code": …}}`` or ``{"error": "…"}``."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return "unknown"
    code = error.get("code") if isinstance(error, dict) else error
    code = str(code)[:40] if isinstance(code, (str, int)) else ""
    return code if code.isprintable() and code.strip() else "unknown"


def response_id(response: httpx.Response) -> str | None:
    """The ``id`` of a JSON answer, the vendor's name for what it accepted."""
    try:
        found = response.json().get("id")
    except (ValueError, AttributeError):
        return None
    return str(found) if isinstance(found, (str, int)) and found != "" else None
