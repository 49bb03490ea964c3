"""A mail catcher speaking real SMTP (aiosmtpd), for ``SmtpSender`` and newcomers.

It accepts every message, parses it as a mail client would and keeps it, counting
deliveries per Message-ID (the sender derives that from the touch's key, so a count above
one is a touch sent twice). Faults are taken one per transaction (at MAIL FROM), in order:

- ``temporary``: reply 451 (or another 4xx) at DATA's end (or at RCPT) — nothing kept;
- ``permanent``: reply 550 (or another 5xx) at RCPT (or at DATA's end) — nothing kept;
- ``drop``: close the connection when the message has arrived, without a reply; with
  ``stored=True`` it was queued first, as a real server that crashes after fsync would;
- ``slow``: answer 250 only after ``seconds``. ``stored=True`` (the default) keeps the
  message at once, so a client that gave up earlier never learns it was delivered.

``username``/``password`` make AUTH (PLAIN or LOGIN) required, without TLS: this is a
loopback test server. ``tls_context`` (a server context with its certificate) offers
STARTTLS and requires it before MAIL.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import warnings
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Literal

import dkim
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

FaultKind = Literal["reply", "drop", "slow"]
Stage = Literal["rcpt", "data"]


@dataclass(frozen=True)
class SmtpFault:
    kind: FaultKind
    code: int = 451
    text: str = ""
    at: Stage = "data"
    stored: bool = False
    seconds: float = 0.0


class SmtpFaults:
    """The faults the next transactions meet, in order."""

    def __init__(self) -> None:
        self._next: deque[SmtpFault] = deque()

    def temporary(self, times: int = 1, code: int = 451, text: str = "4.3.0 Try again later",
                  at: Stage = "data") -> None:
        self._next.extend([SmtpFault("reply", code=code, text=text, at=at)] * times)

    def permanent(self, times: int = 1, code: int = 550, text: str = "5.1.1 Mailbox unavailable",
                  at: Stage = "rcpt") -> None:
        self._next.extend([SmtpFault("reply", code=code, text=text, at=at)] * times)

    def drop(self, times: int = 1, stored: bool = False) -> None:
        self._next.extend([SmtpFault("drop", stored=stored)] * times)

    def slow(self, times: int = 1, seconds: float = 60.0, stored: bool = True) -> None:
        self._next.extend([SmtpFault("slow", seconds=seconds, stored=stored)] * times)

    def take(self) -> SmtpFault | None:
        return self._next.popleft() if self._next else None

    def clear(self) -> None:
        self._next.clear()

    def __len__(self) -> int:
        return len(self._next)


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the server kept it: the envelope, the parsed message, the raw bytes."""

    queue_id: str
    mail_from: str  # the envelope sender (MAIL FROM)
    rcpt_tos: tuple[str, ...]
    raw: bytes = field(repr=False)
    received_at: datetime
    authenticated_as: str | None = None
    tls: bool = False  # it came over STARTTLS
    message: EmailMessage = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", BytesParser(policy=policy.default).parsebytes(self.raw))

    @property
    def message_id(self) -> str | None:
        return self.message["Message-ID"]

    @property
    def sender(self) -> str:  # From, decoded: 'ショップ <info@shop.example>'
        return str(self.message["From"])

    @property
    def sender_name(self) -> str:
        """From's display name, decoded as RFC 2047 §6.2 says: the stdlib's address parser
        puts a space between adjacent encoded-words (CPython gh-128110), which would split
        a long Japanese name where it was folded."""
        raw = next(value for name, value in self.message.raw_items() if name.lower() == "from")
        phrase = re.sub(r"\s+", " ", raw).rpartition("<")[0].strip().strip('"')
        return str(make_header(decode_header(phrase)))

    @property
    def to(self) -> str:
        return str(self.message["To"])

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [(name, str(value)) for name, value in self.message.items()]

    @property
    def text(self) -> str | None:
        return _part(self.message, "plain")

    @property
    def html(self) -> str | None:
        return _part(self.message, "html")

    def dkim_verifies(self, records: Mapping[str, str]) -> bool:
        return dkim_verifies(self.raw, records)


class SmtpStandIn:
    """Serves SMTP on ``host:port`` (0: any free port) while entered."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, username: str | None = None,
                 password: str | None = None, hostname: str = "standin.smtp.invalid",
                 tls_context: ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.hostname = host, port, hostname
        self.tls_context = tls_context
        self.username, self.password = username, password
        self.url = ""
        self.faults = SmtpFaults()
        self.received: list[ReceivedMail] = []
        self.deliveries: Counter[str] = Counter()  # Message-ID → times kept
        self.transactions = 0  # MAIL commands seen, whatever became of them
        self._server: asyncio.Server | None = None
        self._sessions: set[SMTP] = set()

    def received_for(self, message_id: str) -> list[ReceivedMail]:
        return [mail for mail in self.received if mail.message_id == message_id]

    async def __aenter__(self) -> SmtpStandIn:
        self._server = await asyncio.get_running_loop().create_server(self._session, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"smtp://{self.host}:{self.port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for session in list(self._sessions):  # Server.close() leaves open connections open (3.11)
            if session.transport is not None:
                session.transport.abort()
        await self._server.wait_closed()
        self._server = None

    def _session(self) -> SMTP:
        with warnings.catch_warnings():  # "AUTH without TLS": deliberate on a loopback stand-in
            warnings.simplefilter("ignore")
            session = _TrackedSMTP(self._sessions, _Handler(self), hostname=self.hostname,
                                   tls_context=self.tls_context, require_starttls=self.tls_context is not None,
                                   auth_required=self.username is not None, auth_require_tls=False,
                                   authenticator=self._authenticate if self.username is not None else None,
                                   loop=asyncio.get_running_loop())
        self._sessions.add(session)
        return session

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: object) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.username
              and auth_data.password.decode() == self.password)
        return AuthResult(success=ok, handled=False, auth_data=self.username if ok else None)

    def _keep(self, envelope: Envelope, session: Session) -> str:
        queue_id = f"{len(self.received) + 1:08X}"
        mail = ReceivedMail(tls=session.ssl is not None, queue_id=queue_id, mail_from=envelope.mail_from or "", rcpt_tos=tuple(envelope.rcpt_tos),
                            raw=envelope.original_content or b"", received_at=datetime.now(timezone.utc),
                            authenticated_as=session.auth_data if session.authenticated else None)
        self.received.append(mail)
        self.deliveries[mail.message_id or ""] += 1
        return queue_id


class _TrackedSMTP(SMTP):
    def __init__(self, live: set[SMTP], *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._live = live

    def connection_lost(self, error: Exception | None) -> None:
        self._live.discard(self)
        super().connection_lost(error)


class _Handler:
    """aiosmtpd's hooks: where each fault strikes and where a message is kept."""

    def __init__(self, server: SmtpStandIn) -> None:
        self.server = server

    async def handle_MAIL(self, smtp: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        self.server.transactions += 1
        envelope.mail_from, envelope.mail_options = address, list(options)
        session.fault = self.server.faults.take()  # type: ignore[attr-defined]
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, smtp: SMTP, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        fault: SmtpFault | None = getattr(session, "fault", None)
        if fault and fault.kind == "reply" and fault.at == "rcpt":
            return f"{fault.code} {fault.text}"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        fault: SmtpFault | None = getattr(session, "fault", None)
        session.fault = None  # type: ignore[attr-defined]  # one fault, one transaction
        if fault and fault.kind == "reply" and fault.at == "data":
            return f"{fault.code} {fault.text}"
        if fault and fault.kind == "drop":
            if fault.stored:
                self.server._keep(envelope, session)
            assert smtp.transport is not None
            smtp.transport.abort()
            await asyncio.Event().wait()  # connection_lost cancels this handler: no reply is written
        queue_id = None
        if fault is None or fault.kind != "slow" or fault.stored:
            queue_id = self.server._keep(envelope, session)
        if fault and fault.kind == "slow":
            await asyncio.sleep(fault.seconds)  # a client that gives up first cancels this, and no reply goes
            queue_id = queue_id or self.server._keep(envelope, session)
        return f"250 2.0.0 Ok: queued as {queue_id}"


def _part(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return None
    return part.get_content().replace("\r\n", "\n")  # text/* travels with CRLF; compare as written


def dkim_record(public_key_pem: bytes) -> str:
    """The TXT record ``selector._domainkey.domain`` would publish for an RSA public key
    (SubjectPublicKeyInfo PEM, ``BEGIN PUBLIC KEY``)."""
    body = b"".join(line.strip() for line in public_key_pem.strip().splitlines() if not line.startswith(b"-----"))
    return f"v=DKIM1; k=rsa; p={body.decode()}"


def dkim_verifies(raw: bytes, records: Mapping[str, str]) -> bool:
    """Whether the topmost DKIM-Signature of ``raw`` verifies, with ``records`` standing in
    for DNS: {"selector._domainkey.domain": TXT value}."""

    def lookup(name: bytes | str, timeout: float = 5) -> bytes | None:
        name = name.decode() if isinstance(name, bytes) else name
        record = records.get(name.rstrip("."))
        return record.encode() if record is not None else None

    return bool(dkim.verify(raw, dnsfunc=lookup))
