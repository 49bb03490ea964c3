"""``goldenroute dev``'s channels: the real senders against the vendors' stand-ins, and the
page of what each member received.

The stand-ins speak their vendors' protocols (SMTP, LINE's push API, an SMS gateway, a
signed webhook) on real sockets; the senders are built from the settings by
``worker.senders.build_senders``, as the worker builds them. The page is served by the
FastAPI app over ASGI and read as a browser would get it.
"""

from __future__ import annotations

import html
import json
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from temporalio.testing import ActivityEnvironment

from activities.contacts import store_contacts
from activities.delivery import DeliveryActivities
from activities.render import RenderedMessage
from starter.received_page import mount_received
from tests.activities.test_delivery import request
from worker.dev_channels import DevChannels
from worker.senders import build_senders
from worker.settings import Settings
from workflows.events import Channel, Contact
from workflows.touches import touch_key

LINE_ID = "U0123456789abcdef0123456789abcdef"


def message(channel: Channel, recipient: str, body: str, subject: str | None = None) -> RenderedMessage:
    return RenderedMessage(channel=channel, template="S01.welcome_offer", subject=subject, body=body,
                           recipient=recipient)


async def test_dev_starts_a_stand_in_per_channel_and_the_real_senders_reach_them():
    async with DevChannels(Settings()) as channels:
        senders = build_senders(channels.settings)
        assert set(senders) == {Channel.EMAIL, Channel.LINE, Channel.SMS, Channel.PUSH}
        await senders[Channel.EMAIL].for_shop(None).send(
            message(Channel.EMAIL, "taro@example.jp", "本文です", "ようこそ"), "m-1:S01:welcome_offer:o1", "m-1")
        await senders[Channel.LINE].send(message(Channel.LINE, LINE_ID, "LINEの本文"), "m-2:S01:welcome_offer:o1", "m-2")
        await senders[Channel.SMS].send(message(Channel.SMS, "090-1234-5678", "SMSの本文"), "m-3:S01:welcome_offer:o1",
                                        "m-3")
        await senders[Channel.PUSH].send(message(Channel.PUSH, "device-1", "プッシュ", "お知らせ"),
                                         "m-4:S01:welcome_offer:o1", "m-4")
        for sender in senders.values():
            await sender.aclose()
        [mail] = channels.mail.received
        assert (mail.to, mail.subject, mail.text.strip()) == ("taro@example.jp", "ようこそ", "本文です")
        [push] = channels.line.received
        assert (push.recipient, push.text) == (LINE_ID, "LINEの本文")
        [sms] = channels.sms.messages
        assert (sms.to, sms.text) == ("+819012345678", "SMSの本文")
        assert channels.push.received["m-4:S01:welcome_offer:o1"]["body"] == "プッシュ"
        # Each copy is found by the touch's key, as the page looks it up.
        email_copy = channels.copy("email", "m-1:S01:welcome_offer:o1")
        assert (email_copy.where, email_copy.subject, email_copy.times) == ("mail catcher", "ようこそ", 1)
        assert email_copy.sender == "ゴールデンルート健康館（株式会社ゴールデンルート） <info@grk.example>"  # unsplit
        assert channels.copy("line", "m-2:S01:welcome_offer:o1").text == "LINEの本文"
        assert channels.copy("sms", "m-3:S01:welcome_offer:o1").text == "SMSの本文"
        assert channels.copy("push", "m-4:S01:welcome_offer:o1").subject == "お知らせ"
        assert channels.copy("line", "m-1:S01:welcome_offer:o1") is None  # another channel's key
        banner = channels.banner()
        for route in (f"email → mail catcher {channels.mail.url}", f"line  → LINE stand-in {channels.line.url}",
                      f"sms   → SMS gateway stand-in {channels.sms.url}",
                      f"push  → webhook stand-in {channels.push.webhook_url}"):
            assert route in banner
        urls = [channels.line.url, channels.sms.url]
    for url in urls:  # stopped with the context
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as http:
                await http.get(url)


async def test_a_channel_the_environment_names_keeps_its_vendor_and_the_banner_shows_no_secret():
    given = Settings(smtp_url=SecretStr("smtp://user:hunter2@mail.shop.example:587"),
                     line_channel_access_token=SecretStr("real-line-token"),
                     sms_gateway_url="https://sms.vendor.example/v1?key=hunter2")
    async with DevChannels(given) as channels:
        assert channels.mail is None and channels.line is None and channels.sms is None
        assert channels.push is not None  # PUSH_WEBHOOK_URL unset: its stand-in
        assert channels.settings.smtp_url == given.smtp_url
        assert channels.settings.line_api_url == "https://api.line.me"
        assert channels.settings.sms_gateway_url == given.sms_gateway_url
        banner = channels.banner()
    assert "email → SMTP smtp://mail.shop.example:587 (SMTP_URL)" in banner
    assert "line  → LINE Messaging API https://api.line.me (LINE_CHANNEL_ACCESS_TOKEN)" in banner
    # build_senders needs the token too: without it SMS stays in the outbox, and the banner says why.
    assert "sms   → outbox (SMS_GATEWAY_URL is set, SMS_GATEWAY_TOKEN is not)" in banner
    assert "hunter2" not in banner and "user" not in banner and "real-line-token" not in banner


async def page(app: FastAPI, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dev") as http:
        return await http.get(path)


async def test_the_page_shows_what_each_member_received_as_the_stand_ins_got_it(pool, member_id):
    await store_contacts(pool, {member_id: Contact(email=f"{member_id}@example.jp", line_user_id=LINE_ID)})
    async with DevChannels(Settings()) as channels:
        senders = build_senders(channels.settings)
        delivery = DeliveryActivities(pool, senders=senders)
        email = request(member_id, channel=Channel.EMAIL, scenario="S01", step="welcome_offer", context={})
        line = request(member_id, channel=Channel.LINE, scenario="S03", step="testimonial", context={})
        assert (await ActivityEnvironment().run(delivery.deliver, email)).sent
        assert (await ActivityEnvironment().run(delivery.deliver, line)).sent
        app = FastAPI()
        mount_received(app, pool, channels)
        response = await page(app, f"/dev/received/{quote(member_id)}")
        every = await page(app, "/dev/received")
        [mail], [push] = channels.mail.received, channels.line.received
        # The same touch's mail sent again behind the engine's back: the page says it arrived twice.
        rendered = RenderedMessage(channel=Channel.EMAIL, template="S01.welcome_offer", subject=mail.subject,
                                   body=mail.text, recipient=mail.to)
        await senders[Channel.EMAIL].for_shop(None).send(rendered, email.key, member_id)
        twice = html.unescape((await page(app, f"/dev/received/{quote(member_id)}")).text)
        for sender in senders.values():
            await sender.aclose()
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    text = html.unescape(response.text)
    # The mail catcher's copy: From, To, Subject and the text part, as the member's mail client shows them.
    for shown in (mail.sender_name, mail.to, mail.subject, mail.text.strip().splitlines()[0], "mail catcher"):
        assert shown in text
    assert push.text.splitlines()[0] in text and "LINE stand-in" in text
    assert text.count("送信済み") == 2 and "試行 1回" in text
    assert "S01 サンプル→本品引上 / welcome_offer" in text and "S03 F1→F2転換 / testimonial" in text
    # Newest first: the LINE message was handed over after the email.
    assert text.index("testimonial") < text.index("welcome_offer")
    assert every.status_code == 200 and member_id in every.text
    assert "2回届いています" in twice and "回届いています" not in text


async def test_the_page_escapes_the_message_and_shows_the_record_without_a_copy(pool):
    member_id = "m-<b>bold</b>&"
    key = touch_key(member_id, "S01", "welcome_offer", "o1")
    body = {"subject": "<img src=x onerror=alert(1)>", "body": "<script>alert('x')</script>\n2行目",
            "recipient": "a@example.jp"}
    await pool.execute(
        "INSERT INTO touches (idempotency_key, member_id, scenario, step, occurrence, channel, outcome, reason,"
        " planned_at, decided_at) VALUES ($1, $2, 'S01', 'welcome_offer', 'o1', 'email', 'sent', 'route:email',"
        " now(), now()) ON CONFLICT DO NOTHING", key, member_id)
    await pool.execute(
        "INSERT INTO deliveries (idempotency_key, member_id, channel, template, body, state, attempts, last_error)"
        " VALUES ($1, $2, 'email', 'S01.welcome_offer', $3::jsonb, 'uncertain', 1, 'attempt_interrupted')"
        " ON CONFLICT DO NOTHING", key, member_id, json.dumps(body))
    app = FastAPI()
    mount_received(app, pool, None)
    response = await page(app, f"/dev/received/{quote(member_id, safe='')}")
    assert response.status_code == 200
    for raw in ("<script>", "<img", "<b>bold"):
        assert raw not in response.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in response.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in response.text
    assert "m-&lt;b&gt;bold&lt;/b&gt;&amp;" in response.text
    assert f'href="/dev/received/{quote(member_id, safe="")}"' in response.text
    # No stand-in holds it: the recorded message, and why it needs an operator.
    assert "記録された本文" in response.text and "不明 (要確認)" in response.text
    assert "attempt_interrupted" in response.text
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


async def test_an_erased_members_message_shows_nothing_of_it_and_an_unknown_member_is_not_found(pool):
    member_id = "m-received-erased"
    key = touch_key(member_id, "S01", "welcome_offer", "o1")
    await pool.execute(
        "INSERT INTO touches (idempotency_key, member_id, scenario, step, occurrence, channel, outcome, reason,"
        " planned_at, decided_at) VALUES ($1, $2, 'S01', 'welcome_offer', 'o1', 'email', 'sent', 'route:email',"
        " now(), now()) ON CONFLICT DO NOTHING", key, member_id)
    await pool.execute(
        "INSERT INTO deliveries (idempotency_key, member_id, channel, template, body, state)"
        " VALUES ($1, $2, 'email', 'S01.welcome_offer', '{\"erased\": true}', 'sent') ON CONFLICT DO NOTHING",
        key, member_id)
    app = FastAPI()
    mount_received(app, pool, None)
    response = await page(app, f"/dev/received/{member_id}")
    assert response.status_code == 200 and "消去されました" in response.text and "<pre>" not in response.text
    missing = await page(app, "/dev/received/m-nobody-at-all")
    assert missing.status_code == 404 and "この会員への配信はまだありません" in missing.text
