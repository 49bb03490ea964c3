"""Render a sent touch into the message its channel carries: pure, no database.

Every step of every scenario has a template, ``templates/<scenario>/<step>.j2``, that
fills in named blocks (``subject``, ``short``, ``lead``, ``body``, ``link``,
``insert_code``); the channel's layout, ``templates/_layouts/<channel>.j2``, decides
which of them it prints and how. The first of these that exists is used:
``<step>.<variant>.<channel>.j2``, ``<step>.<variant>.j2`` (the touch's variant, if it
has one), ``<step>.<channel>.j2``, ``<step>.j2``. A broadcast's touch (scenario ``BC``,
step = the broadcast's name) looks up its template the same way, by the template's
name and without variants: ``BC/<template>.<channel>.j2``, ``BC/<template>.j2``. A
shop's own templates (relative path → Jinja source) override the built-in ones of the
same name, layouts and parts included; what they may say about the shop and its
products comes from one version of its configuration (``activities.message_context``),
the example shop when none has been applied.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import product

from jinja2 import Environment, Template, TemplateError, TemplatesNotFound
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from activities.contacts import CHANNEL_OF_FIELD
from activities.example_shop import EXAMPLE_SHOP
from activities.message_context import UnknownTimezone, product_variables, shop_variables
from activities.template_loader import environment, lookup_names, where_it_failed
from workflows.broadcasts import BROADCAST, is_broadcast
from workflows.events import BroadcastName, Channel, Contact, LineRole
from workflows.messages import DeliveryRequest
from workflows.policy import OFFLINE_ROUTE, ONLINE_ROUTE
from workflows.scenarios import BY_SCENARIO, TEMPLATES, Scenario, Step
from workflows.scenarios import Template as ScenarioTemplate
from workflows.shop import Broadcast, ShopConfig
from workflows.touches import Outcome

# Routed steps go wherever the policy may route; the others only to their own channel.
ROUTED_CHANNELS: tuple[Channel, ...] = tuple(dict.fromkeys(ONLINE_ROUTE + OFFLINE_ROUTE))
RECIPIENT_FIELD = {channel: field for field, channel in CHANNEL_OF_FIELD.items()}
SMS_LENGTH = 70  # one SMS of full-width characters; the gateway would split a longer one
# The channels a broadcast may name (workflows.shop.Broadcast.channel); one left out goes where routing says.
BROADCAST_CHANNELS: tuple[Channel, ...] = (Channel.EMAIL, Channel.LINE, Channel.SMS, Channel.PUSH, Channel.DM)
_BROADCAST_NAME = TypeAdapter(BroadcastName)


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

    def __init__(self, request: DeliveryRequest, channel: Channel | None, problem: str,
                 template: str | None = None) -> None:
        where = f"{request.scenario}.{request.step} on {channel.value if channel else 'no channel'}"
        super().__init__(f"{where}: {problem}")
        self.problem = problem
        self.template = template  # the template file chosen, when one was


class NoTemplate(RenderError):
    """No message for this scenario, step and channel (or variant)."""


class BrokenTemplate(RenderError):
    """The template exists but cannot be filled, e.g. it needs context the touch lacks."""


class NoRecipient(RenderError):
    """The member has no address on this channel, e.g. their contact was erased meanwhile."""


def channels_of(step: Step) -> tuple[Channel, ...]:
    return (step.channel,) if step.channel is not None else ROUTED_CHANNELS


def render(request: DeliveryRequest, contact: Contact | None, shop: ShopConfig | None = None,
           templates: Mapping[str, str] | None = None, unsubscribe_url: str | None = None) -> RenderedMessage:
    """The message of one touch, with ``shop``'s profile and catalogue and its own ``templates``
    (None: the example shop, the built-in templates). ``unsubscribe_url``: the member's own
    signed one-click link, in place of the shop's unsubscribe page (email)."""
    shop = shop or EXAMPLE_SHOP
    if unsubscribe_url:
        urls = shop.shop.urls.model_copy(update={"unsubscribe": unsubscribe_url})
        shop = shop.model_copy(update={"shop": shop.shop.model_copy(update={"urls": urls})})
    channel = request.channel
    copy = _copy(request, shop)
    if channel is None or channel not in copy.channels:
        raise NoTemplate(request, channel, f"the {copy.kind} goes out only on {[c.value for c in copy.channels]}")
    if copy.variants and request.variant not in copy.variants:
        raise NoTemplate(request, channel, f"variant {request.variant!r} is not one of {list(copy.variants)}")
    recipient = _recipient(request, channel, contact)
    page = _page(request, channel, environment(templates), copy.name)
    try:
        variables = _variables(request, channel, recipient, shop)
        body = _tidy(page.render(variables))
        subject = _block(page, "subject", variables) if channel in (Channel.EMAIL, Channel.CALL_CENTER) else None
        code = _block(page, "insert_code", variables) if channel is Channel.INSERT else None
    except UnknownTimezone as error:
        raise BrokenTemplate(request, channel, str(error), page.name) from error
    except Exception as error:  # a shop's template is code it wrote: {{ 1 / 0 }} must not crash a worker
        raise BrokenTemplate(request, channel, f"{type(error).__name__}: {error}{where_it_failed(error, page.name)}",
                             page.name) from error
    if channel in (Channel.EMAIL, Channel.CALL_CENTER) and not subject:
        raise BrokenTemplate(request, channel, "the template has no subject block", page.name)
    if channel is Channel.INSERT and not code:
        raise BrokenTemplate(request, channel, "the template has no insert_code block", page.name)
    if channel is Channel.EMAIL:
        _require_sender_fields(request, body, shop, page.name)
    return RenderedMessage(channel=channel, template=f"{request.scenario}.{request.step}", subject=subject,
                           body=body, recipient=recipient, insert_code=code)


def _require_sender_fields(request: DeliveryRequest, body: str, shop: ShopConfig, template: str | None) -> None:
    """特定電子メール法: a marketing email that does not say who sends it and how to stop
    receiving them is not sent, whatever a shop's own layout says."""
    sender, urls = shop.shop.sender, shop.shop.urls
    required = {"sender.name": sender.name, "sender.address": sender.address, "sender.contact": sender.contact,
                "urls.unsubscribe": urls.unsubscribe}
    missing = [name for name, value in required.items() if value not in body]
    if missing:
        raise BrokenTemplate(request, Channel.EMAIL, f"the email does not show {', '.join(missing)}, which "
                             "特定電子メール法 requires of every marketing email (the footer of _layouts/email.j2)",
                             template)


@dataclass(frozen=True)
class _Copy:
    """What a touch's message is looked up by (``<scenario>/<name>[.<variant>][.<channel>].j2``),
    and where it may go."""

    name: str  # a scenario's step, or a broadcast's template
    channels: tuple[Channel, ...]
    variants: tuple[str, ...] = ()
    kind: str = "step"


def _copy(request: DeliveryRequest, shop: ShopConfig) -> _Copy:
    if is_broadcast(request.scenario):
        # The broadcast's own template, else the one named like the broadcast (workflows.broadcasts).
        name = request.context.get("template") or request.step
        try:
            _BROADCAST_NAME.validate_python(name)
        except ValidationError:
            raise NoTemplate(request, request.channel, f"{name!r} is not a broadcast template's name") from None
        return _Copy(name, BROADCAST_CHANNELS, kind="broadcast")
    template, step = _template_and_step(request)
    variants = tuple(v for v, _ in shop.rules().variants(request.scenario, template.variants))
    return _Copy(step.name, channels_of(step), variants)


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


def _page(request: DeliveryRequest, channel: Channel, env: Environment, name: str) -> Template:
    names = lookup_names(request.scenario, name, channel, request.variant)
    try:
        return env.select_template(names)
    except TemplatesNotFound:
        raise NoTemplate(request, channel, f"none of {names} exists") from None
    except TemplateError as error:  # found, but it does not compile
        name = getattr(error, "name", None)
        raise BrokenTemplate(request, channel, f"{type(error).__name__}: {error}{where_it_failed(error, name)}",
                             name) from error


def _variables(request: DeliveryRequest, channel: Channel, recipient: str | None, shop: ShopConfig) -> dict:
    return {
        **request.context,
        "layout": f"_layouts/{channel.value}.j2",
        "channel": channel.value, "scenario": request.scenario, "step": request.step,
        "variant": request.variant, "upsell": request.upsell, "member_id": request.member_id,
        "recipient": recipient,
        **shop_variables(shop, request.decided_at),
        **product_variables(shop, request.scenario, request.context, request.member_id),
    }


def _block(page: Template, name: str, variables: dict) -> str | None:
    block = page.blocks.get(name)
    return _tidy("".join(block(page.new_context(variables)))) if block else None


def _tidy(text: str) -> str:
    """Templates stay readable with blank lines and trailing spaces; messages do not carry them."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def every_message() -> list[tuple[str, str, Channel]]:
    """(scenario, step, channel) of every message the scenarios can send."""
    return [(t.scenario.value, s.name, c) for t in TEMPLATES for s in t.steps for c in channels_of(s)]


# --- before a configuration is applied: does every message it can send render? --------------

_EVERY_ADDRESS = Contact(email="member@example.jp", phone="090-0000-0000", line_user_id="U0000000000",
                         postal_address="〒100-0001 東京都千代田区千代田1-1", push_token="push-token")
_CHECKED_AT = datetime(2026, 1, 5, 1, 0, tzinfo=timezone.utc)


def check_templates(config: ShopConfig, templates: Mapping[str, str]) -> list[str]:
    """One line per message that would fail: every enabled step on every channel it can go to,
    for every variant, with each main product of the catalogue (a sample / trial for S01 / S02),
    with and without the upsell block; every configured broadcast on its channel (or every
    routed one), named by its key (``broadcasts.weekly_news.template: …``); then every shop
    template no step or broadcast would ever look up."""
    problems: dict[str, None] = {}  # ordered, without repeats: one failure, one line
    for request in _every_touch(config):
        if (problem := _render_problem(request, config, templates)) is not None:
            problems[problem] = None
    for name, broadcast in config.broadcasts.items():
        for request in _broadcast_touches(name, broadcast):
            if (problem := _render_problem(request, config, templates)) is not None:
                problems[f"broadcasts.{name}.template: {problem}"] = None
    problems.update(dict.fromkeys(_never_looked_up(config, templates)))
    return list(problems)


def _render_problem(request: DeliveryRequest, config: ShopConfig, templates: Mapping[str, str]) -> str | None:
    try:
        message = render(request, _EVERY_ADDRESS, config, templates)
    except RenderError as error:
        return _problem(request, error.template, error.problem, templates)
    if message.channel is Channel.SMS and len(message.body) > SMS_LENGTH:
        chosen = _page(request, Channel.SMS, environment(templates), _copy(request, config).name).name
        return _problem(request, chosen, f"the SMS is {len(message.body)} characters, more than {SMS_LENGTH}: "
                        f"{message.body!r}", templates)
    return None


def _problem(request: DeliveryRequest, chosen: str | None, problem: str, templates: Mapping[str, str]) -> str:
    where = f"{request.scenario}.{request.step} on {request.channel.value if request.channel else '-'}"
    if request.variant:
        where += f", variant {request.variant}"
    if chosen is not None and chosen not in templates:
        where += ", built-in template"
    return f"{chosen or 'no template'} ({where}): {problem}"


def _every_touch(config: ShopConfig) -> Iterator[DeliveryRequest]:
    rules = config.rules()
    for template in TEMPLATES:
        scenario = template.scenario.value
        variants = [v for v, _ in rules.variants(scenario, template.variants)] or [None]
        for step in (s for s in template.steps if rules.step_enabled(scenario, s.name)):
            for channel, variant, context, upsell in product(
                    channels_of(step), variants, _contexts(config, scenario), (False, True)):
                yield DeliveryRequest(
                    member_id="m-check", key=f"m-check:{scenario}:{step.name}:check", scenario=scenario,
                    step=step.name, occurrence="check", channel=channel, outcome=Outcome.SENT,
                    reason="check", due_at=_CHECKED_AT, decided_at=_CHECKED_AT, variant=variant, upsell=upsell,
                    context=context,
                )


def broadcast_channels(broadcast: Broadcast) -> tuple[Channel, ...]:
    """Where a broadcast's touches may go: its own channel, else wherever routing may send them."""
    return (broadcast.channel,) if broadcast.channel is not None else ROUTED_CHANNELS


def _broadcast_touches(name: str, broadcast: Broadcast) -> Iterator[DeliveryRequest]:
    """A touch of a run of the broadcast on each channel it may go to (workflows.broadcasts.plan)."""
    for channel in broadcast_channels(broadcast):
        yield DeliveryRequest(
            member_id="m-check", key=f"m-check:{BROADCAST}:{name}:check", scenario=BROADCAST, step=name,
            occurrence="check", channel=channel, outcome=Outcome.SENT, reason="check", due_at=_CHECKED_AT,
            decided_at=_CHECKED_AT, context={"broadcast": name, "run": "check", "template": broadcast.template_name(name)},
        )


def _contexts(config: ShopConfig, scenario: str) -> list[dict[str, str]]:
    """The context a touch of ``scenario`` carries (workflows/entries.py), once per product."""
    if scenario == "S12":
        return [{"signal": "cancel_page_viewed"}]
    catalogue = {sku: p for sku, p in config.catalogue.items() if not p.ignore}
    mains = [sku for sku, p in catalogue.items() if p.role is LineRole.MAIN and not p.sample] or [""]
    if scenario == "S01":
        return [_purchase(sku) for sku in [sku for sku, p in catalogue.items() if p.sample] or mains]
    if scenario == "S02":
        return [_purchase(sku) for sku in [sku for sku, p in catalogue.items() if p.role is LineRole.TRIAL] or mains]
    if scenario == "S07":
        return [{"subscription_id": "sub-check", "sku": sku} for sku in mains]
    if scenario == "S10":
        return [{**_purchase(sku), "cross_order_id": "c-check",
                 "cross_sku": next(iter(catalogue[sku].cross), "") if sku else ""} for sku in mains]
    return [_purchase(sku) for sku in mains]


def _purchase(sku: str) -> dict[str, str]:
    return {"order_id": "o-check", "sku": sku, "run_out_date": "2026-02-04"}


def _never_looked_up(config: ShopConfig, templates: Mapping[str, str]) -> list[str]:
    """A shop template named for no step, channel or configured variant, or for no configured
    broadcast on a channel it goes out on, would silently never be used."""
    rules = config.rules()
    looked_up = {
        name for t in TEMPLATES for s in t.steps for c in channels_of(s)
        for v in [*(v for v, _ in rules.variants(t.scenario.value, t.variants)), None]
        for name in lookup_names(t.scenario.value, s.name, c, v)
    }
    broadcast = {
        name for key, b in config.broadcasts.items() for c in broadcast_channels(b)
        for name in lookup_names(BROADCAST, b.template_name(key), c, None)
    }
    unused = [f"{name}: no step looks this template up (<scenario>/<step>[.<variant>][.<channel>].j2, "
              "with a variant the configuration names)"
              for name in sorted(templates) if re.match(r"S\d\d/", name) and name not in looked_up]
    unused += [f"{name}: no broadcast looks this template up (BC/<template>[.<channel>].j2, with the template "
               "of a [broadcasts.NAME] — its name unless it names another — on a channel it goes out on)"
               for name in sorted(templates) if name.startswith(f"{BROADCAST}/") and name not in broadcast]
    return unused
