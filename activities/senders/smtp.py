"""Email over SMTP: one touch, one connection, one transaction (aiosmtplib).

One connection per send rather than a pool: touches leave one member's workflow at a
time, not as a batch, so a kept-open connection would mostly sit idle until the server
closes it; a fresh session cannot inherit a half-finished transaction or a dropped
socket from the previous member's send, and every failure belongs to exactly one
message. The price, a handshake per message, is small at a shop's volumes.

How a send ends: 250 after DATA → ``SendResult``. A reply in the transaction (MAIL, RCPT,
DATA) decides by its class: 4xx → ``Retryable``, 5xx → ``Rejected("smtp:<code>:<text>")``.
Failures before the transaction (connect, EHLO, STARTTLS, AUTH) are about the shop's
setup, not the message, so they are ``Retryable`` whatever the code, as is an AUTH reply
(530, 535, ...) at any stage: rejecting would mark every member's touch as refused for
good because of a wrong password. A dropped
connection or a timeout after the message was handed over may still have delivered it;
its reason says so, and whether to try again is the delivery activity's call (SPEC §5).
The recipient is personal data: it is never logged, and removed from server replies.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from datetime import datetime, timezone

import aiosmtplib
import structlog

from activities.render import RenderedMessage
from activities.senders.base import Rejected, Retryable, SendResult
from activities.senders.mail import DkimKey, MailSender, compose, message_id
from workflows.events import Channel

log = structlog.get_logger(__name__)

Unsubscribe = Callable[[str, str], tuple[str, str]]  # (member_id, key) → (one-click https URL, mailto)
_QUEUE_ID = re.compile(r"queued as ([A-Za-z0-9._-]+)|\bid=([A-Za-z0-9._-]+)", re.IGNORECASE)
# "Authentication required / failed / too weak / needs encryption": the shop's setup, even mid-transaction.
_SETUP_CODES = frozenset({530, 534, 535, 538})
_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>]+>?")


class SmtpSender:
    channel = Channel.EMAIL

    def __init__(self, host: str, port: int, *, username: str | None = None, password: str | None = None,
                 starttls: bool | None = None, use_tls: bool = False, timeout: float = 30,
                 sender_name: str, sender_address: str, reply_to: str | None = None,
                 unsubscribe: Unsubscribe | None = None, dkim: DkimKey | None = None,
                 tls_context: ssl.SSLContext | None = None, local_hostname: str | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        """``starttls``: True requires it, None uses it when offered, False never (False with
        ``use_tls``, implicit TLS on 465). ``local_hostname`` (the EHLO name) defaults to the
        sender's domain, which spares a reverse DNS lookup per send."""
        if use_tls and starttls:
            raise ValueError("use_tls (implicit TLS) and starttls exclude each other")
        self.sender = MailSender(name=sender_name, address=sender_address, reply_to=reply_to)
        self._unsubscribe = unsubscribe
        self._dkim = dkim
        self._clock = clock
        self._client_options = dict(
            hostname=host, port=port, username=username, password=password, timeout=timeout,
            use_tls=use_tls, start_tls=False if use_tls else starttls, tls_context=tls_context,
            local_hostname=local_hostname or self.sender.domain)

    async def send(self, message: RenderedMessage, key: str, member_id: str) -> SendResult:
        recipient, subject = message.recipient, message.subject
        if not recipient or not _plain_address(recipient):
            raise Rejected("smtp:invalid:recipient" if recipient else "smtp:invalid:no recipient")
        if not subject:
            raise Rejected("smtp:invalid:no subject")
        unsubscribe = self._unsubscribe(member_id, key) if self._unsubscribe else None
        try:
            raw = compose(sender=self.sender, recipient=recipient, subject=subject, body=message.body, key=key,
                          now=self._clock(), unsubscribe=unsubscribe, dkim_key=self._dkim)
        except ValueError as error:  # a line break in the subject, an address the parser refuses
            raise Rejected(f"smtp:invalid:{_redacted(str(error), recipient)}") from None
        mid = message_id(key, self.sender.domain)
        log.debug("smtp.sending", member_id=member_id, key=key, message_id=mid, template=message.template)
        reply = await self._transaction(raw, recipient, member_id, key)
        queue_id = _queue_id(reply.message)
        log.info("smtp.accepted", member_id=member_id, key=key, message_id=mid, queue_id=queue_id)
        return SendResult(vendor_message_id=queue_id or mid, accepted_at=self._clock())

    async def _transaction(self, raw: bytes, recipient: str, member_id: str, key: str) -> aiosmtplib.SMTPResponse:
        client = aiosmtplib.SMTP(**self._client_options)
        stage = "connect"
        try:
            await client.connect()
            stage = "mail"
            await client.mail(self.sender.address)
            stage = "rcpt"
            await client.rcpt(recipient)
            stage = "data"
            reply = await client.data(raw)
        except aiosmtplib.SMTPResponseException as error:
            await _quit(client)  # the session is still sound: end it politely
            if isinstance(error, aiosmtplib.SMTPAuthenticationError):
                stage = "auth"
            raise self._refused(stage, error.code, error.message, recipient, member_id, key) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:  # refused, dropped, timed out, TLS
            client.close()
            raise self._lost(stage, error, member_id, key) from None
        except BaseException:  # cancelled: no QUIT round trip
            client.close()
            raise
        await _quit(client)
        return reply

    def _refused(self, stage: str, code: int, text: str, recipient: str, member_id: str,
                 key: str) -> Retryable | Rejected:
        reason = f"smtp:{code}:{_redacted(text, recipient)}"
        permanent = code >= 500 and stage in ("mail", "rcpt", "data") and code not in _SETUP_CODES
        log.warning("smtp.refused", member_id=member_id, key=key, stage=stage, code=code, permanent=permanent)
        return Rejected(reason) if permanent else Retryable(f"{reason} ({stage})")

    def _lost(self, stage: str, error: Exception, member_id: str, key: str) -> Retryable:
        kind = "timeout" if isinstance(error, TimeoutError) else type(error).__name__
        # After DATA the server may have queued the message before the line went quiet.
        maybe = " (during DATA: may have been delivered)" if stage == "data" else ""
        log.warning("smtp.lost", member_id=member_id, key=key, stage=stage, error=kind)
        return Retryable(f"smtp:{kind}:{stage}{maybe}", maybe_delivered=stage == "data")

    async def aclose(self) -> None:
        """Nothing to release: each send opens and closes its own connection."""


async def _quit(client: aiosmtplib.SMTP) -> None:
    if not client.is_connected:
        return
    try:
        await client.quit(timeout=5)
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()  # the message's fate was decided by the DATA reply, not by QUIT


def _plain_address(address: str) -> bool:
    """One ASCII addr-spec, nothing a header or an SMTP command could be split on; the
    server judges the rest. (Non-ASCII addresses would need SMTPUTF8, which we do not ask.)"""
    local, at, domain = address.rpartition("@")
    return bool(at and local and "." in domain and address.isascii() and address.isprintable()
                and not any(c in address for c in " <>,;\"\\"))


def _queue_id(reply: str) -> str | None:
    """The server's id of the queued message, from e.g. Postfix's "Ok: queued as 4Xz1"
    or Exim's "OK id=1r2s3t"."""
    match = _QUEUE_ID.search(reply)
    return (match.group(1) or match.group(2)) if match else None


def _redacted(text: str, recipient: str) -> str:
    """A server reply without the member's address (servers quote it: "<a@b>: User unknown")."""
    return _ADDRESS.sub("<recipient>", text.replace(recipient, "<recipient>")).strip()
