"""SmtpSender against a real SMTP server (worker.standins.smtp) that keeps and counts what
it received per Message-ID: the message one touch becomes, DKIM, and how each way a send
can end is reported."""

from __future__ import annotations

import asyncio
import socket
import ssl
from datetime import datetime, timedelta, timezone
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from structlog.testing import capture_logs

from activities.example_shop import EXAMPLE_SHOP
from activities.render import RenderedMessage, render
from activities.senders.base import Rejected, Retryable
from activities.senders.mail import DkimKey, html_body, message_id
from activities.senders.smtp import SmtpSender
from worker.standins.smtp import SmtpStandIn, dkim_record, dkim_verifies
from workflows.events import Channel, Contact
from workflows.messages import DeliveryRequest
from workflows.touches import Outcome

NOW = datetime(2026, 5, 1, 1, 0, tzinfo=timezone.utc)
SENDER = EXAMPLE_SHOP.shop.sender
DOMAIN = SENDER.email.rpartition("@")[2]
RECIPIENT = "hanako@example.jp"
MEMBER = "m-smtp"
KEY = f"{MEMBER}:S01:welcome_offer:o1"
ONE_CLICK = "https://grk.example/unsubscribe/one-click?m=m-smtp&t=0f3a9c"
MAILTO = "mailto:unsubscribe@grk.example?subject=m-smtp"


def touch(**changes: object) -> RenderedMessage:
    """S01's welcome email, rendered by the real templates for the example shop."""
    request = DeliveryRequest(
        member_id=MEMBER, key=KEY, scenario="S01", step="welcome_offer", occurrence="o1", channel=Channel.EMAIL,
        outcome=Outcome.SENT, reason="route:email", due_at=NOW, decided_at=NOW,
        context={"order_id": "s1", "sku": "KOSO-SAMPLE", "run_out_date": "2026-05-08"})
    message = render(request, Contact(email=RECIPIENT))
    return message.model_copy(update=changes)


def sender(server: SmtpStandIn | None = None, port: int | None = None, **options: object) -> SmtpSender:
    calls: list[tuple[str, str]] = options.pop("calls", [])  # type: ignore[assignment]

    def unsubscribe(member_id: str, key: str) -> tuple[str, str]:
        calls.append((member_id, key))
        return ONE_CLICK, MAILTO

    defaults = dict(sender_name=SENDER.name, sender_address=SENDER.email, reply_to=SENDER.reply_to,
                    unsubscribe=unsubscribe, timeout=5)
    return SmtpSender("127.0.0.1", port if port is not None else server.port, **{**defaults, **options})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def rsa_key() -> tuple[bytes, bytes]:
    """(PKCS#1 private PEM, SubjectPublicKeyInfo public PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


async def test_the_server_receives_the_touch_as_the_shop_wrote_it():
    message = touch()
    calls: list[tuple[str, str]] = []
    async with SmtpStandIn() as server:
        result = await sender(server, calls=calls).send(message, KEY, MEMBER)
    [mail] = server.received
    assert mail.mail_from == SENDER.email and mail.rcpt_tos == (RECIPIENT,)
    assert mail.sender_name == SENDER.name  # 特定電子メール法: the sender's name
    assert mail.message["From"].addresses[0].addr_spec == SENDER.email
    from_header = mail.raw.split(b"\r\nTo:")[0]
    assert from_header.startswith(b"From:") and from_header.isascii() and b"=?utf-8?b?" in from_header  # RFC 2047
    assert mail.to == RECIPIENT
    assert mail.subject == message.subject and "初回限定" in mail.subject
    assert mail.message["Reply-To"].addresses[0].addr_spec == SENDER.reply_to
    assert mail.message_id == message_id(KEY, DOMAIN) == f"<{mail.message_id[1:33]}@grk.example>"
    assert mail.message["Date"].datetime is not None
    assert mail.message["Auto-Submitted"] == "auto-generated" and mail.message["Precedence"] == "bulk"
    assert mail.message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in mail.message.iter_parts()] == ["text/plain", "text/html"]
    # The 特定電子メール法 footer included, character for character (a MIME text part ends with a line break).
    assert mail.text == message.body.rstrip("\n") + "\n"
    for line in ("送信者: " + SENDER.name, "住所: " + SENDER.address, "配信停止: https://grk.example/stop"):
        assert line in mail.text.splitlines()
    assert '<a href="https://grk.example/stop">https://grk.example/stop</a>' in mail.html
    assert f"住所: {SENDER.address}" in mail.html
    assert calls == [(MEMBER, KEY)]
    assert result.vendor_message_id == mail.queue_id  # the server's queue id, when its reply names one
    assert server.deliveries == {mail.message_id: 1}


async def test_one_click_unsubscribe_is_announced_as_rfc_8058_requires():
    async with SmtpStandIn() as server:
        await sender(server).send(touch(), KEY, MEMBER)
    [mail] = server.received
    assert mail.message["List-Unsubscribe"] == f"<{ONE_CLICK}>, <{MAILTO}>"
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    header_block = mail.raw.split(b"\r\n\r\n")[0]
    assert f"List-Unsubscribe: <{ONE_CLICK}>, <{MAILTO}>\r\n".encode() in header_block + b"\r\n"  # not encoded


async def test_without_an_https_link_there_is_no_one_click_promise():
    async with SmtpStandIn() as server:
        await sender(server, unsubscribe=lambda m, k: ("http://grk.example/stop", "")).send(touch(), KEY, MEMBER)
        await sender(server, unsubscribe=None).send(touch(), KEY + "b", MEMBER)
    plain, none = server.received
    assert plain.message["List-Unsubscribe"] == "<http://grk.example/stop>"
    assert plain.message["List-Unsubscribe-Post"] is None
    assert none.message["List-Unsubscribe"] is None


async def test_the_same_key_gives_the_same_message_id_and_the_server_counts_both():
    async with SmtpStandIn() as server:
        smtp = sender(server)
        first = await smtp.send(touch(), KEY, MEMBER)
        second = await smtp.send(touch(), KEY, MEMBER)
        await smtp.send(touch(), KEY.replace("o1", "o2"), MEMBER)
    assert server.deliveries[message_id(KEY, DOMAIN)] == 2  # at-most-once is the caller's: the id shows a repeat
    assert server.deliveries[message_id(KEY.replace("o1", "o2"), DOMAIN)] == 1
    assert first.vendor_message_id != second.vendor_message_id  # two queue ids, one Message-ID


async def test_the_message_id_is_used_when_the_reply_names_no_queue_id(monkeypatch):
    async with SmtpStandIn() as server:
        monkeypatch.setattr("worker.standins.smtp._Handler.handle_DATA", _plain_ok)
        result = await sender(server).send(touch(), KEY, MEMBER)
    assert result.vendor_message_id == message_id(KEY, DOMAIN)


async def _plain_ok(self, smtp, session, envelope) -> str:
    self.server._keep(envelope, session)
    return "250 OK"


async def test_the_dkim_signature_verifies_with_the_public_key(rsa_key):
    private, public = rsa_key
    records = {"gr1._domainkey.grk.example": dkim_record(public)}
    async with SmtpStandIn() as server:
        await sender(server, dkim=DkimKey("gr1", "grk.example", private)).send(touch(), KEY, MEMBER)
    [mail] = server.received
    assert mail.dkim_verifies(records)
    signed = mail.message["DKIM-Signature"].replace("\r\n", "").replace(" ", "")
    h = signed.split("h=")[1].split(";")[0].split(":")
    for name in ("from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post"):
        assert h.count(name) == 2, name  # signed, and over-signed so none can be added later
    tampered = mail.raw.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: x")
    assert not dkim_verifies(tampered, records)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert not mail.dkim_verifies({"gr1._domainkey.grk.example": dkim_record(other)})


async def test_a_pkcs8_key_signs_too_and_a_key_dkimpy_cannot_read_is_refused_at_start(rsa_key):
    private, public = rsa_key
    pkcs8 = serialization.load_pem_private_key(private, None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    async with SmtpStandIn() as server:
        await sender(server, dkim=DkimKey("gr1", "grk.example", pkcs8)).send(touch(), KEY, MEMBER)
    assert server.received[0].dkim_verifies({"gr1._domainkey.grk.example": dkim_record(public)})
    with pytest.raises(ValueError, match="not an RSA private key"):
        DkimKey("gr1", "grk.example", public)
    assert "PRIVATE" not in repr(DkimKey("gr1", "grk.example", private))


async def test_451_is_retryable_and_nothing_is_kept():
    async with SmtpStandIn() as server:
        server.faults.temporary()
        with pytest.raises(Retryable, match=r"^smtp:451:"):
            await sender(server).send(touch(), KEY, MEMBER)
        assert server.received == [] and server.transactions == 1
        await sender(server).send(touch(), KEY, MEMBER)  # the fault was one transaction's
    assert server.deliveries == {message_id(KEY, DOMAIN): 1}


@pytest.mark.parametrize("code, text, at", [
    (550, "5.1.1 <hanako@example.jp>: Recipient address rejected: User unknown", "rcpt"),
    (553, "5.1.3 Bad recipient address syntax", "rcpt"),
    (554, "5.7.1 Message rejected as spam", "data"),
])
async def test_a_permanent_refusal_is_rejected_naming_the_code(code, text, at):
    async with SmtpStandIn() as server:
        server.faults.permanent(code=code, text=text, at=at)
        with capture_logs() as logs, pytest.raises(Rejected) as refused:
            await sender(server).send(touch(), KEY, MEMBER)
    assert refused.value.reason.startswith(f"smtp:{code}:")
    assert RECIPIENT not in refused.value.reason  # the ledger keeps reasons; the address is personal data
    assert RECIPIENT not in repr(logs)
    assert server.received == []


async def test_a_refused_connection_is_retryable():
    with pytest.raises(Retryable, match="connect"):
        await sender(port=closed_port()).send(touch(), KEY, MEMBER)


async def test_a_message_without_recipient_or_subject_is_rejected_before_connecting():
    port = closed_port()  # connecting would be Retryable: Rejected shows no attempt was made
    for broken in (touch(recipient=None), touch(subject=None), touch(recipient="hanako@example.jp\r\nBcc: x@y.z")):
        with pytest.raises(Rejected, match="^smtp:invalid:"):
            await sender(port=port).send(broken, KEY, MEMBER)
    with pytest.raises(Rejected, match="^smtp:invalid:"):
        await sender(port=port).send(touch(subject="件名\r\nBcc: x@y.z"), KEY, MEMBER)


@pytest.mark.parametrize("stored", [False, True])
async def test_a_connection_dropped_after_data_is_retryable_and_says_it_may_have_arrived(stored):
    async with SmtpStandIn() as server:
        server.faults.drop(stored=stored)
        with pytest.raises(Retryable, match="may have been delivered"):
            await sender(server).send(touch(), KEY, MEMBER)
    assert server.deliveries[message_id(KEY, DOMAIN)] == (1 if stored else 0)


async def test_a_reply_slower_than_the_timeout_is_retryable_though_the_message_arrived():
    async with SmtpStandIn() as server:
        server.faults.slow(seconds=30)
        started = asyncio.get_running_loop().time()
        with pytest.raises(Retryable, match="timeout:data"):
            await sender(server, timeout=0.5).send(touch(), KEY, MEMBER)
        assert asyncio.get_running_loop().time() - started < 5
    assert server.deliveries[message_id(KEY, DOMAIN)] == 1  # the uncertain case SPEC §5 records


async def test_auth_with_the_right_password_is_accepted_and_a_wrong_one_is_retryable():
    async with SmtpStandIn(username="shop", password="s3cret") as server:
        await sender(server, username="shop", password="s3cret").send(touch(), KEY, MEMBER)
        with pytest.raises(Retryable, match=r"^smtp:535:.*\(auth\)"):
            await sender(server, username="shop", password="wrong").send(touch(), KEY, MEMBER)
        with pytest.raises(Retryable, match=r"^smtp:530:"):  # no AUTH at all: the shop's setup, not the member
            await sender(server).send(touch(), KEY, MEMBER)
    [mail] = server.received
    assert mail.authenticated_as == "shop"


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - timedelta(days=1))
            .not_valid_after(datetime.now(timezone.utc) + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_starttls_when_required_and_a_server_without_it_is_retryable(tmp_path):
    cert, key = _certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    async with SmtpStandIn(tls_context=server_context) as server:
        await sender(server, starttls=True, tls_context=client_context).send(touch(), KEY, MEMBER)
        with pytest.raises(Retryable):  # the certificate is not one the default trust store knows
            await sender(server, starttls=True).send(touch(), KEY, MEMBER)
    assert [mail.tls for mail in server.received] == [True]
    async with SmtpStandIn() as plain:
        with pytest.raises(Retryable, match="connect"):
            await sender(plain, starttls=True, tls_context=client_context).send(touch(), KEY, MEMBER)
    assert plain.received == []


async def test_the_recipient_is_never_logged():
    async with SmtpStandIn() as server:
        server.faults.temporary()
        with capture_logs() as logs:
            with pytest.raises(Retryable):
                await sender(server).send(touch(), KEY, MEMBER)
            await sender(server).send(touch(), KEY, MEMBER)
    assert logs and RECIPIENT not in repr(logs)
    assert {entry["event"] for entry in logs} >= {"smtp.refused", "smtp.accepted"}


async def test_200_touches_arrive_once_each():
    keys = [f"m{n:03d}:S01:welcome_offer:o1" for n in range(200)]
    async with SmtpStandIn() as server:
        smtp, gate = sender(server), asyncio.Semaphore(10)

        async def send(key: str) -> None:
            async with gate:
                await smtp.send(touch(), key, key.split(":")[0])

        await asyncio.gather(*(send(key) for key in keys))
    assert len(server.received) == 200
    assert server.deliveries == {message_id(key, DOMAIN): 1 for key in keys}


def test_the_html_part_escapes_the_text_and_makes_links_clickable():
    page = html_body("<b>限定</b> & 送料無料\n詳しくは https://grk.example/buy?a=1&b=2。\n\n配信停止: https://grk.example/stop")
    assert "&lt;b&gt;限定&lt;/b&gt; &amp; 送料無料<br>" in page
    assert '<a href="https://grk.example/buy?a=1&amp;b=2">https://grk.example/buy?a=1&amp;b=2</a>。</p>' in page
    assert page.count("<p>") == 2 and "<b>" not in page
