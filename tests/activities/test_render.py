"""Every message the scenarios can send renders, on every channel it can go out on, and says what it should."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import reduce
from itertools import product

import pytest
from structlog.testing import capture_logs

from activities.example_shop import EXAMPLE_SHOP
from activities.render import (
    BrokenTemplate, NoRecipient, NoTemplate, RenderedMessage, channels_of, every_message, render,
)
from activities.template_loader import ENVIRONMENTS_KEPT, environment
from tests.factories import days, event, jst, order, registered, sample, shipped
from workflows.events import Channel, Contact, LineRole
from workflows.lifecycle import apply, new_member
from workflows.messages import DeliveryRequest
from workflows.scenarios import BY_SCENARIO, TEMPLATES, Scenario, plan
from workflows.shop import Product, Sender, ShopConfig
from workflows.touches import Outcome

NOW = datetime(2026, 5, 1, 1, 0, tzinfo=timezone.utc)
CONTACT = Contact(email="hanako@example.jp", phone="090-1234-5678", line_user_id="U4af4980629",
                  postal_address="〒100-0001 東京都千代田区千代田1-1")
RECIPIENT = {Channel.EMAIL: CONTACT.email, Channel.SMS: CONTACT.phone, Channel.LINE: CONTACT.line_user_id,
             Channel.DM: CONTACT.postal_address, Channel.INSERT: None, Channel.CALL_CENTER: None}
UPSELL_BLOCK = "定期コースのご案内"
MEMBER_CHANNELS = (Channel.EMAIL, Channel.LINE, Channel.DM)  # the ones with room for the upsell block

# The context each scenario's entries carry (workflows/entries.py); the contract test below checks it.
CONTEXT = {
    "S01": {"order_id": "s1", "sku": "KOSO-SAMPLE", "run_out_date": "2026-05-08"},
    "S02": {"order_id": "t1", "sku": "KOSO-TRIAL-10", "run_out_date": "2026-05-11"},
    "S07": {"subscription_id": "sub1", "sku": "KOSO-30"},
    "S10": {"order_id": "o5", "cross_order_id": "c1", "sku": "KOSO-30", "cross_sku": "NYUSAN-30"},
    "S12": {"signal": "cancel_page_viewed"},
}
MAIN_PURCHASE = {"order_id": "o1", "sku": "KOSO-30", "run_out_date": "2026-05-31"}

# What each step's message must say, on every channel it goes out on (SMS included).
MENTIONS = {
    ("S01", "welcome_offer"): "初回限定", ("S01", "sample_insert"): "QRコード",
    ("S01", "run_out_offer"): "残りわずか", ("S01", "last_call"): "最後",
    ("S02", "welcome"): "使い方", ("S02", "bulk_offer"): "まとめ買い", ("S02", "last_call"): "最後",
    ("S03", "thanks_insert"): "ピルケース", ("S03", "testimonial"): "お客様の声", ("S03", "survey"): "アンケート",
    ("S04", "usage_tips"): "使い方", ("S04", "testimonial"): "お客様の声", ("S04", "reminder"): "残り少なく",
    ("S05", "member_benefits"): "モニター", ("S05", "survey"): "アンケート",
    ("S06", "upsell"): "定期コース",
    ("S07", "resume_link"): "再開", ("S07", "resume_call"): "再開",
    ("S08", "loyalty_offer"): "ご愛用",
    ("S09", "cross_offer"): "併用", ("S10", "cross_follow_up"): "併用",
    ("S11", "comeback_offer"): "再購入", ("S11", "new_product"): "新商品",
    ("S12", "call_center_task"): "解約兆候", ("S12", "follow_up_faq"): "よくあるご質問",
}


def request(scenario: str, step: str, channel: Channel, *, upsell: bool = False, variant: str | None = None,
            context: dict[str, str] | None = None) -> DeliveryRequest:
    variants = next((t.variants for t in TEMPLATES if t.scenario.value == scenario), ())
    if variant is None and variants:
        variant = variants[0]
    return DeliveryRequest(
        member_id="m-render", key=f"m-render:{scenario}:{step}:o1", scenario=scenario, step=step,
        occurrence="o1", channel=channel, outcome=Outcome.SENT, reason=f"route:{channel.value}",
        due_at=NOW, decided_at=NOW, variant=variant, upsell=upsell,
        context=CONTEXT.get(scenario, MAIN_PURCHASE) if context is None else context,
    )


def text(message: RenderedMessage) -> str:
    return f"{message.subject or ''}\n{message.body}"


def test_every_step_says_what_it_is_for():
    assert set(MENTIONS) == {(t.scenario.value, s.name) for t in TEMPLATES for s in t.steps}


@pytest.mark.parametrize("upsell", [False, True], ids=["plain", "upsell"])
@pytest.mark.parametrize(("scenario", "step", "channel"), every_message(), ids=lambda v: getattr(v, "value", v))
def test_every_message_renders_on_every_channel_it_can_go_out_on(scenario, step, channel, upsell):
    message = render(request(scenario, step, channel, upsell=upsell), CONTACT)
    assert (message.channel, message.template) == (channel, f"{scenario}.{step}")
    assert message.recipient == RECIPIENT[channel]
    assert MENTIONS[(scenario, step)] in text(message)
    assert "{{" not in message.body and "{%" not in message.body
    assert (UPSELL_BLOCK in message.body) == (upsell and channel in MEMBER_CHANNELS)


@pytest.mark.parametrize(("scenario", "step", "channel"), every_message(), ids=lambda v: getattr(v, "value", v))
def test_each_channel_has_its_shape(scenario, step, channel):
    message = render(request(scenario, step, channel, upsell=True), CONTACT)
    if channel is Channel.SMS:
        assert len(message.body) <= 70 and "\n" not in message.body
    if channel is Channel.EMAIL:
        assert message.subject and "\n" not in message.subject
        assert "配信停止" in message.body and "ゴールデンルート健康館" in message.body
        assert "https://grk.example/stop" in message.body
    if channel is Channel.DM:
        assert message.body.startswith(CONTACT.postal_address)
        assert "0120-000-000" in message.body  # offline members order by phone
    if channel is Channel.INSERT:
        assert message.insert_code and message.insert_code.startswith(f"{scenario}-")
    if channel is Channel.CALL_CENTER:
        assert message.subject and "m-render" in message.body
    if channel not in (Channel.EMAIL, Channel.CALL_CENTER):
        assert message.subject is None


def test_the_resume_letter_gives_the_phone_and_the_online_message_my_page():
    letter = render(request("S07", "resume_link", Channel.DM), CONTACT).body
    email = render(request("S07", "resume_link", Channel.EMAIL), CONTACT).body
    assert "定期番号 sub1" in letter and "フリーダイヤル" in letter
    assert "マイページの「定期再開」ボタン" in email and "https://grk.example/my/teiki" in email


def test_a_churn_task_names_the_sign_and_the_follow_up_points_to_the_faq():
    task = render(request("S12", "call_center_task", Channel.CALL_CENTER), None)
    assert task.subject.startswith("解約兆候: ") and task.recipient is None
    line = render(request("S12", "follow_up_faq", Channel.LINE), CONTACT).body
    assert "https://grk.example/faq" in line


@pytest.mark.parametrize("channel", channels_of(BY_SCENARIO[Scenario.S08_LOYALTY].steps[0]))
def test_the_loyalty_variants_are_different_offers(channel):
    gift = render(request("S08", "loyalty_offer", channel, variant="gift"), CONTACT)
    sale = render(request("S08", "loyalty_offer", channel, variant="secret_sale"), CONTACT)
    assert gift.body != sale.body
    assert "プレゼント" in text(gift) and "シークレットセール" not in text(gift)
    assert "シークレットセール" in text(sale) and "プレゼント" not in text(sale)


def test_only_online_loyalty_messages_carry_a_coupon():
    assert "クーポン" in render(request("S08", "loyalty_offer", Channel.EMAIL, variant="secret_sale"), CONTACT).body
    assert "クーポン" not in render(request("S08", "loyalty_offer", Channel.DM, variant="secret_sale"), CONTACT).body


def test_a_loyalty_offer_without_a_known_variant_is_refused():
    with pytest.raises(NoTemplate, match="S08.loyalty_offer on email: variant 'vip'"):
        render(request("S08", "loyalty_offer", Channel.EMAIL, variant="vip"), CONTACT)


@pytest.mark.parametrize("channel", [Channel.EMAIL, Channel.SMS, Channel.LINE, Channel.DM])
def test_a_member_without_an_address_on_the_channel_has_no_recipient(channel):
    with pytest.raises(NoRecipient, match=f"S06.upsell on {channel.value}: the member has no"):
        render(request("S06", "upsell", channel), Contact())
    with pytest.raises(NoRecipient):
        render(request("S06", "upsell", channel), None)


@pytest.mark.parametrize(("scenario", "step", "channel"), [
    ("S01", "welcome_offer", Channel.PUSH),  # push is not routed, so it has no copy
    ("S01", "welcome_offer", Channel.INSERT),  # a routed step is never an insert
    ("S12", "call_center_task", Channel.EMAIL),  # a call-centre step goes only to the call centre
    ("S01", "no_such_step", Channel.EMAIL),
    ("S99", "welcome_offer", Channel.EMAIL),
])
def test_a_message_nobody_wrote_is_refused_by_name(scenario, step, channel):
    with pytest.raises(NoTemplate, match=f"{scenario}.{step} on {channel.value}"):
        render(request(scenario, step, channel, variant=""), CONTACT)


def test_a_touch_missing_context_its_template_needs_is_refused():
    with pytest.raises(BrokenTemplate, match="S07.resume_call on call_center: .*subscription_id"):
        render(request("S07", "resume_call", Channel.CALL_CENTER, context={"sku": "KOSO-30"}), None)


def test_rendering_is_deterministic():
    touch = request("S03", "survey", Channel.EMAIL, upsell=True)
    assert render(touch, CONTACT) == render(touch, CONTACT)


# --- the contract with the planner: every touch it plans renders with the context it carries ---

M = "m-contract"
T0 = jst(2026, 1, 5)


def histories() -> list[list]:
    buyer = [
        registered(M, T0),
        order(M, T0 + days(1), "o1"), shipped(M, T0 + days(2), "o1"),
        order(M, T0 + days(31), "o2"), order(M, T0 + days(61), "o3"),
        order(M, T0 + days(91), "o4"), shipped(M, T0 + days(92), "o4"),
        order(M, T0 + days(100), "c1", role="cross"),
        order(M, T0 + days(140), "o5"),
        event("subscription_started", M, T0 + days(141), subscription_id="sub1", sku="KOSO-30", interval_days=30),
        event("subscription_paused", M, T0 + days(150), subscription_id="sub1"),
        event("churn_signal", M, T0 + days(151), signal="cancel_page_viewed"),
    ]
    return [
        [registered(M, T0), sample(M, T0 + days(1), "s1")],
        [registered(M, T0), order(M, T0 + days(1), "t1", role="trial")],
        buyer,
        [registered(M, T0, sales_channel="offline"), order(M, T0, "o1", subscription_id="sub1"),
         event("subscription_started", M, T0, subscription_id="sub1", sku="KOSO-30", interval_days=30),
         event("subscription_paused", M, T0 + days(10), subscription_id="sub1")],  # S07's call
    ]


def test_every_touch_the_planner_plans_renders_with_its_own_context():
    planned = [t for events in histories() for t in plan(reduce(apply, events, new_member(M)))]
    assert {t.scenario for t in planned} == {s.value for s in Scenario}
    for touch in planned:
        step = next(s for s in BY_SCENARIO[Scenario(touch.scenario)].steps if s.name == touch.step)
        for channel in channels_of(step):
            for variant in BY_SCENARIO[Scenario(touch.scenario)].variants or (None,):
                render(request(touch.scenario, touch.step, channel, variant=variant, context=touch.context), CONTACT)


# --- the shop's configuration: its products by name, its sender, its own templates ------------

SKUS = tuple(EXAMPLE_SHOP.catalogue)
MAINS = [sku for sku, p in EXAMPLE_SHOP.catalogue.items() if p.role is LineRole.MAIN]


def contexts_naming_every_product(scenario: str) -> list[dict[str, str]]:
    """The scenario's context once per product of the example catalogue it can be about."""
    catalogue = EXAMPLE_SHOP.catalogue
    if scenario == "S01":
        return [{**CONTEXT["S01"], "sku": sku} for sku, p in catalogue.items() if p.sample]
    if scenario == "S02":
        return [{**CONTEXT["S02"], "sku": sku} for sku, p in catalogue.items() if p.role is LineRole.TRIAL]
    if scenario == "S10":
        return [{**CONTEXT["S10"], "sku": sku, "cross_sku": cross} for sku in MAINS for cross in catalogue[sku].cross]
    if scenario == "S12":
        return [CONTEXT["S12"]]
    return [{**CONTEXT.get(scenario, MAIN_PURCHASE), "sku": sku} for sku in MAINS]


@pytest.mark.parametrize(("scenario", "step", "channel"), every_message(), ids=lambda v: getattr(v, "value", v))
def test_no_message_of_the_example_shop_shows_a_sku(scenario, step, channel):
    variants = BY_SCENARIO[Scenario(scenario)].variants or (None,)
    with capture_logs() as logs:
        for context, variant, upsell in product(contexts_naming_every_product(scenario), variants, (False, True)):
            message = render(request(scenario, step, channel, upsell=upsell, variant=variant, context=context),
                             CONTACT)
            shown = f"{text(message)}\n{message.insert_code or ''}"
            assert not [sku for sku in SKUS if sku in shown], (context, shown)
    assert logs == []  # every product the example shop sells has a name


@pytest.mark.parametrize(("scenario", "step", "generic"), [
    ("S01", "welcome_offer", "サンプル"), ("S03", "testimonial", "ご愛用の商品"), ("S07", "resume_call", "ご愛用の商品"),
])
def test_a_sku_the_catalogue_does_not_name_is_never_shown_and_is_logged(scenario, step, generic):
    step_channel = next(s for s in BY_SCENARIO[Scenario(scenario)].steps if s.name == step).channel
    context = {**CONTEXT.get(scenario, MAIN_PURCHASE), "sku": "KOSO-7-NEW"}
    with capture_logs() as logs:
        message = render(request(scenario, step, step_channel or Channel.EMAIL, context=context), CONTACT)
    assert "KOSO-7-NEW" not in text(message) and generic in text(message)
    assert [(e["event"], e["sku"], e["log_level"]) for e in logs] == [
        ("render.product_unnamed", "KOSO-7-NEW", "warning")]


def test_a_sample_is_named_and_so_is_the_main_product_it_leads_to():
    welcome = text(render(request("S01", "welcome_offer", Channel.EMAIL), CONTACT))
    assert "このたびはゴールデン酵素 お試しサンプルをお申込みいただき" in welcome
    assert "ゴールデン酵素 30日分を初回限定20%OFF・送料無料でお届けします" in welcome


@pytest.mark.parametrize("step", ["bulk_offer", "last_call"])
def test_a_trial_buyer_is_offered_the_main_product_by_name(step):
    offer = text(render(request("S02", step, Channel.EMAIL), CONTACT))
    assert "ゴールデン酵素 30日分のはじめてのご注文に限" in offer
    assert "ゴールデン酵素 30日分のご購入はこちら" in offer


@pytest.mark.parametrize(("main", "cross", "url"), [
    ("KOSO-30", "乳酸菌サプリ 30日分", "https://grk.example/nyusan"),
    ("AOJIRU-30", "コラーゲンゼリー 30本", "https://grk.example/collagen"),
])
@pytest.mark.parametrize("channel", [Channel.EMAIL, Channel.LINE, Channel.DM])
def test_the_cross_sell_names_the_cross_product_of_the_members_main_product(main, cross, url, channel):
    message = render(request("S09", "cross_offer", channel, context={**MAIN_PURCHASE, "sku": main}), CONTACT)
    assert cross in text(message) and url in message.body
    other = {"乳酸菌サプリ 30日分", "コラーゲンゼリー 30本"} - {cross}
    assert not [name for name in other if name in text(message)]


def test_the_cross_sell_links_the_shops_cross_page_when_the_product_has_no_page():
    shop = shop_with(catalogue={**EXAMPLE_SHOP.catalogue, "NYUSAN-30": Product(
        name="乳酸菌サプリ 30日分", role=LineRole.CROSS, days_supply=30)})
    sms = render(request("S09", "cross_offer", Channel.SMS), CONTACT, shop).body
    assert sms.endswith(" https://grk.example/set")


def test_the_cross_sell_revival_asks_after_the_lapsed_product_and_offers_another():
    message = render(request("S10", "cross_follow_up", Channel.EMAIL), CONTACT)  # lapsed: NYUSAN-30
    assert "以前ご一緒にお使いいただいていた乳酸菌サプリ 30日分（ご注文番号 c1）" in message.body
    assert "コラーゲンゼリー 30本もおすすめです" in message.body and "https://grk.example/collagen" in message.body


def test_the_second_reactivation_step_names_the_similar_product():
    message = render(request("S11", "new_product", Channel.EMAIL, context={**MAIN_PURCHASE, "sku": "AOJIRU-30"}),
                     CONTACT)
    assert "今回のおすすめ: ゴールデン酵素 30日分" in message.body and "https://grk.example/koso" in message.body
    assert message.subject.startswith("ゴールデン酵素 30日分のご紹介")


def shop_with(**changes) -> ShopConfig:
    """The example shop with some of its sections replaced, validated like a shop's file."""
    return ShopConfig.model_validate({**EXAMPLE_SHOP.model_dump(), **changes})


OTHER_SHOP = shop_with(shop=EXAMPLE_SHOP.shop.model_copy(update={
    "name": "みどり青汁本舗", "timezone": "America/Los_Angeles",
    "sender": Sender(name="みどり青汁本舗（有限会社みどり）", email="info@midori.example", address="〒060-0000 札幌市中央区0-0",
                     contact="0120-111-111（平日10:00〜16:00）"),
    "urls": EXAMPLE_SHOP.shop.urls.model_copy(update={"unsubscribe": "https://midori.example/optout"}),
}))


def test_an_email_ends_with_what_the_law_requires_of_the_shop_that_sends_it():
    message = render(request("S03", "survey", Channel.EMAIL), CONTACT, OTHER_SHOP)
    footer = message.body[message.body.index("――――"):]
    for shown in ("みどり青汁本舗（有限会社みどり）", "〒060-0000 札幌市中央区0-0", "0120-111-111（平日10:00〜16:00）",
                  "https://midori.example/optout"):
        assert shown in footer
    assert "ゴールデンルート" not in message.body and "grk.example/stop" not in message.body


def test_an_email_whose_layout_drops_the_opt_out_link_is_refused():
    layout = "{% block lead %}{% endblock %}\n{{ sender.name }} {{ sender.address }} {{ sender.contact }}"
    with pytest.raises(BrokenTemplate, match="does not show urls.unsubscribe, which 特定電子メール法"):
        render(request("S03", "survey", Channel.EMAIL), CONTACT, templates={"_layouts/email.j2": layout})


def test_dates_are_the_shops_own():
    # 2026-05-01 01:00 UTC is 1 May in Tokyo and still 30 April in Los Angeles.
    assert "5月1日" in render(request("S06", "upsell", Channel.DM), CONTACT).body
    letter = render(request("S06", "upsell", Channel.DM), CONTACT, OTHER_SHOP).body
    assert "4月30日" in letter and "5月1日" not in letter


def test_a_shops_own_template_wins_over_the_built_in_one():
    own = {"S06/upsell.j2": "{% extends layout %}{% block short %}{{ shop.name }}の定期便{% endblock %}"
                            "{% block lead %}{{ product }}は定期便がお得です。{% endblock %}"
                            "{% block link %}{{ urls.subscription }}{% endblock %}"}
    line = render(request("S06", "upsell", Channel.LINE), CONTACT, OTHER_SHOP, own).body
    assert "みどり青汁本舗の定期便" in line and "ゴールデン酵素 30日分は定期便がお得です。" in line
    assert "通常購入のままだと" not in line
    assert "通常購入のままだと" in render(request("S06", "upsell", Channel.DM), CONTACT, OTHER_SHOP).body


def test_a_shop_can_replace_a_layout():
    own = {"_layouts/sms.j2": "[{{ shop.short_name }}] {{ self.short() | trim }}"}
    assert render(request("S06", "upsell", Channel.SMS), CONTACT, templates=own).body == \
        "[GR健康館] 定期コースなら毎回10%OFF・送料無料・ポイント2倍"


TWO_VARIANTS = shop_with(scenarios={"S06": {"variants": {"plain": 1, "points": 1}}})
VARIANT_COPY = {
    "S06/upsell.points.j2": "{% extends layout %}{% block short %}ポイント5倍{% endblock %}"
                            "{% block lead %}定期ならポイント5倍{% endblock %}"
                            "{% block link %}{{ urls.subscription }}{% endblock %}",
    "S06/upsell.points.sms.j2": "{% extends layout %}{% block short %}SMS限定ポイント5倍{% endblock %}"
                                "{% block link %}{{ urls.subscription }}{% endblock %}",
}


@pytest.mark.parametrize(("variant", "channel", "says"), [
    ("points", Channel.LINE, "定期ならポイント5倍"), ("points", Channel.SMS, "SMS限定ポイント5倍"),
    ("plain", Channel.LINE, "次回から定期コースに切り替えてみませんか"),
])
def test_a_variants_own_template_is_chosen_for_that_variant(variant, channel, says):
    message = render(request("S06", "upsell", channel, variant=variant), CONTACT, TWO_VARIANTS, VARIANT_COPY)
    assert says in message.body


def test_a_variant_the_shop_did_not_configure_is_refused():
    with pytest.raises(NoTemplate, match=r"variant 'gold' is not one of \['plain', 'points'\]"):
        render(request("S06", "upsell", Channel.LINE, variant="gold"), CONTACT, TWO_VARIANTS, VARIANT_COPY)


def test_a_template_that_fails_at_run_time_is_a_broken_template_naming_its_line():
    own = {"S06/upsell.j2": "{% extends layout %}\n{% block short %}{{ 1 / 0 }}{% endblock %}"}
    with pytest.raises(BrokenTemplate, match=r"S06.upsell on sms: ZeroDivisionError: .* \(line 2\)"):
        render(request("S06", "upsell", Channel.SMS), CONTACT, templates=own)


def test_one_environment_per_set_of_templates_and_only_a_few_kept():
    first = environment({"S06/upsell.j2": "a"})
    assert environment({"S06/upsell.j2": "a"}) is first and environment({"S06/upsell.j2": "b"}) is not first
    for n in range(ENVIRONMENTS_KEPT + 1):
        environment({"S06/upsell.j2": str(n)})
    assert environment({"S06/upsell.j2": "a"}) is not first  # evicted, built again
