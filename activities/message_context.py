"""What a message may say about the shop and the member's products: the variables a template fills in.

Everything comes from one version of the shop's configuration (``ShopConfig``) and
the touch's context (``workflows/entries.py``: ``sku``, ``cross_sku``, …). A SKU is
an order system's code, never customer copy: a product is named by its catalogue
display name, and a SKU the catalogue does not name falls back to a generic
wording, with a warning an operator can act on.

Mappings reach templates as ``Named`` dicts so that a template asking for what the
configuration lacks fails with the name the template used ("'urls' has no attribute
'teiki'"), not with "'dict object' …".
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from jinja2 import StrictUndefined
from jinja2.runtime import TemplateReference

from workflows.events import LineRole
from workflows.shop import Product, ShopConfig

GENERIC_PRODUCT = "ご愛用の商品"
# A sample or trial the catalogue does not name still reads naturally in its own scenario.
GENERIC_PRODUCT_OF = {"S01": "サンプル", "S02": "お試し商品"}
GENERIC_MAIN_PRODUCT = "本品"


class Named(dict):
    """A mapping that knows the name templates call it by."""

    def __init__(self, label: str, items: dict) -> None:
        super().__init__({k: Named(f"{label}.{k}", v) if isinstance(v, dict) else v for k, v in items.items()})
        self._label = label


class NamedUndefined(StrictUndefined):
    """StrictUndefined whose error names the variable (``'urls' has no attribute 'teiki'``)
    or the block a layout prints that the template lacks."""

    @property
    def _undefined_message(self) -> str:
        owner = self._undefined_obj
        if isinstance(owner, Named) and not self._undefined_hint:
            return f"{owner._label!r} has no attribute {self._undefined_name!r}"
        if isinstance(owner, TemplateReference):  # a layout's self.subject() of a page without one
            return f"the template has no block {self._undefined_name!r}"
        return super()._undefined_message


class UnknownTimezone(ValueError):
    """shop.timezone names no zone this machine knows: no date in a message could be right."""


def shop_variables(shop: ShopConfig, decided_at: datetime) -> dict:
    """The shop's profile, sender, URLs and offers, and the dates an offer is good for."""
    profile = shop.shop
    try:
        sent = decided_at.astimezone(ZoneInfo(profile.timezone)).date()
    except (ZoneInfoNotFoundError, ValueError):
        raise UnknownTimezone(f"shop.timezone: {profile.timezone!r} is not a known time zone") from None
    urls = profile.urls.model_dump()
    pages = urls.pop("pages")
    return {
        "shop": Named("shop", profile.model_dump()),
        "sender": Named("sender", profile.sender.model_dump()),
        # Pages by name too (urls.voice); the named URLs win over a page of the same name.
        "urls": Named("urls", {**pages, **urls, "pages": pages}),
        "offers": Named("offers", dict(profile.offers)),
        "sent_on": japanese_date(sent),
        "offer_until": japanese_date(sent + timedelta(days=profile.offer_days)),
    }


def product_variables(shop: ShopConfig, scenario: str, context: dict[str, str], member_id: str) -> dict:
    """``product``, ``main_product``, ``cross_product``, ``similar_product``, ``lapsed_cross_product``."""
    catalogue = shop.catalogue

    def named(sku: str | None, field: str) -> Product | None:
        if not sku:
            return None
        product = catalogue.get(sku)
        if product is None or not product.name:
            # A logger bound now, not at import: the configuration in force (and a test's capture) applies.
            structlog.get_logger(__name__).warning(
                "render.product_unnamed", sku=sku, field=field, scenario=scenario, member_id=member_id,
                reason="not in the catalogue" if product is None else "the catalogue gives it no name")
            return None
        return product

    def card(skus: list[str], label: str) -> Named | None:
        product = next((p for p in (named(s, label) for s in skus) if p is not None), None)
        return Named(label, {"name": product.name, "url": product.url}) if product else None

    sku = context.get("sku") or ""
    own, main_sku = named(sku, "sku"), _main_sku(shop, sku)
    main = catalogue.get(main_sku)
    main_named = own if main_sku == sku else named(main_sku, "leads_to")
    lapsed = context.get("cross_sku") or ""
    crosses = list(main.cross) if main else []
    # S10: the member stopped the lapsed one; another cross product, if there is one, fits better.
    crosses = [c for c in crosses if c != lapsed] + [c for c in crosses if c == lapsed]
    lapsed_product = named(lapsed, "cross_sku")
    return {
        "product": own.name if own else GENERIC_PRODUCT_OF.get(scenario, GENERIC_PRODUCT),
        "main_product": main_named.name if main_named else GENERIC_MAIN_PRODUCT,
        "cross_product": card(crosses, "cross_product"),
        "similar_product": card(list(main.similar) if main else [], "similar_product"),
        "lapsed_cross_product": lapsed_product.name if lapsed_product else None,
    }


def _main_sku(shop: ShopConfig, sku: str) -> str:
    """The main product a SKU stands for: itself, or the one a sample or trial leads to
    (validated to be a main product of the catalogue)."""
    entry = shop.catalogue.get(sku)
    if entry is None:
        return ""
    if entry.leads_to:
        return entry.leads_to
    return sku if entry.role is LineRole.MAIN else ""


def japanese_date(day: date) -> str:
    return f"{day.month}月{day.day}日"
