"""The loop back: unsubscribe links and LINE's webhook become consent_changed events.

Requests go through httpx's ASGI transport into the app ``create_app`` builds, with the
session's migrated PostgreSQL; what a route did is read back from the event log. LINE's
webhook bodies are checked against LINE's own OpenAPI document before they are sent, so
the route is tested with what LINE sends. The last test runs a member's journey on the
time-skipping server: after a LINE unfollow its touch goes by email, after an unsubscribe
click it is suppressed with no_channel.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import structlog
import yaml
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from activities.senders.unsubscribe import (InvalidToken, email_unsubscribe, make_token, read_token,
                                            unsubscribe_url, verify_token)
from starter.ingress.forwarder import Forwarder
from starter.ingress.http import create_app
from starter.ingress.log import accept
from starter.ingress.loopback import LINE_SIGNATURE_HEADER, LINE_WEBHOOK_PATH, line_signature
from worker.settings import Settings
from workflows.events import parse_event

UNSUBSCRIBE_SECRET, LINE_SECRET = "unsubscribe-secret-of-the-shop", "line-channel-secret"
SETTINGS = Settings(ingress_secrets={"ec-cube": "s3cret"}, unsubscribe_secret=UNSUBSCRIBE_SECRET,
                    line_channel_secret=LINE_SECRET, public_base_url="https://crm.shop.example")
ONE_CLICK = {"content": b"List-Unsubscribe=One-Click", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}
WEBHOOK_DOCUMENT = Path(__file__).resolve().parents[2] / "worker" / "standins" / "line-openapi" / "webhook.yml"


def member() -> str:
    return f"m-loop-{uuid.uuid4().hex[:10]}"


def line_user() -> str:
    return f"U{uuid.uuid4().hex}"  # LINE's form: U and 32 hex digits


def client_for(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress")


@pytest.fixture
async def http(pool):
    async with client_for(create_app(SETTINGS, pool, None, None)) as client:
        yield client


async def register(pool, member_id: str, *, line_user_id: str | None = None, n: int = 1, email: bool = True):
    contact = {"email": f"{member_id}@example.jp", **({"line_user_id": line_user_id} if line_user_id else {})}
    event = parse_event({"type": "member_registered", "event_id": f"{member_id}-reg{n}", "member_id": member_id,
                         "occurred_at": "2026-04-01T12:00:00+09:00", "consent": {"email": email, "line": True},
                         "contact": contact})
    [verdict] = await accept(pool, [(1, event)])
    assert verdict.status == "accepted"


async def consent_events(pool, member_id: str) -> list[dict]:
    rows = await pool.fetch("SELECT event_id, occurred_at, payload::text, source FROM member_events"
                            " WHERE member_id = $1 AND type = 'consent_changed' ORDER BY seq", member_id)
    return [{**json.loads(r["payload"]), "event_id": r["event_id"], "occurred_at": r["occurred_at"],
             "source": r["source"]} for r in rows]


# --- the token ------------------------------------------------------------------------------


def test_a_token_names_member_channel_and_issue_date_and_round_trips():
    token = make_token(UNSUBSCRIBE_SECRET, "m-000123", "email", issued=date(2025, 4, 1))
    assert verify_token(UNSUBSCRIBE_SECRET, token) == ("m-000123", "email")
    assert read_token(UNSUBSCRIBE_SECRET, token).issued == date(2025, 4, 1)  # a year-old link still works
    assert len(token) < 80 and all(c.isalnum() or c in "-_." for c in token)  # URL-safe, header-sized
    odd = "会員/with.dots and spaces"
    assert verify_token(UNSUBSCRIBE_SECRET, make_token(UNSUBSCRIBE_SECRET, odd, "sms")) == (odd, "sms")
    assert unsubscribe_url("https://crm.shop.example/", UNSUBSCRIBE_SECRET, "m-1", "email").startswith(
        "https://crm.shop.example/u/")
    url, mailto = email_unsubscribe("https://crm.shop.example", UNSUBSCRIBE_SECRET)("m-1", "m-1:S03:testimonial:1")
    assert verify_token(UNSUBSCRIBE_SECRET, url.rsplit("/", 1)[1]) == ("m-1", "email") and mailto == ""


def _flip(text: str, at: int) -> str:
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1:]


@pytest.mark.parametrize("tamper", [
    lambda t: _flip(t, 3),  # the body: another member or channel
    lambda t: _flip(t, len(t) - 2),  # the signature
    lambda t: t[:-1],
    lambda t: t.split(".")[0],
    lambda t: t + ".x",
    lambda t: t.replace("-", "+").replace("_", "/") if ("-" in t or "_" in t) else "+" + t,
    lambda t: "",
    lambda t: "x" * 5000,
    lambda t: make_token("another-secret-altogether", "m-000123", "email"),
], ids=["body", "signature", "truncated", "no-signature", "extra-part", "not-url-safe", "empty", "huge",
        "other-secret"])
def test_a_changed_token_is_refused(tamper):
    token = make_token(UNSUBSCRIBE_SECRET, "m-000123", "email")
    with pytest.raises(InvalidToken):
        verify_token(UNSUBSCRIBE_SECRET, tamper(token))


def test_the_body_of_a_token_cannot_be_swapped_for_another_members():
    mine, theirs = make_token(UNSUBSCRIBE_SECRET, "m-1", "email"), make_token(UNSUBSCRIBE_SECRET, "m-2", "email")
    with pytest.raises(InvalidToken):
        verify_token(UNSUBSCRIBE_SECRET, theirs.split(".")[0] + "." + mine.split(".")[1])


# --- unsubscribe links ----------------------------------------------------------------------


async def test_the_confirmation_page_asks_and_changes_nothing(http, pool):
    m = member()
    await register(pool, m)
    token = make_token(UNSUBSCRIBE_SECRET, m, "email")
    page = await http.get(f"/u/{token}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "配信停止の確認" in page.text and "メール" in page.text
    assert f'action="/u/{token}?via=page"' in page.text and 'method="post"' in page.text
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
    assert (await http.head(f"/u/{token}")).status_code == 200  # link checkers
    assert await consent_events(pool, m) == []


async def test_an_invalid_link_gets_a_400_page_and_nothing_is_stored(http, pool):
    m = member()
    await register(pool, m)
    forged = make_token("not-the-shops-secret-at-all", m, "email")
    page = await http.get(f"/u/{forged}")
    assert page.status_code == 400 and "リンクが無効です" in page.text
    assert (await http.post(f"/u/{forged}", **ONE_CLICK)).status_code == 400
    assert (await http.post(f"/u/{forged}?via=page", **ONE_CLICK)).status_code == 400
    assert await consent_events(pool, m) == []


async def test_one_click_writes_one_consent_changed_however_often_it_is_clicked(pool):
    m = member()
    await register(pool, m)
    token = make_token(UNSUBSCRIBE_SECRET, m, "email")
    forwarder = Forwarder(pool, None, "unused")  # not running: only its wake-up is observed
    async with client_for(create_app(SETTINGS, pool, forwarder, None)) as http:
        before = datetime.now(timezone.utc)
        first = await http.post(f"/u/{token}", **ONE_CLICK)
        assert first.status_code == 200 and first.content == b""
        assert forwarder._wake.is_set()  # the forwarder signals the workflow now, not at its next round
        forwarder._wake.clear()
        again = await http.post(f"/u/{token}", **ONE_CLICK)
        page = await http.post(f"/u/{token}?via=page", **ONE_CLICK)  # the confirmation page's button
        assert again.status_code == 200 and not forwarder._wake.is_set()  # a duplicate wakes nobody
    assert page.status_code == 200 and "配信を停止しました" in page.text
    [event] = await consent_events(pool, m)
    assert (event["channel"], event["granted"], event["source"]) == ("email", False, "unsubscribe")
    assert before - timedelta(seconds=1) <= event["occurred_at"] <= datetime.now(timezone.utc)
    # Another mail's link (another day's token) is the same opt-out, not a second one.
    older = make_token(UNSUBSCRIBE_SECRET, m, "email", issued=date(2025, 1, 1))
    async with client_for(create_app(SETTINGS, pool, None, None)) as http:
        assert (await http.post(f"/u/{older}", **ONE_CLICK)).status_code == 200
    assert len(await consent_events(pool, m)) == 1


async def test_a_click_after_opting_in_again_is_a_new_opt_out(http, pool):
    m = member()
    await register(pool, m)
    token = make_token(UNSUBSCRIBE_SECRET, m, "email")
    await http.post(f"/u/{token}", **ONE_CLICK)
    await register(pool, m, n=2)  # the shop's my-page: email consent again
    await http.post(f"/u/{token}", **ONE_CLICK)
    await http.post(f"/u/{token}", **ONE_CLICK)
    assert [e["granted"] for e in await consent_events(pool, m)] == [False, False]


async def test_an_erased_members_click_is_answered_alike_and_stores_nothing(http, pool):
    m = member()
    await register(pool, m)
    erased = parse_event({"type": "member_erased", "event_id": f"{m}-erased", "member_id": m,
                          "occurred_at": "2026-04-02T12:00:00+09:00"})
    await accept(pool, [(1, erased)])
    token = make_token(UNSUBSCRIBE_SECRET, m, "email")
    one_click = await http.post(f"/u/{token}", **ONE_CLICK)
    page = await http.post(f"/u/{token}?via=page", **ONE_CLICK)
    assert one_click.status_code == 200 and one_click.content == b""
    assert page.status_code == 200 and "配信を停止しました" in page.text
    assert await consent_events(pool, m) == []


async def test_without_secrets_the_routes_answer_503_naming_the_setting(pool):
    m = member()
    token = make_token(UNSUBSCRIBE_SECRET, m, "email")
    async with client_for(create_app(Settings(ingress_secrets={"ec-cube": "s3cret"}), pool, None, None)) as http:
        assert (await http.get(f"/u/{token}")).status_code == 503
        assert (await http.post(f"/u/{token}", **ONE_CLICK)).status_code == 503
        webhook = await http.post(LINE_WEBHOOK_PATH, content=b'{"events":[]}')
        assert webhook.status_code == 503 and "LINE_CHANNEL_SECRET" in webhook.json()["detail"]
    assert await consent_events(pool, m) == []


async def test_postgresql_down_gives_503_so_the_click_or_webhook_comes_again(database_url):
    from activities import db

    closed = await db.create_pool(database_url, min_size=0, max_size=1)
    await closed.close()
    token, user = make_token(UNSUBSCRIBE_SECRET, member(), "email"), line_user()
    async with client_for(create_app(SETTINGS, closed, None, None)) as http:
        one_click = await http.post(f"/u/{token}", **ONE_CLICK)
        page = await http.post(f"/u/{token}?via=page", **ONE_CLICK)
        webhook = await post_webhook(http, webhook_body(line_event("unfollow", user)))
    assert one_click.status_code == 503 and one_click.headers["Retry-After"] == "5"
    assert page.status_code == 503 and "もう一度お試しください" in page.text
    assert webhook.status_code == 503  # LINE redelivers (same webhookEventId) when redelivery is on


async def test_metrics_count_what_became_of_clicks_and_webhook_events(http, pool):
    m, user = member(), line_user()
    await register(pool, m, line_user_id=user)
    await http.post(f"/u/{make_token(UNSUBSCRIBE_SECRET, m, 'email')}", **ONE_CLICK)
    await post_webhook(http, webhook_body(line_event("unfollow", user), line_event("follow", line_user())))
    metrics = (await http.get("/metrics")).text
    for line in ('goldenroute_loopback_events_total{outcome="accepted",route="unsubscribe"} 1.0',
                 'goldenroute_loopback_events_total{outcome="accepted",route="line"} 1.0',
                 'goldenroute_loopback_events_total{outcome="unknown_user",route="line"} 1.0'):
        assert line in metrics
    assert 'route="/u/{token}"' in metrics  # request latency under the route, never the token


# --- LINE's webhook -------------------------------------------------------------------------


def _webhook_validators():
    document = yaml.safe_load(WEBHOOK_DOCUMENT.read_text())
    registry = Registry().with_resource("urn:line:webhook", Resource.from_contents(
        document, default_specification=DRAFT4))
    schemas = document["components"]["schemas"]
    by_type = {kind: OAS30Validator({"$ref": "urn:line:webhook" + ref}, registry=registry)
               for kind, ref in schemas["Event"]["discriminator"]["mapping"].items()}
    callback = OAS30Validator({"$ref": "urn:line:webhook#/components/schemas/CallbackRequest"}, registry=registry)
    return callback, by_type


CALLBACK, EVENT_SCHEMAS = _webhook_validators()


def line_event(kind: str, user_id: str, *, event_id: str | None = None, at_ms: int | None = None) -> dict:
    event = {"type": kind, "mode": "active", "timestamp": at_ms or int(time.time() * 1000),
             "source": {"type": "user", "userId": user_id},
             "webhookEventId": event_id or uuid.uuid4().hex[:26].upper(),
             "deliveryContext": {"isRedelivery": False}}
    if kind == "follow":
        event |= {"replyToken": uuid.uuid4().hex, "follow": {"isUnblocked": False}}
    if kind == "message":
        event |= {"replyToken": uuid.uuid4().hex,
                  "message": {"type": "text", "id": "1", "quoteToken": "q", "text": "こんにちは"}}
    return event


def webhook_body(*events: dict) -> bytes:
    body = {"destination": "U" + "0" * 32, "events": list(events)}
    CALLBACK.validate(body)
    for event in events:
        EVENT_SCHEMAS[event["type"]].validate(event)  # what LINE's document says this event type is
    return json.dumps(body, ensure_ascii=False).encode()


async def post_webhook(http: httpx.AsyncClient, body: bytes, signature: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    signature = line_signature(LINE_SECRET, body) if signature is None else signature
    if signature:
        headers[LINE_SIGNATURE_HEADER] = signature
    return await http.post(LINE_WEBHOOK_PATH, content=body, headers=headers)


@pytest.mark.parametrize("signature", ["", "bm90IHRoZSBzaWduYXR1cmU=", line_signature("other-secret", b"{}"),
                                       "@@not-base64@@"], ids=["missing", "wrong", "other-secret", "garbage"])
async def test_a_webhook_without_lines_signature_gets_401_and_stores_nothing(http, pool, signature):
    m, user = member(), line_user()
    await register(pool, m, line_user_id=user)
    response = await post_webhook(http, webhook_body(line_event("unfollow", user)), signature=signature)
    assert response.status_code == 401
    assert await consent_events(pool, m) == []


async def test_a_body_changed_after_signing_is_refused(http, pool):
    m, user = member(), line_user()
    await register(pool, m, line_user_id=user)
    signed_for = webhook_body(line_event("follow", user))
    response = await post_webhook(http, webhook_body(line_event("unfollow", user)),
                                  signature=line_signature(LINE_SECRET, signed_for))
    assert response.status_code == 401 and await consent_events(pool, m) == []


async def test_unfollow_withdraws_and_follow_grants_line_for_the_member_with_that_user_id(http, pool):
    m, other, user = member(), member(), line_user()
    await register(pool, m, line_user_id=user)
    await register(pool, other, line_user_id=line_user())
    blocked_at = 1_775_000_000_000  # ms
    unfollow = line_event("unfollow", user, at_ms=blocked_at)
    response = await post_webhook(http, webhook_body(unfollow))
    assert response.status_code == 200 and response.json()["accepted"] == 1
    await post_webhook(http, webhook_body(line_event("follow", user, at_ms=blocked_at + 60_000)))
    events = await consent_events(pool, m)
    assert [(e["channel"], e["granted"], e["source"]) for e in events] == [("line", False, "line"), ("line", True, "line")]
    assert events[0]["occurred_at"] == datetime.fromtimestamp(blocked_at / 1000, timezone.utc)
    assert events[0]["event_id"].startswith(f"line:{unfollow['webhookEventId']}:")
    assert await consent_events(pool, other) == []


async def test_an_unknown_user_or_another_event_gets_200_and_stores_nothing(http, pool):
    stranger = line_user()
    stored = "SELECT count(*) FROM member_events WHERE source = 'line'"
    before = await pool.fetchval(stored)
    response = await post_webhook(http, webhook_body(line_event("unfollow", stranger), line_event("message", stranger)))
    assert response.status_code == 200
    assert response.json() == {"ignored": 1, "malformed": 0, "unknown_user": 1, "accepted": 0, "duplicate": 0,
                               "refused": 0}
    verification = await post_webhook(http, webhook_body())  # the console's "Verify": no events
    assert verification.status_code == 200
    assert await pool.fetchval(stored) == before


async def test_a_redelivered_webhook_event_is_one_event(http, pool):
    m, user = member(), line_user()
    await register(pool, m, line_user_id=user)
    unfollow = line_event("unfollow", user)
    first = await post_webhook(http, webhook_body(unfollow))
    redelivered = await post_webhook(http, webhook_body(unfollow | {"deliveryContext": {"isRedelivery": True}}))
    assert first.json()["accepted"] == 1
    assert redelivered.status_code == 200 and redelivered.json()["duplicate"] == 1
    assert len(await consent_events(pool, m)) == 1


async def test_every_member_record_with_the_user_id_follows_line(http, pool):
    first, second, user = member(), member(), line_user()
    await register(pool, first, line_user_id=user)
    await register(pool, second, line_user_id=user)  # one person, two records at the shop
    assert (await post_webhook(http, webhook_body(line_event("unfollow", user)))).json()["accepted"] == 2
    assert [e["granted"] for e in await consent_events(pool, first) + await consent_events(pool, second)] == [
        False, False]


async def test_the_line_user_id_is_never_logged(http, pool):
    m, user, stranger = member(), line_user(), line_user()
    await register(pool, m, line_user_id=user)
    with structlog.testing.capture_logs() as logs:
        await post_webhook(http, webhook_body(line_event("unfollow", user), line_event("follow", stranger)))
        await post_webhook(http, webhook_body(line_event("follow", user)), signature="wrong")
    assert logs and not any(user in repr(entry) or stranger in repr(entry) for entry in logs)
    assert any(entry["event"] == "line_webhook.received" and entry["unknown_user"] == 1 for entry in logs)


# --- the member's next touch respects it (time-skipping server, real worker) -----------------


async def test_after_unfollow_the_touch_goes_by_email_and_after_unsubscribe_it_is_suppressed(
        time_skipping_env, pool, task_queue):
    from tests.factories import days, event, order, shipped
    from tests.workflows.helpers import member_not_held_out, next_local_noon, running_worker, send, touches_of

    env, m, user = time_skipping_env, member_not_held_out("S03"), line_user()
    moment = [time.time()]  # the app's clock follows the test server's, as the shop's would
    app = create_app(SETTINGS, pool, None, env.client, clock=lambda: moment[0])
    forwarder = Forwarder(pool, env.client, task_queue)

    async def now_ms() -> int:
        moment[0] = (await env.get_current_time()).timestamp()
        return int(moment[0] * 1000)

    async with running_worker(env.client, pool, task_queue), client_for(app) as http:
        t0 = await next_local_noon(env)
        registered = event("member_registered", m, t0, sales_channel="online",
                           consent={"email": True, "line": True, "dm": True},  # dm: but no postal address
                           contact={"email": f"{m}@example.jp", "line_user_id": user})
        handle = await send(env.client, task_queue, registered, order(m, t0, "o1"))
        await env.sleep(days(2))
        await send(env.client, task_queue, shipped(m, t0 + days(2), "o1"))  # testimonial day 17, survey day 27
        await env.sleep(days(1))

        unfollow = await post_webhook(http, webhook_body(line_event("unfollow", user, at_ms=await now_ms())))
        assert unfollow.json()["accepted"] == 1
        await forwarder.forward_pending([m])
        await env.sleep(days(15))
        testimonial = (await touches_of(handle, "S03"))["testimonial"]
        assert (testimonial.outcome.value, testimonial.channel) == ("sent", "email")  # LINE first, were it allowed

        await now_ms()
        token = make_token(UNSUBSCRIBE_SECRET, m, "email")
        assert (await http.post(f"/u/{token}", **ONE_CLICK)).status_code == 200
        await forwarder.forward_pending([m])
        await env.sleep(days(10))
        survey = (await touches_of(handle, "S03"))["survey"]
        assert (survey.outcome.value, survey.reason, survey.channel) == ("suppressed", "no_channel", None)
