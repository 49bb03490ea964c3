"""The vendors' stand-ins for ``goldenroute dev``: the real senders, local destinations.

``async with DevChannels(settings) as channels`` starts, on free ports of 127.0.0.1 and
inside the dev process, a stand-in for every network channel the environment leaves
unset — a mail catcher for email (SMTP_URL), LINE's push API (LINE_CHANNEL_ACCESS_TOKEN),
an SMS gateway (SMS_GATEWAY_URL) and a signed-webhook receiver for push
(PUSH_WEBHOOK_URL) — and ``channels.settings`` names them, with generated tokens, so that
``worker.senders.build_senders`` builds the same senders as in production and a
newcomer's first message goes through SMTP or HTTP like any other. A channel the
environment names keeps its real vendor. The stand-ins keep what they received in
memory (``copy`` finds a delivery's copy for the "what each member received" page), and
stop when the context exits: after the worker, with the stack.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Self
from urllib.parse import urlsplit

from pydantic import SecretStr

from activities.senders.line import retry_key
from activities.senders.mail import message_id
from activities.senders.sms import client_ref
from worker.settings import Settings
from worker.standins.line import LineStandIn
from worker.standins.sms import SmsGatewayStandIn
from worker.standins.smtp import SmtpStandIn
from worker.standins.webhook import WebhookStandIn
from workflows.events import Channel


@dataclass(frozen=True)
class Route:
    """Where one channel's messages go, as the banner prints it."""

    channel: Channel
    destination: str
    standin: bool  # False: the vendor the environment names, or the outbox


@dataclass(frozen=True)
class VendorCopy:
    """A message as the stand-in received it: what the member's mailbox, LINE or phone shows."""

    where: str  # "mail catcher", "LINE stand-in", …
    text: str
    received_at: datetime
    subject: str | None = None
    sender: str | None = None  # email: From, decoded
    recipient: str | None = None
    times: int = 1  # how often it arrived: more than once is a touch sent twice


class DevChannels:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.routes: list[Route] = []
        self.mail: SmtpStandIn | None = None
        self.line: LineStandIn | None = None
        self.sms: SmsGatewayStandIn | None = None
        self.push: WebhookStandIn | None = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        given, update, routes = self.settings, {}, []
        if given.smtp_url is None:
            self.mail = await self._stack.enter_async_context(SmtpStandIn())
            update["smtp_url"] = SecretStr(self.mail.url)
            routes.append(Route(Channel.EMAIL, f"mail catcher {self.mail.url}", True))
        else:
            routes.append(Route(Channel.EMAIL, f"SMTP {_where(given.smtp_url.get_secret_value())} (SMTP_URL)", False))
        if given.line_channel_access_token is None:
            token = secrets.token_urlsafe(24)
            self.line = await self._stack.enter_async_context(LineStandIn(token))
            update |= {"line_channel_access_token": SecretStr(token), "line_api_url": self.line.url}
            routes.append(Route(Channel.LINE, f"LINE stand-in {self.line.url}", True))
        else:
            api = _where(given.line_api_url)
            routes.append(Route(Channel.LINE, f"LINE Messaging API {api} (LINE_CHANNEL_ACCESS_TOKEN)", False))
        if given.sms_gateway_url is None:
            token = secrets.token_urlsafe(24)
            self.sms = await self._stack.enter_async_context(SmsGatewayStandIn(token))
            update |= {"sms_gateway_url": self.sms.url, "sms_gateway_token": SecretStr(token)}
            routes.append(Route(Channel.SMS, f"SMS gateway stand-in {self.sms.url}", True))
        else:
            routes.append(_vendor(Channel.SMS, given.sms_gateway_url, given.sms_gateway_token,
                                  "SMS_GATEWAY_URL", "SMS_GATEWAY_TOKEN"))
        if given.push_webhook_url is None:
            secret = secrets.token_urlsafe(24)
            self.push = await self._stack.enter_async_context(WebhookStandIn(secret))
            update |= {"push_webhook_url": self.push.webhook_url, "push_webhook_secret": SecretStr(secret)}
            routes.append(Route(Channel.PUSH, f"webhook stand-in {self.push.webhook_url}", True))
        else:
            routes.append(_vendor(Channel.PUSH, given.push_webhook_url, given.push_webhook_secret,
                                  "PUSH_WEBHOOK_URL", "PUSH_WEBHOOK_SECRET"))
        self.settings = given.model_copy(update=update)
        self.routes = routes

    def banner(self) -> str:
        """``  Channels:  email → mail catcher smtp://127.0.0.1:40123`` and a line for each other channel."""
        width = max(len(r.channel.value) for r in self.routes)
        return "\n".join(f"  {'Channels:' if i == 0 else '':<11}{r.channel.value:<{width}} → {r.destination}"
                         for i, r in enumerate(self.routes))

    def copy(self, channel: str, key: str) -> VendorCopy | None:
        """The stand-in's copy of the touch ``key``'s message, if a stand-in received it."""
        if channel == Channel.EMAIL and self.mail is not None:
            # The sender's Message-ID is fixed by the key, at the shop's domain (activities.senders.mail).
            local = message_id(key, "").partition("@")[0] + "@"
            mails = [m for m in self.mail.received if (m.message_id or "").startswith(local)]
            if mails:
                first = mails[0]
                # sender_name: the stdlib splits a folded Japanese name with a space (see ReceivedMail).
                address = first.message["From"].addresses[0].addr_spec
                return VendorCopy("mail catcher", first.text or "", first.received_at, subject=first.subject,
                                  sender=f"{first.sender_name} <{address}>", recipient=first.to, times=len(mails))
        if channel == Channel.LINE and self.line is not None:
            pushes = self.line.deliveries_for(retry_key(key))
            if pushes:
                return VendorCopy("LINE stand-in", pushes[0].text, pushes[0].at, recipient=pushes[0].recipient,
                                  times=len(pushes))
        if channel == Channel.SMS and self.sms is not None:
            reference = client_ref(key)
            texts = [m for m in self.sms.messages if m.client_ref == reference]
            if texts:
                return VendorCopy("SMS gateway stand-in", texts[0].text, texts[0].received_at, recipient=texts[0].to,
                                  times=len(texts))
        if channel == Channel.PUSH and self.push is not None and key in self.push.received:
            hook = self.push.received[key]
            return VendorCopy("webhook stand-in", str(hook.get("body") or ""),
                              datetime.fromisoformat(hook["sent_at"]), subject=hook.get("subject"),
                              recipient=hook.get("recipient"), times=self.push.deliveries(key))
        return None


def _where(url: str) -> str:
    """scheme://host[:port] of a vendor's URL: never its credentials, path or query."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"


def _vendor(channel: Channel, url: str, secret: SecretStr | None, url_name: str, secret_name: str) -> Route:
    if secret is None:  # build_senders needs both: without the secret the channel stays in the outbox
        return Route(channel, f"outbox ({url_name} is set, {secret_name} is not)", False)
    return Route(channel, f"{_where(url)} ({url_name})", False)
