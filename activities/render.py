"""Render a sent touch into the message its channel carries: pure, no database.

Every step of every scenario has one template, ``templates/<scenario>/<step>.j2``,
that fills in named blocks (``subject``, ``short``, ``lead``, ``body``, ``link``,
``insert_code``); the channel's layout, ``templates/_layouts/<channel>.j2``,
decides which of them it prints and how. A channel that needs its own copy for a
step gets ``<scenario>/<step>.<channel>.j2``, which is preferred when present.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, TemplateError, TemplatesNotFound
from pydantic import BaseModel, ConfigDict

from activities.contacts import CHANNEL_OF_FIELD
from workflows.events import Channel, Contact
from workflows.messages import DeliveryRequest
from workflows.policy import OFFLINE_ROUTE, ONLINE_ROUTE
from workflows.scenarios import BY_SCENARIO, TEMPLATES, Scenario, Step
from workflows.scenarios import Template as ScenarioTemplate

TEMPLATES_DIR = Path(__file__).with_name("templates")

# The shop's constants, in one place: what every message may mention.
SHOP: dict = {
    "name": "ゴールデンルート健康館",
    "short_name": "GR健康館",  # SMS: 70 characters leave no room for the full name
    "operator": "株式会社ゴールデンルート",
    "address": "〒150-0000 東京都渋谷区神南0-0-0",
    "phone": "0120-000-000",
    "hours": "平日9:00〜17:00",
    "contact_email": "support@grk.example",
    "timezone": "Asia/Tokyo",
    "offer_days": 7,  # an offer is good for this many days after it is sent
    # Short on purpose: the SMS copy carries a URL within its 70 characters.
    "urls": {
        "mypage": "https://grk.example/my",
        "resume": "https://grk.example/my/teiki",
        "purchase": "https://grk.example/buy",
        "guide": "https://grk.example/guide",
        "voice": "https://grk.example/voice",
        "monitor": "https://grk.example/monitor",
        "gift": "https://grk.example/gift",
        "secret": "https://grk.example/secret",
        "subscription": "https://grk.example/teiki",
        "cross": "https://grk.example/set",
        "new": "https://grk.example/new",
        "faq": "https://grk.example/faq",
        "survey": "https://grk.example/q",
        "optout": "https://grk.example/stop",
    },
    "offers": {
        "first_purchase": "初回限定20%OFF・送料無料",
        "bulk": "3袋まとめ買いで15%OFF",
        "extra_bag": "もう1袋プレゼント",
        "subscription": "毎回10%OFF・送料無料・ポイント2倍",
        "comeback": "再購入15%OFFクーポン",
        "cross_first": "はじめての併用で20%OFF",
        "secret_sale": "ご愛用者様限定シークレットセール",
    },
    "products": {"KOSO-30": "ゴールデン酵素 30日分", "KOSO-SAMPLE": "ゴールデン酵素 お試しサンプル"},
}

# Routed steps go wherever the policy may route; the others only to their own channel.
ROUTED_CHANNELS: tuple[Channel, ...] = tuple(dict.fromkeys(ONLINE_ROUTE + OFFLINE_ROUTE))
RECIPIENT_FIELD = {channel: field for field, channel in CHANNEL_OF_FIELD.items()}


class RenderedMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: Channel
    template: str  # "S01.welcome_offer"
    subject: str | None = None  # email: the 件名; call_center: the task's reason
    body: str
    recipient: str | None = None  # the address on this channel; None for insert / call_center
    insert_code: str | None = None  # insert: the printed leaflet the warehouse adds


class RenderError(Exception):
    """A touch that cannot be rendered; retrying will not help."""

    def __init__(self, request: DeliveryRequest, channel: Channel | None, problem: str) -> None:
        where = f"{request.scenario}.{request.step} on {channel.value if channel else 'no channel'}"
        super().__init__(f"{where}: {problem}")


class NoTemplate(RenderError):
    """No message for this scenario, step and channel (or variant)."""


class BrokenTemplate(RenderError):
    """The template exists but cannot be filled, e.g. it needs context the touch lacks."""


class NoRecipient(RenderError):
    """The member has no address on this channel, e.g. their contact was erased meanwhile."""


def channels_of(step: Step) -> tuple[Channel, ...]:
    return (step.channel,) if step.channel is not None else ROUTED_CHANNELS


def render(request: DeliveryRequest, contact: Contact | None) -> RenderedMessage:
    channel = request.channel
    template, step = _template_and_step(request)
    if channel is None or channel not in channels_of(step):
        raise NoTemplate(request, channel, f"the step goes out only on {[c.value for c in channels_of(step)]}")
    if template.variants and request.variant not in template.variants:
        raise NoTemplate(request, channel, f"variant {request.variant!r} is not one of {list(template.variants)}")
    recipient = _recipient(request, channel, contact)
    page = _page(request, channel)
    variables = _variables(request, channel, recipient)
    try:
        body = _tidy(page.render(variables))
        subject = _block(page, "subject", variables) if channel in (Channel.EMAIL, Channel.CALL_CENTER) else None
        code = _block(page, "insert_code", variables) if channel is Channel.INSERT else None
    except TemplateError as error:
        raise BrokenTemplate(request, channel, f"{type(error).__name__}: {error}") from error
    if channel in (Channel.EMAIL, Channel.CALL_CENTER) and not subject:
        raise BrokenTemplate(request, channel, "the template has no subject block")
    if channel is Channel.INSERT and not code:
        raise BrokenTemplate(request, channel, "the template has no insert_code block")
    return RenderedMessage(channel=channel, template=f"{request.scenario}.{request.step}", subject=subject,
                           body=body, recipient=recipient, insert_code=code)


def _template_and_step(request: DeliveryRequest) -> tuple[ScenarioTemplate, Step]:
    try:
        template = BY_SCENARIO[Scenario(request.scenario)]
    except ValueError:
        raise NoTemplate(request, request.channel, "no such scenario") from None
    step = next((s for s in template.steps if s.name == request.step), None)
    if step is None:
        raise NoTemplate(request, request.channel, "no such step in the scenario")
    return template, step


def _recipient(request: DeliveryRequest, channel: Channel, contact: Contact | None) -> str | None:
    field = RECIPIENT_FIELD.get(channel)
    if field is None:  # an insert or a call-centre task reaches the shop, not the member
        return None
    address = getattr(contact, field) if contact is not None else None
    if not address:
        raise NoRecipient(request, channel, f"the member has no {field}")
    return address


def _page(request: DeliveryRequest, channel: Channel) -> Template:
    names = [f"{request.scenario}/{request.step}.{channel.value}.j2", f"{request.scenario}/{request.step}.j2"]
    try:
        return _environment().select_template(names)
    except TemplatesNotFound:
        raise NoTemplate(request, channel, f"none of {names} exists") from None


def _variables(request: DeliveryRequest, channel: Channel, recipient: str | None) -> dict:
    sent = request.decided_at.astimezone(ZoneInfo(SHOP["timezone"])).date()
    sku = request.context.get("sku", "")
    return {
        **request.context,
        "layout": f"_layouts/{channel.value}.j2",
        "shop": SHOP, "urls": SHOP["urls"], "offers": SHOP["offers"],
        "channel": channel.value, "scenario": request.scenario, "step": request.step,
        "variant": request.variant, "upsell": request.upsell, "member_id": request.member_id,
        "recipient": recipient,
        "product": SHOP["products"].get(sku, sku) or "ご愛用の商品",
        "sent_on": _japanese_date(sent),
        "offer_until": _japanese_date(sent + timedelta(days=SHOP["offer_days"])),
    }


def _block(page: Template, name: str, variables: dict) -> str | None:
    block = page.blocks.get(name)
    return _tidy("".join(block(page.new_context(variables)))) if block else None


def _japanese_date(day: date) -> str:
    return f"{day.month}月{day.day}日"


def _tidy(text: str) -> str:
    """Templates stay readable with blank lines and trailing spaces; messages do not carry them."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


@cache
def _environment() -> Environment:
    # Plain text, never HTML: no autoescape. StrictUndefined: a missing variable is an error, not a blank.
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR), undefined=StrictUndefined, autoescape=False,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False,
    )


def every_message() -> list[tuple[str, str, Channel]]:
    """(scenario, step, channel) of every message the scenarios can send."""
    return [(t.scenario.value, s.name, c) for t in TEMPLATES for s in t.steps for c in channels_of(s)]
