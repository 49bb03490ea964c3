"""Which vendor adapter sends each channel, built from the settings (issue 11).

A channel whose settings are missing has no sender: its messages wait in the outbox
(``deliveries``, state ``queued``) for the shop's own relay, as before real channels.
Email is sent as the shop: its From, address and unsubscribe link come from the shop's
configuration version the touch was decided under (``ShopSmtp.for_shop``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from activities.senders.base import Sender
from activities.senders.line import LineSender
from activities.senders.mail import DkimKey
from activities.senders.sms import SmsGatewaySender
from activities.senders.smtp import SmtpSender
from activities.senders.webhook import WebhookSender
from worker.settings import Settings
from workflows.events import Channel
from workflows.shop import ShopConfig

SMTP_TIMEOUT = 20.0  # below the delivery activity's 30 s start-to-close timeout


class ShopSmtp:
    """SMTP settings from the environment; the sender's identity from the shop."""

    channel = Channel.EMAIL
    idempotent = False

    def __init__(self, url: str, *, dkim: DkimKey | None = None,
                 links: Callable[[str, str], str] | None = None) -> None:
        """``links``: (member_id, channel) → the member's one-click link (``unsubscribe_links``);
        None: the shop's own unsubscribe page."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SMTP_URL: smtp://[user:password@]host[:587][?starttls=require|never] or smtps://…")
        query = parse_qs(parts.query)
        starttls = {"require": True, "never": False}.get((query.get("starttls") or ["auto"])[0])
        self._options = dict(
            host=parts.hostname, port=parts.port or (465 if parts.scheme == "smtps" else 587),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=parts.scheme == "smtps", starttls=False if parts.scheme == "smtps" else starttls,
            timeout=SMTP_TIMEOUT, dkim=dkim,
        )
        self._links = links
        self._cache: dict[tuple, SmtpSender] = {}

    def for_shop(self, shop: ShopConfig | None) -> SmtpSender:
        from activities.example_shop import EXAMPLE_SHOP

        profile = (shop or EXAMPLE_SHOP).shop
        identity = (profile.sender.name, profile.sender.email, profile.sender.reply_to, profile.urls.unsubscribe)
        if identity not in self._cache:
            self._cache[identity] = SmtpSender(
                **self._options, sender_name=profile.sender.name, sender_address=profile.sender.email,
                reply_to=profile.sender.reply_to, unsubscribe=self._unsubscribe(profile.urls.unsubscribe))
        return self._cache[identity]

    def _unsubscribe(self, shop_page: str):
        """RFC 8058: the member's signed one-click link on the HTTP ingress, when it is reachable
        (PUBLIC_BASE_URL and UNSUBSCRIBE_SECRET); else the shop's own unsubscribe page."""
        links = self._links
        if links is not None:
            return lambda member_id, key: (links(member_id, "email"), "")
        return lambda member_id, key: (shop_page, "")

    async def send(self, message, key, member_id):
        """As the example shop; the delivery activity sends through ``for_shop`` instead."""
        return await self.for_shop(None).send(message, key, member_id)

    async def aclose(self) -> None:
        self._cache.clear()


def build_senders(settings: Settings) -> dict[Channel, Sender]:
    """The senders the settings configure; every other channel stays in the outbox."""
    senders: dict[Channel, Sender] = {}
    secret = lambda value: value.get_secret_value() if value is not None else None  # noqa: E731
    if settings.smtp_url is not None:
        dkim = None
        if settings.dkim_private_key_file and settings.dkim_selector and settings.dkim_domain:
            dkim = DkimKey(settings.dkim_selector, settings.dkim_domain,
                           Path(settings.dkim_private_key_file).read_bytes())
        senders[Channel.EMAIL] = ShopSmtp(secret(settings.smtp_url), dkim=dkim, links=unsubscribe_links(settings))
    if settings.line_channel_access_token is not None:
        senders[Channel.LINE] = LineSender(channel_access_token=settings.line_channel_access_token,
                                           base_url=settings.line_api_url)
    if settings.sms_gateway_url and settings.sms_gateway_token is not None:
        senders[Channel.SMS] = SmsGatewaySender(settings.sms_gateway_url, settings.sms_gateway_token)
    if settings.push_webhook_url and settings.push_webhook_secret is not None:
        senders[Channel.PUSH] = WebhookSender(settings.push_webhook_url, settings.push_webhook_secret, Channel.PUSH)
    return senders


def unsubscribe_links(settings: Settings):
    """(member_id, channel) → the member's signed one-click unsubscribe link on the HTTP
    ingress (``POST /u/{token}``), when PUBLIC_BASE_URL and UNSUBSCRIBE_SECRET are set; None:
    messages link the shop's own unsubscribe page."""
    base, secret = settings.public_base_url, settings.unsubscribe_secret
    if not base or secret is None:
        return None
    from activities.senders.unsubscribe import unsubscribe_url

    return lambda member_id, channel: unsubscribe_url(base, secret.get_secret_value(), member_id, channel)
