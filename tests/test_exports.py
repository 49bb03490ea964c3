"""``goldenroute export`` and ``goldenroute calls``: the day's files for the print house, the
warehouse and the call centre, and the agents' results, against a fresh PostgreSQL each.

Rows are made the way delivery makes them (DeliveryActivities.deliver, as in
tests/activities/test_delivery.py) and then placed on the shop's calendar. The commands
run as the real CLI in a subprocess where their files, output and exit codes matter, and
in-process where a test must hold one export open while another runs.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import json
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from temporalio.testing import ActivityEnvironment

from activities.contacts import store_contacts
from activities.delivery import DeliveryActivities
from starter.calls import CANCEL_SIGNAL, TaskRefused, close_task, event_id
from starter.excel_csv import CP932_FORMS, address_block, csv_file
from starter.exports import KINDS, export_again, export_new
from tests.activities.test_delivery import CHURN_CALL, RESUME_CALL, SAMPLE_INSERT, request
from tests.activities.test_shop_versions import versions_pool, versions_url  # noqa: F401 (fixtures)
from tests.test_send import _cli_env, goldenroute
from worker.converter import decompress
from workflows.events import Channel, Contact
from workflows.touches import touch_key

JST = ZoneInfo("Asia/Tokyo")
DAY = date(2026, 5, 1)
BOM = codecs.BOM_UTF8
ADDRESS = "〒100-0001\n東京都千代田区千代田1-1\n山田 花子 様"
TABLES = {Channel.DM: "deliveries", Channel.INSERT: "inserts", Channel.CALL_CENTER: "call_center_tasks"}


def jst(day: date, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), tzinfo=JST)


@pytest.fixture
def db(versions_pool):  # noqa: F811
    return versions_pool


@pytest.fixture
def cli_env(tmp_path: Path, versions_url: str) -> dict[str, str]:  # noqa: F811
    # A port nothing listens on: the events stay in the log, whatever dev stack runs elsewhere.
    return _cli_env(tmp_path, DATABASE_URL=versions_url, TEMPORAL_ADDRESS="127.0.0.1:1")


async def made(pool: asyncpg.Pool, member_id: str, channel: Channel, on: datetime, *,
               address: str | None = ADDRESS, occurrence: str = "o1", **touch) -> str:
    """One sent touch on ``channel`` as the delivery activity stores it, created at ``on``."""
    if channel is Channel.DM or channel is Channel.EMAIL:
        await store_contacts(pool, {member_id: Contact(postal_address=address, email="m@example.jp")})
    sent = request(member_id, channel=channel, **touch)
    key = touch_key(member_id, sent.scenario, sent.step, occurrence)
    sent = sent.model_copy(update={"occurrence": occurrence, "key": key})
    await ActivityEnvironment().run(DeliveryActivities(pool).deliver, sent)
    table = TABLES.get(channel, "deliveries")
    await pool.execute(f"UPDATE {table} SET created_at = $2 WHERE idempotency_key = $1", key, on)
    return key


def read(data: bytes, encoding: str = "utf-8-sig") -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(encoding), newline="")))


async def letter(pool: asyncpg.Pool, member_id: str) -> str:
    return json.loads(await pool.fetchval("SELECT body FROM deliveries WHERE member_id = $1", member_id))["body"]


# --- postal DM for the print house ---------------------------------------------------------------


async def test_a_days_dm_file_holds_that_days_letters_once_and_again_on_request(db, cli_env, tmp_path):
    await made(db, "m-first", Channel.DM, jst(DAY, 0, 0))
    await made(db, "m-last", Channel.DM, jst(DAY, 23, 59, 59), address="東京都港区芝公園4-2-8")
    await made(db, "m-before", Channel.DM, jst(DAY - timedelta(days=1), 23, 59, 59))
    await made(db, "m-after", Channel.DM, jst(DAY + timedelta(days=1), 0, 0))
    await made(db, "m-email", Channel.EMAIL, jst(DAY))
    await made(db, "m-relayed", Channel.DM, jst(DAY))  # handed to the outbox before real channels: sent
    await db.execute("UPDATE deliveries SET state = 'sent' WHERE member_id = 'm-relayed'")

    first = await goldenroute(cli_env, "export", "dm", "--date", "2026-05-01", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    batch = await db.fetchval("SELECT id FROM export_batches")
    path = tmp_path / f"dm-2026-05-01-{batch}.csv"
    assert f"export dm 2026-05-01 (Asia/Tokyo) for the print house: 2 rows as batch {batch} → {path.name} " \
           "(UTF-8 with BOM" in first.stderr
    assert "1 row of earlier days still waiting, the oldest of 2026-04-30: export them with --date 2026-04-30" \
        in first.stderr
    data = path.read_bytes()
    assert data.startswith(BOM)
    assert read(data) == [
        ["宛先郵便番号", "住所", "氏名", "文面", "テンプレート", "会員ID", "施策"],
        ["100-0001", "東京都千代田区千代田1-1", "山田 花子", await letter(db, "m-first"), "S06.upsell", "m-first",
         "S06 定期引上"],
        ["", "東京都港区芝公園4-2-8", "", await letter(db, "m-last"), "S06.upsell", "m-last", "S06 定期引上"],
    ]
    states = dict(await db.fetch("SELECT member_id, state FROM deliveries WHERE exported_at IS NOT NULL"))
    assert states == {"m-first": "exported", "m-last": "exported"}
    assert await db.fetchval("SELECT count(*) FROM deliveries WHERE state = 'queued'") == 3  # before, after, email

    second = await goldenroute(cli_env, "export", "dm", "--date", "2026-05-01", cwd=tmp_path)
    assert second.returncode == 0 and "no rows waiting" in second.stderr, second.stderr
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == [path.name]  # no second file

    path.unlink()  # the download was lost
    again = await goldenroute(cli_env, "export", "dm", "--date", "2026-05-01", "--again", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert path.read_bytes() == data
    assert f"batch {batch}: the same file as exported (2 rows)" in again.stderr
    assert await db.fetchval("SELECT count(*) FROM export_batches") == 1  # --again marks nothing


async def test_the_cp932_file_replaces_what_cp932_lacks_with_a_placeholder_and_counts_it(db, cli_env, tmp_path):
    await made(db, "m-1", Channel.DM, jst(DAY), address="〒１００－０００１\n東京都𠮷岡町1-1😀\n髙橋 𠮷子 様")
    done = await goldenroute(cli_env, "export", "dm", "--date", "2026-05-01", "--encoding", "cp932",
                             "--out", "dm.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    cp932 = (tmp_path / "dm.csv").read_bytes()
    assert not cp932.startswith(BOM)
    text = cp932.decode("cp932")
    assert "髙橋" in text and "𠮷" not in text and "〓" in text

    again = await goldenroute(cli_env, "export", "dm", "--date", "2026-05-01", "--again",
                              "--encoding", "utf-8-sig", "--out", "dm-utf8.csv", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    utf8 = (tmp_path / "dm-utf8.csv").read_bytes().decode("utf-8-sig")
    # CP932 itself reads 〜 (U+301C) back as ～ (U+FF5E), as Windows does.
    assert text == utf8.translate(CP932_FORMS).replace("𠮷", "〓").replace("😀", "〓").encode("cp932").decode("cp932")
    lacking = utf8.count("𠮷") + utf8.count("😀")
    assert lacking >= 4  # the address cells and the letter's own address block
    assert f"{lacking} characters CP932 lacks written as 〓: 𠮷 U+20BB7 ×{utf8.count('𠮷')}, 😀 U+1F600 ×{utf8.count('😀')}" \
        in done.stderr
    rows = read(cp932, "cp932")
    assert rows[1][:3] == ["100-0001", "東京都〓岡町1-1〓", "髙橋 〓子"]
    assert "was not written in utf-8-sig; 1 row now, 1 then" in again.stderr


async def test_two_exports_at_once_never_take_the_same_letter(db):
    kind = KINDS["dm"]
    for n in range(10):
        await made(db, f"m-early-{n}", Channel.DM, jst(DAY, 9))
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold(batches, data):  # the first export keeps its transaction open
        holding.set()
        await release.wait()

    first = asyncio.create_task(export_new(db, kind, DAY, "Asia/Tokyo", "utf-8-sig", hold))
    try:
        await asyncio.wait_for(holding.wait(), 10)
        for n in range(5):  # delivered while the first export is still open
            await made(db, f"m-late-{n}", Channel.DM, jst(DAY, 10))
        # It must not wait for the first: it takes what the first has not taken.
        second = await asyncio.wait_for(export_new(db, kind, DAY, "Asia/Tokyo", "utf-8-sig", lambda b, d: None), 5)
    finally:
        release.set()
        first = await first
    members = [{row[5] for row in read(e.file.data)[1:]} for e in (first, second)]
    assert (first.rows, second.rows) == (10, 5)
    assert members[0] == {f"m-early-{n}" for n in range(10)} and members[1] == {f"m-late-{n}" for n in range(5)}

    for n in range(40):
        await made(db, f"m-{n}", Channel.DM, jst(DAY, 11))
    many = await asyncio.gather(*(export_new(db, kind, DAY, "Asia/Tokyo", "utf-8-sig", lambda b, d: None)
                                  for _ in range(6)))
    taken = [row[5] for e in many for row in read(e.file.data)[1:]]
    assert sorted(taken) == sorted(f"m-{n}" for n in range(40))  # each once
    assert await db.fetchval("SELECT count(*) FROM deliveries WHERE state = 'queued'") == 0


async def test_an_erased_members_letter_is_neither_exported_nor_exported_again(db):
    await made(db, "m-kept", Channel.DM, jst(DAY))
    await made(db, "m-gone", Channel.DM, jst(DAY))
    first = await export_new(db, KINDS["dm"], DAY, "Asia/Tokyo", "utf-8-sig", lambda b, d: None)
    await db.execute("UPDATE deliveries SET body = '{\"erased\": true}'::jsonb WHERE member_id = 'm-gone'")
    again = await export_again(db, KINDS["dm"], DAY, None)
    assert first.rows == 2 and [row[5] for row in read(again.file.data)[1:]] == ["m-kept"]
    assert [(c.rows_then, c.rows_now, c.same_file) for c in again.checks] == [(2, 1, False)]


async def test_again_without_an_earlier_export_fails_and_a_bad_encoding_is_a_usage_error(cli_env, tmp_path):
    again = await goldenroute(cli_env, "export", "inserts", "--date", "2026-05-01", "--again", cwd=tmp_path)
    assert again.returncode == 1
    assert "no inserts export of 2026-05-01 yet: nothing to export again" in again.stderr
    wrong = await goldenroute(cli_env, "export", "calls", "--encoding", "latin-1", cwd=tmp_path)
    assert wrong.returncode == 2 and "unknown encoding 'latin-1'" in wrong.stderr
    day = await goldenroute(cli_env, "export", "dm", "--date", "1.5.2026", cwd=tmp_path)
    assert day.returncode == 2 and "not a date" in day.stderr


# --- package inserts for the warehouse, tasks for the call centre ----------------------------------


async def test_the_warehouse_file_lists_the_days_unpacked_inserts_by_order(db):
    await made(db, "m-1", Channel.INSERT, jst(DAY, 8), **SAMPLE_INSERT)
    await made(db, "m-packed", Channel.INSERT, jst(DAY, 8), **SAMPLE_INSERT)
    await db.execute("UPDATE inserts SET attached_to_shipment_at = now() WHERE member_id = 'm-packed'")
    await made(db, "m-tomorrow", Channel.INSERT, jst(DAY + timedelta(days=1), 8), **SAMPLE_INSERT)
    export = await export_new(db, KINDS["inserts"], DAY, "Asia/Tokyo", "utf-8-sig", lambda b, d: None)
    body = await db.fetchval("SELECT body FROM inserts WHERE member_id = 'm-1'")
    assert read(export.file.data) == [["受注番号", "同梱物コード", "文面", "会員ID"],
                                      ["s1", "S01-sample-welcome", body, "m-1"]]
    assert (await export_new(db, KINDS["inserts"], DAY, "Asia/Tokyo", "utf-8-sig", lambda b, d: None)).rows == 0


async def test_the_call_centre_file_lists_the_days_open_tasks_most_urgent_first(db):
    await made(db, "m-resume", Channel.CALL_CENTER, jst(DAY, 9), **RESUME_CALL)
    await made(db, "m-churn", Channel.CALL_CENTER, jst(DAY, 10), **CHURN_CALL)
    await made(db, "m-closed", Channel.CALL_CENTER, jst(DAY, 10), **CHURN_CALL)
    await db.execute("UPDATE call_center_tasks SET status = 'cancelled' WHERE member_id = 'm-closed'")
    export = await export_new(db, KINDS["calls"], DAY, "Asia/Tokyo", "cp932", lambda b, d: None)
    tasks = {r["member_id"]: r for r in await db.fetch("SELECT * FROM call_center_tasks")}
    rows = read(export.file.data, "cp932")
    assert rows[0] == ["優先度", "期限", "会員ID", "理由", "トークスクリプト", "タスクID"]
    churn, resume = tasks["m-churn"], tasks["m-resume"]
    assert [row[:3] + [row[5]] for row in rows[1:]] == [
        ["1", churn["due_at"].astimezone(JST).strftime("%Y-%m-%d %H:%M"), "m-churn", str(churn["task_id"])],
        ["2", resume["due_at"].astimezone(JST).strftime("%Y-%m-%d %H:%M"), "m-resume", str(resume["task_id"])]]
    assert rows[1][3].startswith("解約兆候") and "お伺いすること" in rows[1][4]


# --- closing a task ----------------------------------------------------------------------------------


async def test_calls_done_closes_the_task_and_logs_the_cancel_request_once(db, cli_env, tmp_path):
    key = await made(db, "m-1", Channel.CALL_CENTER, jst(DAY), **CHURN_CALL)
    task_id = await db.fetchval("SELECT task_id FROM call_center_tasks")
    listed = await goldenroute(cli_env, "calls", "list", "--open", cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.splitlines()[2].split()[:2] == [str(task_id), "1"]

    done = await goldenroute(cli_env, "calls", "done", str(task_id), "--result", "cancel_requested",
                             "--by", "suzuki", "--note", "解約希望", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"task {task_id} closed: cancel_requested by suzuki" in done.stdout
    assert f"churn_signal {CANCEL_SIGNAL} logged for member m-1 (event {event_id(key)}): stored in the event log" \
        in done.stdout
    task = await db.fetchrow("SELECT * FROM call_center_tasks")
    assert (task["status"], task["result"], task["closed_by"], task["note"]) == (
        "done", "cancel_requested", "suzuki", "解約希望")
    events = await db.fetch("SELECT * FROM member_events WHERE member_id = 'm-1'")
    assert [(e["event_id"], e["type"], json.loads(e["payload"])["signal"], e["source"], e["occurred_at"])
            for e in events] == [(event_id(key), "churn_signal", CANCEL_SIGNAL, "call_center", task["closed_at"])]

    twice = await goldenroute(cli_env, "calls", "done", str(task_id), "--result", "cancel_requested", cwd=tmp_path)
    assert twice.returncode == 1
    assert f"task {task_id} is closed already: cancel_requested by suzuki" in twice.stderr
    assert await db.fetchval("SELECT count(*) FROM member_events") == 1

    unknown = await goldenroute(cli_env, "calls", "done", "999999", "--result", "reached", cwd=tmp_path)
    assert unknown.returncode == 1 and "no call-centre task 999999" in unknown.stderr
    wrong = await goldenroute(cli_env, "calls", "done", str(task_id), "--result", "maybe", cwd=tmp_path)
    assert wrong.returncode == 2 and "invalid choice: 'maybe'" in wrong.stderr


async def test_a_cancel_request_reaches_the_members_workflow_when_temporal_runs(
        db, versions_url, tmp_path, dev_server_env, member_id, task_queue):  # noqa: F811
    key = await made(db, member_id, Channel.CALL_CENTER, jst(DAY), **CHURN_CALL)
    task_id = await db.fetchval("SELECT task_id FROM call_center_tasks")
    env = _cli_env(tmp_path, DATABASE_URL=versions_url, TASK_QUEUE=task_queue,
                   TEMPORAL_ADDRESS=dev_server_env.client.service_client.config.target_host)
    done = await goldenroute(env, "calls", "done", str(task_id), "--result", "cancel_requested", cwd=tmp_path)
    assert done.returncode == 0 and "forwarded to the member's workflow" in done.stdout, done.stdout + done.stderr
    assert await db.fetchval("SELECT forwarded_at IS NOT NULL FROM member_events WHERE event_id = $1", event_id(key))
    history = await dev_server_env.client.get_workflow_handle(f"member-{member_id}").fetch_history()
    signalled = [e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")]
    assert [event_id(key).encode() in decompress(e.workflow_execution_signaled_event_attributes.input.payloads[0]).data
            for e in signalled] == [True]


async def test_resumed_on_an_s07_task_logs_the_subscription_resumed_and_elsewhere_only_the_result(db):
    paused_at = datetime(2026, 3, 1, 9, 0, tzinfo=JST)
    key = await made(db, "m-s07", Channel.CALL_CENTER, jst(DAY), occurrence=f"sub-9@{paused_at.isoformat()}",
                     **RESUME_CALL)
    await made(db, "m-s12", Channel.CALL_CENTER, jst(DAY), **CHURN_CALL)
    await made(db, "m-reached", Channel.CALL_CENTER, jst(DAY), **CHURN_CALL)
    ids = dict(await db.fetch("SELECT member_id, task_id FROM call_center_tasks"))

    s07 = await close_task(db, ids["m-s07"], "resumed", "tanaka")
    assert s07.event is not None and s07.event.type == "subscription_resumed"
    payload = json.loads(await db.fetchval("SELECT payload FROM member_events WHERE event_id = $1", event_id(key)))
    assert payload["subscription_id"] == "sub-9"

    s12 = await close_task(db, ids["m-s12"], "resumed")
    assert s12.event is None and "no event" in s12.why_no_event
    reached = await close_task(db, ids["m-reached"], "reached")
    assert reached.event is None and reached.why_no_event == ""
    assert await db.fetchval("SELECT count(*) FROM member_events") == 1
    results = dict(await db.fetch("SELECT member_id, result FROM call_center_tasks WHERE status = 'done'"))
    assert results == {"m-s07": "resumed", "m-s12": "resumed", "m-reached": "reached"}


async def test_two_agents_closing_one_task_at_once_store_one_result_and_at_most_one_event(db):
    await made(db, "m-1", Channel.CALL_CENTER, jst(DAY), **CHURN_CALL)
    task_id = await db.fetchval("SELECT task_id FROM call_center_tasks")
    outcomes = await asyncio.gather(close_task(db, task_id, "cancel_requested", "a"),
                                    close_task(db, task_id, "reached", "b"), return_exceptions=True)
    closed = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(closed) == 1 and isinstance([o for o in outcomes if o not in closed][0], TaskRefused)
    task = await db.fetchrow("SELECT result, closed_by FROM call_center_tasks")
    assert (task["result"], task["closed_by"]) == (closed[0].result, closed[0].closed_by)
    events = await db.fetchval("SELECT count(*) FROM member_events")
    assert events == (1 if closed[0].result == "cancel_requested" else 0)


async def test_an_erased_members_task_cannot_be_closed(db):
    await made(db, "m-1", Channel.CALL_CENTER, jst(DAY), **CHURN_CALL)
    task_id = await db.fetchval("SELECT task_id FROM call_center_tasks")
    await db.execute("UPDATE call_center_tasks SET status = 'cancelled', talking_points = ''")
    with pytest.raises(TaskRefused, match="was cancelled"):
        await close_task(db, task_id, "cancel_requested")
    assert await db.fetchval("SELECT count(*) FROM member_events") == 0


# --- the file's cells ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("block", "expected"), [
    ("〒100-0001 東京都千代田区千代田1-1", ("100-0001", "東京都千代田区千代田1-1", "")),
    ("〒１００－０００１\n東京都千代田区千代田1-1\nビル5F\n山田 花子 様", ("100-0001", "東京都千代田区千代田1-1\nビル5F", "山田 花子")),
    ("1000001 大阪府大阪市北区1-1", ("100-0001", "大阪府大阪市北区1-1", "")),
    ("大阪府大阪市北区1-1 山田様", ("", "大阪府大阪市北区1-1 山田様", "")),  # one line: the name is not guessed
    ("", ("", "", "")),
])
def test_an_address_block_splits_into_postcode_address_and_name(block, expected):
    assert address_block(block) == expected


def test_cells_excel_would_read_as_formulas_get_an_apostrophe_and_cp932_forms_are_used():
    file = csv_file(["a", "b"], [["=HYPERLINK(\"x\")", "¥1,980—税込"], ["-1", "𠮷"]], "cp932")
    assert read(file.data, "cp932")[1:] == [["'=HYPERLINK(\"x\")", "￥1,980―税込"], ["'-1", "〓"]]
    assert (file.forms, file.replaced) == (2, 1)
