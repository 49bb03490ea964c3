"""Every message the scenarios can send renders, on every channel it can go out on, and says what it should."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import reduce

import pytest

from activities.render import (
    BrokenTemplate, NoRecipient, NoTemplate, RenderedMessage, channels_of, every_message, render,
)
from tests.factories import days, event, jst, order, registered, sample, shipped
from workflows.events import Channel, Contact
from workflows.lifecycle import apply, new_member
from workflows.messages import DeliveryRequest
from workflows.scenarios import BY_SCENARIO, TEMPLATES, Scenario, plan
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
    "S02": {"order_id": "t1"},
    "S07": {"subscription_id": "sub1", "sku": "KOSO-30"},
    "S10": {"order_id": "o5", "cross_order_id": "c1"},
    "S12": {},
}
MAIN_PURCHASE = {"order_id": "o1", "sku": "KOSO-30"}

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
