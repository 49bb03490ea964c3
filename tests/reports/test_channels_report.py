"""``goldenroute report channels`` on a small fixed set of deliveries counted by hand.

Each message is a touch (``touches``) and its delivery row (``deliveries``) with the
state, attempts and last error the delivery activity would have left; days are the
shop's (Asia/Tokyo) calendar days of ``created_at``, so 00:30 JST on 1 March, which is
still 28 February in UTC, counts on 1 March.
"""

from __future__ import annotations

import codecs
import hashlib
import json
from datetime import date, datetime
from itertools import count

import pytest

from starter.cli import main
from starter.reports import run_report
from tests.factories import jst
from tests.reports.conftest import touch, write_touches

_n = count(1)
MAILBOX = "smtp:550:5.1.1 Mailbox unavailable"
BAD_TO = "line:400:The property, 'to', in the request body is invalid"


def message(channel: str, state: str, at: datetime, attempts: int = 1, error: str | None = None,
            member_id: str | None = None) -> dict:
    n = next(_n)
    member_id = member_id or f"ch-m{n}"
    return {"touch": touch(member_id, "S06", "upsell", f"o{n}", "sent", at, channel=channel),
            "channel": channel, "state": state, "at": at, "attempts": attempts, "error": error}


# 28 February (JST): before --since 2026-03-01. 23:59 JST is 14:59 UTC the same day.
BEFORE = [
    message("email", "sent", jst(2026, 2, 28, 23, 59)),
    message("sms", "uncertain", jst(2026, 2, 28, 10), error="sms:timeout"),
]
# 1 March (JST)
MARCH_1 = [
    message("email", "sent", jst(2026, 3, 1, 0, 30)),  # 2026-02-28T15:30Z: 1 March in the shop
    message("email", "sent", jst(2026, 3, 1, 10)),
    message("email", "sent", jst(2026, 3, 1, 11), attempts=2, error="smtp:451:4.3.0 Try again later"),
    message("email", "failed", jst(2026, 3, 1, 12), error=MAILBOX),
    message("email", "failed", jst(2026, 3, 1, 13), error=MAILBOX),
    message("email", "uncertain", jst(2026, 3, 1, 14), error="attempt_interrupted", member_id="ch-unsure-mail"),
    message("line", "sent", jst(2026, 3, 1, 10)),
    message("line", "sent", jst(2026, 3, 1, 10, 5), attempts=3, error="line:500:Internal error"),
    message("line", "failed", jst(2026, 3, 1, 11), error=BAD_TO),
    message("line", "failed", jst(2026, 3, 1, 12), error=BAD_TO),
    message("line", "failed", jst(2026, 3, 1, 13), error="line:403:Not authorized"),
    message("line", "queued", jst(2026, 3, 1, 23, 50), error="line:429:Too many requests"),
]
# 2 March (JST)
MARCH_2 = [
    message("email", "sent", jst(2026, 3, 2, 23, 59)),
    message("email", "failed", jst(2026, 3, 2, 9), error="smtp:554:5.7.1 Rejected"),
    message("email", "failed", jst(2026, 3, 2, 10), error="smtp:553:5.1.3 Bad address"),
    message("email", "failed", jst(2026, 3, 2, 11), error="smtp:552:5.2.2 Mailbox full"),
    message("email", "failed", jst(2026, 3, 2, 12), error=MAILBOX),
    message("email", "failed", jst(2026, 3, 2, 13), error=MAILBOX),
    message("sms", "uncertain", jst(2026, 3, 2, 9, 15), error="sms:timeout", member_id="ch-unsure-sms"),
    message("sms", "sending", jst(2026, 3, 2, 20)),
    message("dm", "exported", jst(2026, 3, 2, 10), attempts=0),
    message("dm", "queued", jst(2026, 3, 2, 11), attempts=0),
]

COLUMNS = ["channel", "day", "messages", "sent", "failed", "uncertain", "queued", "sending", "exported",
           "attempts", "top_failures"]
# Worked out from the lists above: (channel, day) → messages, sent, failed, uncertain, queued, sending,
# exported, attempts, top failures.
SINCE_MARCH = {
    ("email", "2026-03-01"): (6, 3, 2, 1, 0, 0, 0, 1 + 1 + 2 + 1 + 1 + 1, f"{MAILBOX} ×2"),
    ("line", "2026-03-01"): (6, 2, 3, 0, 1, 0, 0, 1 + 3 + 1 + 1 + 1 + 1,
                             f"{BAD_TO} ×2; line:403:Not authorized ×1"),
    ("dm", "2026-03-02"): (2, 0, 0, 0, 1, 0, 1, 0, None),
    # Four reasons, three shown: the commonest, then ties in the reason's order.
    ("email", "2026-03-02"): (6, 1, 5, 0, 0, 0, 0, 6,
                              f"{MAILBOX} ×2; smtp:552:5.2.2 Mailbox full ×1; smtp:553:5.1.3 Bad address ×1"),
    ("sms", "2026-03-02"): (2, 0, 0, 1, 0, 1, 0, 2, None),
}


@pytest.fixture
async def sends(report_pool, report_database_url, monkeypatch, tmp_path) -> str:
    every = BEFORE + MARCH_1 + MARCH_2
    await write_touches(report_pool, [m["touch"] for m in every])
    await report_pool.executemany(
        "INSERT INTO deliveries (idempotency_key, member_id, channel, template, body, state, attempts,"
        " last_error, created_at, attempted_at, sent_at)"
        " VALUES ($1, $2, $3, 'S06.upsell', '{\"body\": \"x\"}', $4, $5, $6, $7, $7,"
        " CASE WHEN $4 = 'sent' THEN $7::timestamptz END)",
        [(m["touch"][0], m["touch"][1], m["channel"], m["state"], m["attempts"], m["error"], m["at"]) for m in every])
    monkeypatch.setenv("DATABASE_URL", report_database_url)
    monkeypatch.setenv("GOLDENROUTE_HOME", str(tmp_path))  # no dev stack file from elsewhere
    return report_database_url


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def by_day(rows: list[dict]) -> dict[tuple[str, str], tuple]:
    return {(r["channel"], r["day"]): tuple(r[c] for c in COLUMNS[2:]) for r in rows}


async def test_counts_per_channel_and_shop_day_since_a_date(report_pool, sends):
    report = await run_report(report_pool, "channels", date(2026, 3, 1))
    assert report.columns == COLUMNS
    assert by_day(report.rows) == SINCE_MARCH
    # Days in order, channels by name within a day.
    assert [(r["day"], r["channel"]) for r in report.rows] == [
        ("2026-03-01", "email"), ("2026-03-01", "line"), ("2026-03-02", "dm"), ("2026-03-02", "email"),
        ("2026-03-02", "sms")]


async def test_the_uncertain_sends_are_listed_with_their_keys(report_pool, sends):
    report = await run_report(report_pool, "channels", date(2026, 3, 1))
    assert report.uncertain == [
        {"key": MARCH_1[5]["touch"][0], "member_id": "ch-unsure-mail",
         "channel": "email", "scenario": "S06", "step": "upsell", "attempts": 1,
         "attempted_at": "2026-03-01T14:00:00+09:00", "last_error": "attempt_interrupted",
         # what the mail server's log knows it by: the Message-ID the sender derives from the key
         "vendor_ref": f"Message-ID <{sha(MARCH_1[5]['touch'][0])}@…>"},
        {"key": MARCH_2[6]["touch"][0], "member_id": "ch-unsure-sms", "channel": "sms", "scenario": "S06",
         "step": "upsell", "attempts": 1, "attempted_at": "2026-03-02T09:15:00+09:00", "last_error": "sms:timeout",
         "vendor_ref": f"client_ref gr-{sha(MARCH_2[6]['touch'][0])}"},
    ]


async def test_without_a_period_every_day_counts_and_a_period_bounds_both_parts(report_pool, sends):
    every = await run_report(report_pool, "channels")
    assert by_day(every.rows) == SINCE_MARCH | {
        ("email", "2026-02-28"): (1, 1, 0, 0, 0, 0, 0, 1, None),
        ("sms", "2026-02-28"): (1, 0, 0, 1, 0, 0, 0, 1, None),
    }
    assert len(every.uncertain) == 3
    first = await run_report(report_pool, "channels", date(2026, 3, 1), date(2026, 3, 1))
    assert set(by_day(first.rows)) == {("email", "2026-03-01"), ("line", "2026-03-01")}
    assert [u["member_id"] for u in first.uncertain] == ["ch-unsure-mail"]


def test_the_cli_prints_both_tables_and_json(sends, capsys):
    assert main(["report", "channels", "--since", "2026-03-01"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("チャネル別の配信状況 (日別) — 期間 2026-03-01 〜 …")
    assert lines[2].split()[:4] == ["チャネル", "日付", "通数", "送信済"]
    email_day = next(line for line in lines if line.startswith("email") and "2026-03-01" in line)
    assert email_day.split()[:10] == ["email", "2026-03-01", "6", "3", "2", "1", "0", "0", "0", "7"]
    at = lines.index("確認が必要な送信 (uncertain: 届いたか不明、再送しません): 2件")
    assert lines[at + 2].split()[:3] == ["キー", "会員", "チャネル"]
    assert lines[at + 4].split()[:3] == [MARCH_1[5]["touch"][0], "ch-unsure-mail", "email"]
    assert "2026-03-01 14:00" in lines[at + 4]

    assert main(["report", "channels", "--since", "2026-03-01", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["columns"] == COLUMNS and report["start"] == "2026-03-01"
    assert by_day(report["rows"]) == SINCE_MARCH
    assert [u["key"] for u in report["uncertain"]] == [MARCH_1[5]["touch"][0], MARCH_2[6]["touch"][0]]


def test_the_cli_prints_the_day_table_as_csv(sends, capsysbinary):
    assert main(["report", "channels", "--since", "2026-03-02", "--csv"]) == 0
    out = capsysbinary.readouterr().out
    assert out.startswith(codecs.BOM_UTF8 + ",".join(COLUMNS).encode() + b"\r\n")
    assert out.decode("utf-8-sig").splitlines()[1:] == [
        "dm,2026-03-02,2,0,0,0,1,0,1,0,",
        "email,2026-03-02,6,1,5,0,0,0,0,6,"
        f"{MAILBOX} ×2; smtp:552:5.2.2 Mailbox full ×1; smtp:553:5.1.3 Bad address ×1",
        "sms,2026-03-02,2,0,0,1,0,1,0,2,",
    ]


async def test_an_empty_database_has_no_rows_and_no_uncertain(report_pool):
    report = await run_report(report_pool, "channels")
    assert report.rows == [] and report.uncertain == []
    assert report.to_text().splitlines()[-1] == "確認が必要な送信 (uncertain: 届いたか不明、再送しません): 0件"

