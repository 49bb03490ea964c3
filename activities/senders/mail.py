"""The email one touch becomes, as bytes ready for SMTP DATA: pure, no network.

特定電子メール法 wants the sender's name and address in From and a way to opt out; RFC 8058
wants that way to be a one-click HTTPS POST announced by ``List-Unsubscribe`` and
``List-Unsubscribe-Post`` and both covered by a DKIM signature. The Message-ID is a hash
of the touch's idempotency key, so a message sent twice for one touch (an operator's
resend of an ``uncertain`` attempt) is recognisable as the same message downstream.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy

import dkim
from dkim.crypto import UnparsableKeyError, parse_pem_private_key

ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058 §3.1: the exact value, and POST body
# Headers the signature covers, each signed once more than present so none can be added
# after signing (RFC 6376 §8.15). RFC 8058 §4 requires the two List-Unsubscribe ones.
SIGNED_HEADERS = ("from", "to", "subject", "date", "message-id", "reply-to", "list-unsubscribe",
                  "list-unsubscribe-post", "mime-version", "content-type")
_VERBATIM = {"list-unsubscribe"}  # URIs must reach the client as written, never RFC 2047-encoded
_URL = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_URL_TRAILER = ".,;:!?'\")]"  # punctuation that ends a sentence rather than the link


class _MailPolicy(EmailPolicy):
    """SMTP's policy (CRLF, RFC 2047 for non-ASCII headers, 78-column folding), except that
    a long one-click URL is kept whole: folding would encode it into an encoded-word that
    no mail client reads as a link."""

    def header_store_parse(self, name: str, value):  # type: ignore[no-untyped-def]
        if name.lower() in _VERBATIM:
            if not isinstance(value, str) or not value.isascii() or "\r" in value or "\n" in value:
                raise ValueError(f"{name} must be one line of ASCII")
            return name, value
        return super().header_store_parse(name, value)


POLICY = _MailPolicy(linesep="\r\n", refold_source="none")


@dataclass(frozen=True)
class DkimKey:
    """A DKIM signing key: ``selector._domainkey.domain`` publishes the public half."""

    selector: str
    domain: str
    private_key_pem: bytes = field(repr=False)  # RSA, PKCS#1 or PKCS#8 PEM

    def __post_init__(self) -> None:
        try:  # at start-up, not at the first send
            parse_pem_private_key(self.private_key_pem)
        except UnparsableKeyError as error:
            raise ValueError(f"DKIM key for {self.selector}._domainkey.{self.domain} is not an RSA private key "
                             f"in PEM (PKCS#1 or PKCS#8): {str(error).splitlines()[0]}") from None


@dataclass(frozen=True)
class MailSender:
    """Who the shop says it is (特定電子メール法 §2: 送信者の氏名又は名称 and address)."""

    name: str
    address: str
    reply_to: str | None = None

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


def message_id(key: str, domain: str) -> str:
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def compose(*, sender: MailSender, recipient: str, subject: str, body: str, key: str, now: datetime,
            unsubscribe: tuple[str, str] | None = None, dkim_key: DkimKey | None = None) -> bytes:
    """The message of one touch. ``unsubscribe`` is (one-click https URL, mailto URI); either
    may be empty. Raises ValueError for a header that cannot be written safely (a line
    break in the subject, a malformed address)."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = Address(display_name=sender.name, addr_spec=sender.address)
    msg["To"] = Address(addr_spec=recipient)
    msg["Subject"] = subject
    msg["Date"] = now
    msg["Message-ID"] = message_id(key, sender.domain)
    if sender.reply_to:
        msg["Reply-To"] = Address(addr_spec=sender.reply_to)
    for name, value in _unsubscribe_headers(unsubscribe):
        msg[name] = value
    # Automated mail: vacation responders and bounce-happy autoresponders stay quiet (RFC 3834).
    msg["Auto-Submitted"] = "auto-generated"
    msg["Precedence"] = "bulk"
    msg.set_content(body, charset="utf-8", cte="base64")
    msg.add_alternative(html_body(body), subtype="html", charset="utf-8", cte="base64")
    for part in msg.iter_parts():
        del part["MIME-Version"]  # add_alternative repeats it in the part; only the top level needs it
    raw = msg.as_bytes()
    return _signed(raw, dkim_key) if dkim_key else raw


def _unsubscribe_headers(unsubscribe: tuple[str, str] | None) -> list[tuple[str, str]]:
    if not unsubscribe:
        return []
    one_click, mailto = unsubscribe
    uris = [f"<{uri}>" for uri in (one_click, mailto) if uri]
    headers = [("List-Unsubscribe", ", ".join(uris))] if uris else []
    if one_click.startswith("https://"):  # RFC 8058 §3.1: one-click only over HTTPS
        headers.append(("List-Unsubscribe-Post", ONE_CLICK))
    return headers


def _signed(raw: bytes, key: DkimKey) -> bytes:
    present = {line.split(b":", 1)[0].strip().lower().decode()
               for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n") if line[:1] not in (b" ", b"\t")}
    names = [name.encode() for name in SIGNED_HEADERS if name in present]
    signature = dkim.sign(raw, key.selector.encode(), key.domain.encode(), key.private_key_pem,
                          canonicalize=(b"relaxed", b"relaxed"), include_headers=names + names)
    return signature + raw


def html_body(text: str) -> str:
    """The text as HTML: blank lines part paragraphs, line breaks stay, links are clickable."""
    paragraphs = [p for p in re.split(r"\n[ \t\u3000]*\n", text.replace("\r\n", "\n").strip("\n")) if p.strip()]
    inner = "\n".join("<p>" + "<br>\n".join(_linked(line) for line in p.split("\n")) + "</p>" for p in paragraphs)
    return ('<!DOCTYPE html>\n<html lang="ja">\n<head><meta charset="utf-8"></head>\n'
            f"<body>\n{inner}\n</body>\n</html>\n")


def _linked(line: str) -> str:
    out, start = [], 0
    for match in _URL.finditer(line):
        url = match.group().rstrip(_URL_TRAILER)
        end = match.start() + len(url)
        out.append(html.escape(line[start:match.start()]))
        out.append(f'<a href="{html.escape(url)}">{html.escape(url)}</a>')
        start = end
    out.append(html.escape(line[start:]))
    return "".join(out)
