"""Request signing for the HTTP ingress: HMAC-SHA256 over the timestamp and the raw body.

The scheme LINE and EC-CUBE webhooks use (an HMAC of the exact bytes sent, keyed with
a secret per sender), plus a timestamp inside the signed text so that a captured
request cannot be replayed after the window:

    X-Goldenroute-Source:    the order system's name, as in GOLDENROUTE_INGRESS_SECRETS
    X-Goldenroute-Timestamp: unix seconds
    X-Goldenroute-Signature: hex(HMAC-SHA256(secret, f"{timestamp}." + raw body))

A refusal says only whether the timestamp or the signature failed: an unknown source,
a missing header and a wrong digest all read "signature", so a caller learns nothing
about which sources exist.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

from pydantic import SecretStr

SOURCE_HEADER = "X-Goldenroute-Source"
TIMESTAMP_HEADER = "X-Goldenroute-Timestamp"
SIGNATURE_HEADER = "X-Goldenroute-Signature"

# Compared against when the source is unknown, so that case takes as long as a wrong digest.
_NO_SECRET = b"goldenroute: no such source"


class Unauthorized(Exception):
    def __init__(self, reason: str) -> None:  # "signature" or "timestamp"
        super().__init__(reason)
        self.reason = reason


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signed_headers(source: str, secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The three headers an order system sends with ``body`` (for clients, tests and the bench)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {SOURCE_HEADER: source, TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def check_timestamp(value: str | None, now: float, window: int) -> int:
    """The request's timestamp if it lies within ``window`` seconds of ``now``; checked before the body is read."""
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 12:
        raise Unauthorized("timestamp")
    timestamp = int(value)
    if abs(now - timestamp) > window:
        raise Unauthorized("timestamp")
    return timestamp


def verify(secrets: Mapping[str, SecretStr], source: str | None, timestamp: int, signature: str | None,
           body: bytes) -> str:
    """The source whose secret signed ``body``, or Unauthorized("signature")."""
    secret = secrets.get(source) if source else None
    key = secret.get_secret_value().encode() if secret else _NO_SECRET
    expected = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    given = (signature or "").strip().lower()
    if not hmac.compare_digest(expected.encode(), given.encode("ascii", "replace")) or secret is None:
        raise Unauthorized("signature")
    return source  # type: ignore[return-value]  # secret is not None, so source is a str
