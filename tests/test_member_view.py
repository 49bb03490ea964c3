"""``goldenroute member ID``: the member as a marketer reads it.

A sample converter is built through the real path (the ingress's event log and
contact store, the forwarder, the real MemberWorkflow and activities on the
time-skipping server, PostgreSQL); the view is then rendered from the pool and the
client, as the CLI does. The CLI itself is driven through ``starter.cli.main``.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import datetime, timedelta

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.projection import write_events
from starter.cli import main
from starter.member_view import member_view, to_json, to_text
from tests.factories import JST, days, event, order, registered, sample, shipped
from tests.workflows.helpers import member_not_held_out, next_local_noon, running_worker, send
from workflows.lifecycle import new_member
from workflows.policy import PolicyConfig, in_holdout
from workflows.projection import LoggedEvent, ProjectionRequest, snapshot


@pytest.fixture
async def env(time_skipping_env: WorkflowEnvironment) -> WorkflowEnvironment:
    return time_skipping_env


def held_out_of(held: str, *sent: str) -> str:
    """A fresh member id in the 10 % holdout of ``held`` and outside that of ``sent``."""
    while True:
        member_id = f"m-{uuid.uuid4().hex[:10]}"
        if in_holdout(member_id, held, PolicyConfig()) and not any(
                in_holdout(member_id, s, PolicyConfig()) for s in sent):
            return member_id


def personal_data(member_id: str) -> list[str]:
    """What the test factories put in a registration's contact (tests/factories.py contact_for)."""
    return [f"{member_id}@example.jp", f"U{member_id}", "090-0000-0000", "東京都千代田区"]


def rows(text: str) -> list[str]:
    """The timeline's lines, without the header and the table's own header and rule."""
    return text.split("\n\n", 1)[1].splitlines()[2:]


def position(lines: list[str], *words: str) -> int:
    found = [n for n, line in enumerate(lines) if all(w in line for w in words)]
    assert len(found) == 1, (words, found, "\n".join(lines))
    return found[0]


def local_day(moment: datetime) -> str:
    local = moment.astimezone(JST)
    return f"{local.date().isoformat()}({'月火水木金土日'[local.weekday()]})"


async def test_a_sample_converter_reads_as_one_timeline(env, pool, task_queue):
    m = held_out_of("S01", "S03", "S06")
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        await send(env.client, task_queue, registered(m, t0), sample(m, t0, "SMP-1", days_supply=7))
        await env.sleep(days(1))
        await send(env.client, task_queue, shipped(m, t0 + days(1), "SMP-1"))
        await env.sleep(days(6.5))
        await send(env.client, task_queue, order(m, t0 + days(7.5), "ORD-1"))  # the day before S01's last call
        await env.sleep(days(3))
        await send(env.client, task_queue,
                   event("consent_changed", m, t0 + days(10.5), channel="email", granted=False))
        await env.sleep(days(28))  # past S06 on day 28 after the order

        view = await member_view(pool, env.client, m)
        text, as_json = to_text(view), to_json(view)

    header = text.split("\n\n", 1)[0]
    assert f"member        {m}" in header
    assert "stage         f1" in header and "F             1" in header
    assert "subscription  none" in header and "sales channel online" in header
    assert "timezone      Asia/Tokyo" in header
    assert "channels      consented dm,line, reachable dm,email,line" in header  # email withdrawn on day 10
    assert f"registered    {local_day(t0)} 12:00" in header
    assert f"last purchase {local_day(t0 + days(7.5))} 00:00" in header
    assert "source        the member workflow (Temporal state query)" in header

    lines = rows(text)
    order_of_lines = [
        position(lines, "イベント", "member_registered", "online, consent dm,email,line -push -sms, reachable dm,email,line"),
        position(lines, "イベント", "sample_requested", "SMP-1: KOSO-SAMPLE (7 days)"),
        position(lines, "タッチ", "S01 サンプル→本品引上", "welcome_offer", "holdout", "holdout:10%"),
        position(lines, "イベント", "order_shipped", "SMP-1"),
        position(lines, "タッチ", "S01 サンプル→本品引上", "run_out_offer", "holdout", "holdout:10%"),
        position(lines, "イベント", "order_placed", "ORD-1: KOSO-30×1 main"),
        position(lines, "タッチ", "S01 サンプル→本品引上", "last_call", "cancelled", "exit:order_placed"),
        position(lines, "タッチ", "S03 F1→F2転換", "thanks_insert", "insert", "sent", "route:insert"),
        position(lines, "イベント", "consent_changed", "email withdrawn"),
        position(lines, "タッチ", "S03 F1→F2転換", "testimonial", "line", "sent", "route:line"),
        position(lines, "タッチ", "S03 F1→F2転換", "survey", "line", "sent"),
        position(lines, "タッチ", "S06 定期引上", "upsell", "suppressed", "covered_by:S03"),
        position(lines, "予定", "S11 休眠復活", "comeback_offer"),
    ]
    assert order_of_lines == sorted(order_of_lines)
    # Local dates and times, with the weekday: the order at 00:00 on day 7.5, the S03 survey at 10:00.
    ordered = lines[position(lines, "イベント", "order_placed")]
    assert ordered.startswith(f"{local_day(t0 + days(7.5))}  00:00  イベント")
    assert lines[position(lines, "S03", "survey")].split()[1] == "10:00"
    # The cancelled last call says when it was due.
    assert lines[position(lines, "last_call")].endswith(
        f"cancelled   exit:order_placed (期日 {(t0 + days(8)).strftime('%m-%d')} 10:00)")

    for secret in personal_data(m):
        assert secret not in text and secret not in as_json

    document = json.loads(as_json)
    assert set(document) == {"member", "timeline"}
    member = document["member"]
    assert (member["member_id"], member["stage"], member["purchase_count"], member["subscription_status"]) == \
        (m, "f1", 1, "none")
    assert (member["consented_channels"], member["reachable_channels"]) == (["dm", "line"], ["dm", "email", "line"])
    assert (member["source"], member["erased"], member["timezone"]) == ("temporal", False, "Asia/Tokyo")
    assert member["registered_at"] == t0.astimezone(JST).isoformat(timespec="seconds")
    timeline = document["timeline"]
    moments = [datetime.fromisoformat(item["at"]) for item in timeline]
    assert moments == sorted(moments)
    assert all(item["at"].endswith("+09:00") for item in timeline)
    assert {item["kind"] for item in timeline} == {"event", "touch", "planned"}
    placed = next(i for i in timeline if i["kind"] == "event" and i["type"] == "order_placed")
    assert placed["order_id"] == "ORD-1" and placed["forwarded"] is True
    assert placed["lines"] == [{"sku": "KOSO-30", "role": "main", "quantity": 1, "days_supply": 30}]
    covered = next(i for i in timeline if i["kind"] == "touch" and i["scenario"] == "S06")
    assert (covered["step"], covered["outcome"], covered["reason"]) == ("upsell", "suppressed", "covered_by:S03")
    assert covered["due_at"].endswith("+09:00")
    planned = next(i for i in timeline if i["kind"] == "planned")
    assert (planned["scenario"], planned["step"]) == ("S11", "comeback_offer")
    assert "サンプル" not in as_json  # identifiers, not Japanese labels

    # Temporal down: the header from the members snapshot, and the view says so.
    fallback = await member_view(pool, None, m, "Temporal at 127.0.0.1:1 is not reachable")
    assert (fallback.header.source, fallback.header.stage, fallback.header.purchase_count) == ("postgresql", "f1", 1)
    assert fallback.header.consented_channels == ("dm", "line")
    assert "Temporal at 127.0.0.1:1 is not reachable; planned touches not shown" in to_text(fallback)
    assert [i.kind for i in fallback.timeline if i.kind == "planned"] == []
    assert len(fallback.timeline) == len(timeline) - sum(i["kind"] == "planned" for i in timeline)


async def test_an_erased_member_keeps_its_touches_and_event_types_only(env, pool, task_queue):
    m = member_not_held_out("S03")
    async with running_worker(env.client, pool, task_queue):
        t0 = await next_local_noon(env)
        await send(env.client, task_queue, registered(m, t0), order(m, t0, "ORD-9"))
        await env.sleep(days(1))
        await send(env.client, task_queue, event("member_erased", m, t0 + days(1)))
        await env.sleep(timedelta(hours=1))

        view = await member_view(pool, env.client, m)
        text, as_json = to_text(view), to_json(view)

    assert view.header.erased and view.header.source == "postgresql"
    assert re.search(r"stage +erased \(personal data erased on .*; its touches and event types remain\)", text)
    assert "channels      consented none, reachable none" in text
    assert [line.split(maxsplit=4)[3:] for line in rows(text) if "イベント" in line] == \
        [["member_registered"], ["order_placed"], ["member_erased"]]  # the type alone: no order id
    events = [i for i in json.loads(as_json)["timeline"] if i["kind"] == "event"]
    assert [e["type"] for e in events] == ["member_registered", "order_placed", "member_erased"]
    assert all(set(e) == {"at", "kind", "type", "event_id", "forwarded"} for e in events)
    assert any(line.split()[2:6] == ["タッチ", "S03", "F1→F2転換", "thanks_insert"] for line in rows(text))
    for secret in personal_data(m):
        assert secret not in text and secret not in as_json


@pytest.fixture
def cli_env(monkeypatch, tmp_path, database_url):
    monkeypatch.setenv("GOLDENROUTE_HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("DATABASE_URL", database_url)
    return monkeypatch


def test_an_unknown_member_is_named_and_exits_1(cli_env, dev_server_env, capsys):
    cli_env.setenv("TEMPORAL_ADDRESS", dev_server_env.client.service_client.config.target_host)
    cli_env.setenv("TEMPORAL_NAMESPACE", dev_server_env.client.namespace)
    unknown = f"m-{uuid.uuid4().hex[:10]}"

    assert main(["member", unknown]) == 1

    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == (f"goldenroute: no member {unknown!r}: PostgreSQL holds no event, touch or snapshot "
                           f"of it; Temporal has no workflow member-{unknown}")


async def test_the_cli_reads_postgresql_when_temporal_is_down(cli_env, pool, capsys):
    cli_env.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    m = f"m-{uuid.uuid4().hex[:10]}"
    at = datetime.now(JST).replace(hour=9, minute=30, second=0, microsecond=0) - days(2)
    logged = order(m, at, "ORD-7")
    # The event log only (write_events writes no snapshot): as if the workflow never ran.
    await write_events(pool, ProjectionRequest(
        member_id=m, version=1, snapshot=snapshot(new_member(m), None), events=(LoggedEvent(seq=1, event=logged),)))

    assert await cli("member", m, "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["member"]["source"] == "postgresql"
    assert document["member"]["source_note"] == "Temporal at 127.0.0.1:1 is not reachable"
    assert document["member"]["stage"] == "f1"  # no snapshot written yet: folded from the log
    assert [(i["kind"], i["type"], i["at"]) for i in document["timeline"]] == \
        [("event", "order_placed", at.isoformat())]

    assert await cli("member", "show", m) == 0
    text = capsys.readouterr().out
    assert re.search(rf"^{re.escape(local_day(at))}  09:30  イベント  order_placed +ORD-7: KOSO-30×1 main$", text, re.M)
    assert await cli("member", "nobody-" + m) == 1
    assert "PostgreSQL holds no event, touch or snapshot of it; Temporal at 127.0.0.1:1 is not reachable" in \
        capsys.readouterr().err


async def cli(*argv: str) -> int:
    """``goldenroute …`` in a thread: the CLI runs its own event loop."""
    return await asyncio.to_thread(main, list(argv))
