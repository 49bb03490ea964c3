"""``goldenroute dev``'s page of what each member received: ``GET /dev/received`` and
``GET /dev/received/{member_id}`` on the dev HTTP ingress (never on ``goldenroute serve``).

Every message handed to a channel (``deliveries``, with its touch from ``touches``), newest
first and grouped by member: channel, scenario and step, delivery state, attempts and
when; then the message as the vendor received it — for email the mail catcher's copy
(From, To, Subject, the text part), for LINE, SMS and push the stand-in's — or, when no
stand-in holds it (a real vendor, a message not sent yet, a stand-in restarted with the
stack), the message as it was recorded. An erased member's messages show nothing of
their content. Everything on the page is escaped (Jinja2 autoescape): a message's copy
is the shop's text and the member's data.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote

import asyncpg
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from jinja2 import Environment

from starter.reports.period import read_shop, shop_time
from starter.table import scenario_label
from worker.dev_channels import VendorCopy

PATH = "/dev/received"
LIMIT = 200  # deliveries on the page of every member; one member's page shows up to MEMBER_LIMIT
MEMBER_LIMIT = 1_000

_RECEIVED = """
SELECT d.idempotency_key AS key, d.member_id, d.channel, d.template, d.body::text AS body, d.state,
       d.attempts, d.last_error, d.created_at, d.attempted_at, d.sent_at, t.scenario, t.step, t.outcome
FROM deliveries d JOIN touches t USING (idempotency_key)
WHERE $1::text IS NULL OR d.member_id = $1
ORDER BY d.created_at DESC, d.idempotency_key
LIMIT $2
"""

CHANNELS = {"email": "メール", "line": "LINE", "sms": "SMS", "push": "プッシュ", "dm": "DM (郵送)"}
STATES = {
    "queued": "送信待ち", "sending": "送信中", "sent": "送信済み", "failed": "失敗",
    "uncertain": "不明 (要確認)", "exported": "出力済み",
}


class VendorCopies(Protocol):
    """Where the stand-ins' copies come from (``worker.dev_channels.DevChannels``)."""

    def copy(self, channel: str, key: str) -> VendorCopy | None: ...


_PAGE = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True).from_string("""\
<!doctype html>
<html lang="ja"><head><meta charset="utf-8">
<title>{{ title }} — goldenroute dev</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 60em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
article { border: 1px solid #ddd; border-radius: 6px; padding: .8em 1em; margin: 1em 0; }
.meta { color: #555; font-size: .9em; }
.state { font-weight: bold; padding: 0 .4em; border-radius: 4px; }
.sent { background: #dfd; } .failed, .uncertain { background: #fdd; } .queued, .sending { background: #ffd; }
pre { white-space: pre-wrap; background: #f7f7f7; padding: .6em; border-radius: 4px; }
dl { display: grid; grid-template-columns: max-content auto; gap: .1em 1em; margin: .5em 0; }
dt { color: #555; } dd { margin: 0; }
.warn { color: #a00; }
</style></head>
<body>
<h1>{{ title }}</h1>
<p class="meta">新しい順 ({{ timezone }})。再読み込みで最新になります。{% if member_id %} <a href="{{ all_href }}">全会員へ</a>{% endif %}</p>
{% if not members %}
<p>{% if member_id %}この会員への配信はまだありません。{% else %}配信はまだありません。`goldenroute send examples/sample_converts.ndjson --now` を試してください。{% endif %}</p>
{% endif %}
{% for member in members %}
<section>
<h2><a href="{{ member.href }}">{{ member.member_id }}</a> <span class="meta">{{ member.deliveries|length }}通</span></h2>
{% for d in member.deliveries %}
<article>
<div class="meta">{{ d.when }} · {{ d.channel }} · {{ d.scenario }} / {{ d.step }} ·
<span class="state {{ d.state }}">{{ d.state_label }}</span> · 試行 {{ d.attempts }}回{% if d.sent_at %} · 送信 {{ d.sent_at }}{% endif %}</div>
{% if d.last_error %}<p class="warn">最後のエラー: {{ d.last_error }}</p>{% endif %}
{% if d.state == "uncertain" %}<p class="warn">届いたかどうか分かりません: 再送はしません。ベンダー側で確認してください (キー {{ d.key }})。</p>{% endif %}
{% if d.erased %}
<p class="meta">この会員のデータは消去されました。</p>
{% elif d.vendor %}
<dl>
<dt>受信側</dt><dd>{{ d.vendor.where }} ({{ d.vendor_at }}){% if d.vendor.times > 1 %} <span class="warn">{{ d.vendor.times }}回届いています</span>{% endif %}</dd>
{% if d.vendor.sender %}<dt>From</dt><dd>{{ d.vendor.sender }}</dd>{% endif %}
{% if d.vendor.recipient %}<dt>宛先</dt><dd>{{ d.vendor.recipient }}</dd>{% endif %}
{% if d.vendor.subject %}<dt>件名</dt><dd>{{ d.vendor.subject }}</dd>{% endif %}
</dl>
<pre>{{ d.vendor.text }}</pre>
{% else %}
<dl>
<dt>受信側</dt><dd class="meta">{{ d.no_copy }}</dd>
{% if d.recipient %}<dt>宛先</dt><dd>{{ d.recipient }}</dd>{% endif %}
{% if d.subject %}<dt>件名</dt><dd>{{ d.subject }}</dd>{% endif %}
</dl>
<pre>{{ d.body }}</pre>
{% endif %}
<div class="meta">{{ d.template }} · {{ d.key }}</div>
</article>
{% endfor %}
</section>
{% endfor %}
</body></html>
""")


async def received_page(pool: asyncpg.Pool, copies: VendorCopies | None,
                        member_id: str | None = None) -> tuple[str, int]:
    """The page, for every member (the latest ``LIMIT`` deliveries) or for one, and how many it lists."""
    rows = await pool.fetch(_RECEIVED, member_id, MEMBER_LIMIT if member_id else LIMIT)
    zone = (await read_shop(pool)).timezone
    members: dict[str, list[dict[str, Any]]] = {}
    for row in rows:  # newest first: members in the order of their newest message
        members.setdefault(row["member_id"], []).append(_delivery(row, copies, zone))
    title = f"{member_id} が受け取ったメッセージ" if member_id else "会員が受け取ったメッセージ"
    page = _PAGE.render(
        title=title, timezone=zone, member_id=member_id, all_href=PATH,
        members=[{"member_id": m, "href": member_href(m), "deliveries": ds} for m, ds in members.items()])
    return page, len(rows)


def member_href(member_id: str) -> str:
    return f"{PATH}/{quote(member_id, safe='')}"


def _delivery(row: asyncpg.Record, copies: VendorCopies | None, zone: str) -> dict[str, Any]:
    body = json.loads(row["body"])
    erased = bool(body.get("erased"))
    copy = None if erased or copies is None else copies.copy(row["channel"], row["key"])
    return {
        "key": row["key"], "template": row["template"], "state": row["state"],
        "state_label": STATES.get(row["state"], row["state"]), "attempts": row["attempts"],
        "channel": CHANNELS.get(row["channel"], row["channel"]), "scenario": scenario_label(row["scenario"]),
        "step": row["step"], "when": _local(row["created_at"], zone), "sent_at": _local(row["sent_at"], zone),
        "last_error": row["last_error"], "erased": erased, "vendor": copy,
        "vendor_at": _local(copy.received_at, zone) if copy else None,
        "subject": body.get("subject"), "body": body.get("body") or "", "recipient": body.get("recipient"),
        "no_copy": _no_copy(row["state"], copies is not None),
    }


def _no_copy(state: str, standins: bool) -> str:
    if state in ("queued", "sending"):
        return "まだ届いていません。記録された本文:"
    if state == "failed":
        return "ベンダーが受け付けませんでした。記録された本文:"
    if not standins:
        return "スタンドインなし。記録された本文:"
    return "スタンドインに記録がありません (外部のベンダー宛て、または dev の再起動前)。記録された本文:"


def _local(moment: datetime | None, zone: str) -> str | None:
    return shop_time(moment, zone).strftime("%Y-%m-%d %H:%M:%S") if moment else None


def mount_received(app: FastAPI, pool: asyncpg.Pool, copies: VendorCopies | None) -> None:
    """The page's routes on the dev ingress app (outside its OpenAPI: not for order systems)."""

    async def every_member() -> HTMLResponse:
        page, _ = await received_page(pool, copies)
        return _html(page)

    async def one_member(member_id: str) -> HTMLResponse:
        page, listed = await received_page(pool, copies, member_id)
        return _html(page, 200 if listed else 404)

    app.add_api_route(PATH, every_member, methods=["GET"], include_in_schema=False)
    app.add_api_route(PATH + "/{member_id:path}", one_member, methods=["GET"], include_in_schema=False)


def _html(page: str, status: int = 200) -> HTMLResponse:
    # The member's data: no caching; nothing on the page runs or loads anything.
    return HTMLResponse(page, status_code=status, headers={
        "Cache-Control": "no-store",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    })

