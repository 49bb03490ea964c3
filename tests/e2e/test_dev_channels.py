"""End to end: what a newcomer sees. ``goldenroute dev`` as a real subprocess, with its
vendors' stand-ins; a member's first message, sent through the real senders, on the page
of what each member received and in ``goldenroute report channels``.

Three new members ask for a sample (S01's welcome is due 10 minutes after the request,
so the request is dated 12 minutes ago): one reachable by email only, one by SMS only
and one on LINE (in a timezone where it is day now: LINE waits out the night). Member
ids are picked outside S01's holdout group. The page shows a message's copy only when
the stand-in holds it, so "mail catcher", "LINE stand-in" and "SMS gateway stand-in" on
it mean the vendor's side got the message. Finally Ctrl-C stops the stand-ins with the
stack. About 20 seconds, most of it the stack starting.
"""

from __future__ import annotations

import html
import json
import re
import signal
import socket
import subprocess
import time
from datetime import datetime, timedelta, timezone
from typing import Iterator
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.e2e.test_dev_stack import PROJECT, SHUTDOWN_TIMEOUT, Stack, _dev_env, _stop_everything, \
    _wait_until_up, goldenroute_command
from workflows.policy import PolicyConfig, bucket

pytestmark = pytest.mark.e2e

DELIVERY_TIMEOUT = 60.0
LINE_ID = "U4af4980629a0b5c1d2e3f40516273849"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("goldenroute-channels-home")
    env = _dev_env(home)
    stderr_file, stdout_file = home.parent / "dev.stderr.log", home.parent / "dev.stdout.log"
    with stderr_file.open("wb") as stderr, stdout_file.open("wb") as stdout:
        process = subprocess.Popen([*goldenroute_command(), "dev"], cwd=PROJECT, env=env, stdin=subprocess.DEVNULL,
                                   stdout=stdout, stderr=stderr, start_new_session=True)
    try:
        yield _wait_until_up(process, home, env, stderr_file)
    finally:
        _stop_everything(process, home)


def banner(stack: Stack) -> dict[str, str]:
    """``Channels:`` and ``Received:`` of the banner: channel (or "received") → where."""
    text = stack.stderr_file.read_text(errors="replace")
    routes = dict(re.findall(r"^\s+(?:Channels:)?\s+(email|line|sms|push)\s+→ (.+)$", text, re.M))
    routes["received"] = re.search(r"^  Received:  (\S+)", text, re.M).group(1)
    return routes


def outside_holdout(prefix: str) -> str:
    return next(f"{prefix}-{i}" for i in range(100)
                if bucket(f"{prefix}-{i}", "S01", "holdout") >= PolicyConfig().holdout_percent)


def daytime_zone() -> str:
    """A timezone where it is between 10:00 and 19:59 now: LINE and SMS wait out 21:00–09:00 member-local."""
    now = datetime.now(timezone.utc)
    return next(z for z in (f"Etc/GMT{h:+d}" for h in range(-12, 13)) if 10 <= now.astimezone(ZoneInfo(z)).hour < 20)


def newcomers() -> tuple[dict[str, str], str]:
    """Three members who asked for a sample 12 minutes ago, as NDJSON; member id per channel."""
    asked = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=12)
    members = {"email": outside_holdout("m-e2e-mail"), "sms": outside_holdout("m-e2e-sms"),
               "line": outside_holdout("m-e2e-line")}
    contact = {"email": {"email": "hanako@example.jp"}, "sms": {"phone": "090-1111-2222"},
               "line": {"line_user_id": LINE_ID}}
    lines = []
    for channel, member_id in members.items():
        consent = {c: c == channel for c in ("email", "line", "sms", "push", "dm")}
        zone = daytime_zone() if channel in ("line", "sms") else "Asia/Tokyo"  # both wait out quiet hours
        lines.append({"type": "member_registered", "event_id": f"{member_id}-ev1", "member_id": member_id,
                      "occurred_at": (asked - timedelta(minutes=1)).isoformat(), "sales_channel": "online",
                      "consent": consent, "contact": contact[channel], "timezone": zone})
        lines.append({"type": "sample_requested", "event_id": f"{member_id}-ev2", "member_id": member_id,
                      "occurred_at": asked.isoformat(), "order_id": f"SMP-{member_id}", "sku": "KOSO-7",
                      "days_supply": 7})
    return members, "\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n"


def page_text(url: str) -> str:
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return html.unescape(response.text)


def wait_for_sent(url: str) -> str:
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    while True:
        try:
            text = page_text(url)
            if "送信済み" in text:
                return text
        except httpx.HTTPStatusError:  # 404 until the first message is recorded
            text = ""
        if time.monotonic() > deadline:
            pytest.fail(f"no sent message on {url} within {DELIVERY_TIMEOUT:.0f}s:\n{text[-2000:]}")
        time.sleep(0.5)


def test_a_newcomers_first_messages_reach_the_stand_ins_and_the_page(stack):
    routes = banner(stack)
    assert routes["email"].startswith("mail catcher smtp://127.0.0.1:")
    assert routes["line"].startswith("LINE stand-in http://127.0.0.1:")
    assert routes["sms"].startswith("SMS gateway stand-in http://127.0.0.1:")
    assert routes["push"].startswith("webhook stand-in http://127.0.0.1:")
    members, events = newcomers()
    sent = stack.goldenroute("send", "-", stdin=events)
    assert sent.returncode == 0, sent.stderr
    pages = {channel: wait_for_sent(f"{routes['received']}/{member_id}") for channel, member_id in members.items()}

    mail = pages["email"]
    assert "<dt>受信側</dt><dd>mail catcher (" in mail
    assert "hanako@example.jp" in mail and "ゴールデンルート健康館" in mail
    assert "サンプルのお申込みありがとうございます" in mail  # the catcher's Subject
    assert "S01 サンプル→本品引上 / welcome_offer" in mail
    assert "<dd>LINE stand-in (" in pages["line"] and LINE_ID in pages["line"]
    assert "<dd>SMS gateway stand-in (" in pages["sms"] and "+819011112222" in pages["sms"]
    every = page_text(routes["received"])
    assert all(member_id in every for member_id in members.values())

    report = stack.goldenroute("report", "channels", "--json")
    assert report.returncode == 0, report.stderr
    rows = json.loads(report.stdout)["rows"]
    sent_by_channel = {r["channel"]: r["sent"] for r in rows}
    assert all(sent_by_channel.get(c, 0) >= 1 for c in ("email", "line", "sms")), rows


def member_json(stack: Stack, member_id: str) -> dict:
    shown = stack.goldenroute("member", "show", member_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def wait_for(check, what: str, timeout: float = DELIVERY_TIMEOUT):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout:.0f}s")
        time.sleep(0.5)
    return found


def another_sample(member_id: str) -> str:
    """A second sample request, 11 minutes ago: S01's welcome for it is due at once."""
    asked = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=11)
    return json.dumps({"type": "sample_requested", "event_id": f"{member_id}-ev3", "member_id": member_id,
                       "occurred_at": asked.isoformat(), "order_id": f"SMP2-{member_id}", "sku": "KOSO-7",
                       "days_supply": 7}) + "\n"


def second_welcome(stack: Stack, member_id: str) -> dict | None:
    touches = [t for t in member_json(stack, member_id)["timeline"]
               if t.get("step") == "welcome_offer" and t.get("outcome") and t.get("outcome") != "sent"]
    return touches[0] if touches else None


def test_an_unsubscribe_click_and_a_line_unfollow_stop_the_next_touch_on_that_channel(stack):
    """The email member clicks the one-click link of the mail it received (RFC 8058 POST); the
    LINE member unfollows (LINE's signed webhook). Each one's next touch is not sent on that
    channel: it has no other, so it is suppressed no_channel."""
    routes = banner(stack)
    members = {c: outside_holdout(p) for c, p in (("email", "m-e2e-mail"), ("line", "m-e2e-line"))}
    mail = page_text(f"{routes['received']}/{members['email']}")
    link = re.search(r"(http://127\.0\.0\.1:\d+/u/[^\s\"'<>]+)", mail)
    assert link, "the mail carries the member's own unsubscribe link"
    assert httpx.post(link.group(1), data={"List-Unsubscribe": "One-Click"}, timeout=10).status_code == 200

    import base64
    import hashlib
    import hmac

    secret = (stack.home / "dev-line-channel-secret").read_text().strip()
    body = json.dumps({"destination": "Ustandin", "events": [{
        "type": "unfollow", "mode": "active", "timestamp": int(time.time() * 1000),
        "source": {"type": "user", "userId": LINE_ID}, "webhookEventId": "01E2EUNFOLLOW0000000000000",
        "deliveryContext": {"isRedelivery": False}}]}).encode()
    signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    ingress = routes["received"].rsplit("/dev/", 1)[0]
    answer = httpx.post(f"{ingress}/line/webhook", content=body, timeout=10,
                        headers={"X-Line-Signature": signature, "Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text

    for channel, member_id in members.items():
        wait_for(lambda: channel not in member_json(stack, member_id)["member"]["consented_channels"],
                 f"{channel} consent withdrawn for {member_id}")
        sent = stack.goldenroute("send", "-", stdin=another_sample(member_id))
        assert sent.returncode == 0, sent.stderr
        touch = wait_for(lambda: second_welcome(stack, member_id), f"{member_id}'s next welcome decided")
        assert (touch["outcome"], touch["reason"]) == ("suppressed", "no_channel"), touch


def test_ctrl_c_stops_the_stand_ins_with_the_stack(stack):
    ports = [int(url.rsplit(":", 1)[1].split("/")[0]) for key, url in banner(stack).items() if key != "received"]
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=SHUTDOWN_TIMEOUT) == 0, stack.stderr_tail()
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
