"""Unsubscribe links: a signed token that names the member and the channel to stop.

The email sender puts ``{PUBLIC_BASE_URL}/u/{token}`` in ``List-Unsubscribe`` (RFC 8058
one-click) and the HTTP ingress (``starter.ingress.loopback``) turns a POST to it into a
``consent_changed`` event. The token is its own proof: an HMAC-SHA256 over what it names,
keyed with ``UNSUBSCRIBE_SECRET``, so no table of issued links is kept. It carries its
issue date but never expires — a member who opens a mail from a year ago must still be
able to stop the mails (特定電子メール法) — and any change to it is refused.

    token = base64url("1.{channel}.{YYYYMMDD}.{member_id}") "." base64url(HMAC[:16])

About 60 characters for a typical member id: short enough for a mail header. No mailto
URI is offered: a mail sent to it would need a mailbox that reads and acts on it, and an
opt-out that nobody acts on is worse than none.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone

from pydantic import SecretStr

from workflows.events import CONSENT_CHANNELS

VERSION = "1"
PATH = "/u/"
# Keys the HMAC to this use only, should the secret ever be shared with another signer.
_PURPOSE = b"goldenroute/unsubscribe\x00"
_TAG_BYTES = 16  # 128 bits: forging one means guessing it
_CHANNELS = frozenset(c.value for c in CONSENT_CHANNELS)
_MAX_TOKEN = 1024  # a member id is at most 128 characters; anything longer is not ours


class InvalidToken(ValueError):
    """The token was not made with this secret, was changed, or names nothing we know."""


@dataclass(frozen=True)
class UnsubscribeToken:
    member_id: str
    channel: str  # email, line, sms, push or dm
    issued: date


def make_token(secret: SecretStr | str, member_id: str, channel: str, issued: date | None = None) -> str:
    if channel not in _CHANNELS:
        raise ValueError(f"no consent to withdraw on channel {channel!r}")
    if not member_id:
        raise ValueError("no member")
    issued = issued or datetime.now(timezone.utc).date()
    body = f"{VERSION}.{channel}.{issued:%Y%m%d}.{member_id}".encode()
    return f"{_b64(body)}.{_b64(_tag(secret, body))}"


def read_token(secret: SecretStr | str, token: str) -> UnsubscribeToken:
    """What a token names, if this secret made it; else InvalidToken."""
    if len(token) > _MAX_TOKEN or token.count(".") != 1:
        raise InvalidToken("malformed")
    encoded_body, encoded_tag = token.split(".")
    try:
        body, tag = _unb64(encoded_body), _unb64(encoded_tag)
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed") from None
    if not hmac.compare_digest(_tag(secret, body), tag):
        raise InvalidToken("signature")
    # Signed by us, so well formed unless the format changed under a later version.
    try:
        version, channel, issued, member_id = body.decode().split(".", 3)
        issued_on = datetime.strptime(issued, "%Y%m%d").date()
    except ValueError:
        raise InvalidToken("unreadable") from None
    if version != VERSION or channel not in _CHANNELS or not member_id:
        raise InvalidToken("unknown version or channel")
    return UnsubscribeToken(member_id=member_id, channel=channel, issued=issued_on)


def verify_token(secret: SecretStr | str, token: str) -> tuple[str, str]:
    """(member_id, channel) of a token this secret made; else InvalidToken."""
    read = read_token(secret, token)
    return read.member_id, read.channel


def unsubscribe_url(base_url: str, secret: SecretStr | str, member_id: str, channel: str,
                    issued: date | None = None) -> str:
    """``{base_url}/u/{token}``: the one-click URL (POST) and the confirmation page (GET)."""
    return f"{base_url.rstrip('/')}{PATH}{make_token(secret, member_id, channel, issued)}"


def email_unsubscribe(base_url: str, secret: SecretStr | str) -> Callable[[str, str], tuple[str, str]]:
    """What ``SmtpSender(unsubscribe=...)`` takes: (member_id, key) → (one-click URL, mailto)."""

    def links(member_id: str, key: str) -> tuple[str, str]:
        return unsubscribe_url(base_url, secret, member_id, "email"), ""

    return links


def _tag(secret: SecretStr | str, body: bytes) -> bytes:
    key = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if not key:
        raise ValueError("no unsubscribe secret")
    return hmac.new(key.encode(), _PURPOSE + body, hashlib.sha256).digest()[:_TAG_BYTES]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or not text.isascii():
        raise ValueError("empty or not ASCII")
    # validate=True: a character outside the URL-safe alphabet is an error, not skipped.
    raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    if _b64(raw) != text:  # '+', '/' or spare low bits: another spelling of the same bytes
        raise ValueError("not canonical")
    return raw
