"""A broadcast's touch (scenario BC, step = the broadcast's name) renders from BC/<template>[.<channel>].j2,
the shop's own over the built-in copy, with the same layouts and the same 特定電子メール法 footer on email;
a template that does not exist fails clearly, and the delivery activity fails it for good, not the worker."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.contacts import store_contacts
from activities.delivery import DeliveryActivities
from activities.example_shop import EXAMPLE_SHOP
from activities.render import SMS_LENGTH, BrokenTemplate, NoTemplate, render
from worker.shop_config import load_shop_config
from workflows.events import Channel, Contact
from workflows.messages import DeliveryRequest
from workflows.touches import Outcome, touch_key

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shop.toml"
NOW = datetime(2026, 1, 5, 1, 0, tzinfo=timezone.utc)  # Monday 10:00 JST: the weekly メルマガ's run
CONTACT = Contact(email="hanako@example.jp", phone="090-1234-5678", line_user_id="U4af4980629",
                  postal_address="〒100-0001 東京都千代田区千代田1-1", push_token="push-token-1")
SHOP = load_shop_config(EXAMPLE)


def broadcast(name: str, channel: Channel | None, *, template: str | None = None, run: str = "2026-01-05",
              member_id: str = "m-1") -> DeliveryRequest:
    """The DeliveryRequest of one member's touch of one run (workflows.broadcasts.plan)."""
    return DeliveryRequest(
        member_id=member_id, key=touch_key(member_id, "BC", name, run), scenario="BC", step=name, occurrence=run,
        channel=channel, outcome=Outcome.SENT, reason=f"route:{channel.value if channel else '-'}", due_at=NOW,
        decided_at=NOW, context={"broadcast": name, "run": run, "template": template or name},
    )


def example(request: DeliveryRequest, unsubscribe_url: str | None = None):
    return render(request, CONTACT, SHOP.config, SHOP.templates, unsubscribe_url)


def test_the_weekly_news_email_is_the_shops_copy_with_the_sender_block_and_the_members_unsubscribe_link():
    link = "https://grk.example/u/m-1.sig"
    message = example(broadcast("weekly_news", Channel.EMAIL), link)
    assert message.template == "BC.weekly_news" and message.recipient == "hanako@example.jp"
    assert message.subject == "【GR健康館通信】1月5日号｜朝の酵素習慣で、季節の変わり目を元気に"
    assert "■ 今週のテーマ: 朝の酵素習慣" in message.body
    assert "上手な飲み方: https://grk.example/guide" in message.body
    sender = SHOP.config.shop.sender
    assert f"送信者: {sender.name}\n住所: {sender.address}\nお問い合わせ: {sender.contact}" in message.body
    assert message.body.endswith(f"配信停止: {link}")


def test_a_campaign_on_line_uses_its_own_line_copy_and_on_email_its_template():
    line = example(broadcast("nyusan_trial", Channel.LINE, template="cross_campaign"))
    assert line.recipient == "U4af4980629" and line.subject is None
    assert line.body.splitlines()[:2] == ["【ゴールデンルート健康館】", "定期会員さま限定！乳酸菌サプリがはじめての併用で20%OFF"]
    assert "次回の定期便に同梱してお届けします（1月12日まで）。" in line.body
    assert line.body.endswith("https://grk.example/set") and "配信停止" not in line.body
    email = example(broadcast("nyusan_trial", Channel.EMAIL, template="cross_campaign"))
    assert email.subject == "定期会員さま限定｜乳酸菌サプリ、はじめての併用で20%OFFでお試しください"
    assert "送料はかかりません" in email.body and "配信停止: https://grk.example/stop" in email.body


def test_the_monthly_dm_is_a_letter_to_the_members_address_with_the_phone_first():
    message = example(broadcast("monthly_dm", Channel.DM))
    assert message.recipient == CONTACT.postal_address and message.subject is None
    lines = message.body.splitlines()
    assert lines[:6] == ["〒100-0001 東京都千代田区千代田1-1", "お客様", "", "1月5日", "ゴールデンルート健康館", ""]
    assert "■ ゴールデンルート健康館だより（1月5日発行）" in lines
    assert "3袋まとめてのご注文なら、3袋まとめ買いで15%OFFでお得です。" in message.body
    assert message.body.index("フリーダイヤル 0120-000-000") < message.body.index("https://grk.example/buy")


@pytest.mark.parametrize("channel", [Channel.EMAIL, Channel.LINE, Channel.SMS, Channel.PUSH, Channel.DM],
                         ids=lambda c: c.value)
@pytest.mark.parametrize("name", ["weekly_news", "monthly_dm", "cross_campaign"])
def test_the_built_in_copy_of_the_example_broadcasts_renders_for_a_shop_without_its_own(name, channel):
    message = render(broadcast(name, channel), CONTACT)  # the example shop, no templates of its own
    assert message.template == f"BC.{name}" and message.body
    if channel is Channel.SMS:
        assert message.body.startswith("【GR健康館】") and len(message.body) <= SMS_LENGTH
    if channel is Channel.PUSH:
        assert message.recipient == "push-token-1" and message.body.startswith("【GR健康館】")
    if channel is Channel.EMAIL:
        assert message.body.endswith(f"配信停止: {EXAMPLE_SHOP.shop.urls.unsubscribe}")


def test_a_broadcast_whose_template_does_not_exist_fails_naming_bc_and_the_template():
    with pytest.raises(NoTemplate) as failure:
        render(broadcast("spring_sale", Channel.EMAIL), CONTACT, SHOP.config, SHOP.templates)
    assert str(failure.value) == ("BC.spring_sale on email: none of ['BC/spring_sale.email.j2', "
                                  "'BC/spring_sale.j2'] exists")
    # The template the run names, not the broadcast's name, is what is looked up.
    with pytest.raises(NoTemplate, match=r"BC/autumn_copy\.line\.j2"):
        render(broadcast("weekly_news", Channel.LINE, template="autumn_copy"), CONTACT)


def test_a_broadcast_email_without_the_sender_block_is_refused_like_a_scenarios():
    own = {"BC/weekly_news.email.j2": "{% block subject %}今週のお知らせ{% endblock %}本文だけのメール"}
    with pytest.raises(BrokenTemplate, match="the email does not show sender.name, sender.address, "
                                             "sender.contact, urls.unsubscribe, which 特定電子メール法 requires"):
        render(broadcast("weekly_news", Channel.EMAIL), CONTACT, SHOP.config, own)


@pytest.mark.parametrize(("channel", "template", "problem"), [
    (Channel.INSERT, "weekly_news", "the broadcast goes out only on ['email', 'line', 'sms', 'push', 'dm']"),
    (None, "weekly_news", "the broadcast goes out only on"),
    (Channel.EMAIL, "../S06/upsell", "'../S06/upsell' is not a broadcast template's name"),
])
def test_a_broadcast_touch_the_renderer_cannot_place_is_no_template(channel, template, problem):
    with pytest.raises(NoTemplate, match=problem.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        render(broadcast("weekly_news", channel, template=template), CONTACT)


async def test_delivering_a_broadcast_whose_template_is_missing_fails_for_good_and_records_nothing(pool, member_id):
    await store_contacts(pool, {member_id: Contact(email="hanako@example.jp")})
    with pytest.raises(ApplicationError) as failure:
        await ActivityEnvironment().run(DeliveryActivities(pool).deliver,
                                        broadcast("spring_sale", Channel.EMAIL, member_id=member_id))
    assert (failure.value.type, failure.value.non_retryable) == ("NoTemplate", True)
    assert "BC/spring_sale.j2" in str(failure.value)
    assert await pool.fetchval("SELECT count(*) FROM touches WHERE member_id = $1", member_id) == 0


async def test_delivering_a_broadcast_records_its_touch_and_message(pool, member_id):
    await store_contacts(pool, {member_id: Contact(email="hanako@example.jp")})
    result = await ActivityEnvironment().run(DeliveryActivities(pool).deliver,
                                             broadcast("weekly_news", Channel.EMAIL, member_id=member_id))
    assert (result.recorded, result.sent) == (True, True)
    touch = await pool.fetchrow("SELECT scenario, step, occurrence, outcome FROM touches WHERE member_id = $1",
                                member_id)
    assert dict(touch) == {"scenario": "BC", "step": "weekly_news", "occurrence": "2026-01-05", "outcome": "sent"}
    row = await pool.fetchrow("SELECT template, body FROM deliveries WHERE member_id = $1", member_id)
    assert row["template"] == "BC.weekly_news"
    assert json.loads(row["body"])["subject"] == "【GR健康館通信】1月5日号｜今週の健康習慣とお知らせ"  # built-in copy
