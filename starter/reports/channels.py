"""``goldenroute report channels``: how the sends went, per channel and day (issue 11).

One row per channel and day (the shop's calendar day of the message's ``created_at``:
when the touch handed it to its channel, whatever became of it since, so a message
stays on its day however often it is retried): the messages by delivery state
(migration 008: sent, failed, uncertain, queued, sending, exported), the vendor calls
they took (``attempts``) and the three commonest reasons the vendors refused them for
good (``failed``'s ``last_error``, most frequent first).

Below the table, every ``uncertain`` message of the period with its key: an attempt
whose result is unknown (an SMTP or SMS send interrupted or answered too late) is never
repeated by the engine, so an operator checks it at the vendor (the mail server's log by
Message-ID, the gateway's by ``client_ref``: ``vendor_ref`` names them). The text shows them as a second table and
JSON as ``uncertain``; CSV is the day table only, one table per file as Excel reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import asyncpg

from activities.senders.mail import message_id
from activities.senders.sms import client_ref
from starter.reports.period import Window, shop_time
from starter.reports.render import Report
from starter.table import table

STATES = ("sent", "failed", "uncertain", "queued", "sending", "exported")
TOP_FAILURES = 3

CHANNELS_SQL = f"""
WITH d AS (
    SELECT channel, (created_at AT TIME ZONE $3)::date AS day, state, attempts, last_error
    FROM deliveries
    WHERE ($1::timestamptz IS NULL OR created_at >= $1) AND ($2::timestamptz IS NULL OR created_at < $2)
),
reasons AS (
    SELECT channel, day, last_error, count(*) AS n,
           row_number() OVER (PARTITION BY channel, day ORDER BY count(*) DESC, last_error) AS rank
    FROM d WHERE state = 'failed'
    GROUP BY channel, day, last_error
),
top AS (
    SELECT channel, day,
           string_agg(coalesce(last_error, '(no reason)') || ' ×' || n, '; ' ORDER BY rank) AS top_failures
    FROM reasons WHERE rank <= {TOP_FAILURES}
    GROUP BY channel, day
)
SELECT d.channel, to_char(d.day, 'YYYY-MM-DD') AS day, count(*) AS messages,
       {", ".join(f"count(*) FILTER (WHERE d.state = '{s}') AS {s}" for s in STATES)},
       sum(d.attempts)::bigint AS attempts, top.top_failures
FROM d LEFT JOIN top USING (channel, day)
GROUP BY d.channel, d.day, top.top_failures
ORDER BY d.day, d.channel
"""

UNCERTAIN_SQL = """
SELECT d.idempotency_key AS key, d.member_id, d.channel, t.scenario, t.step, d.attempts, d.attempted_at,
       d.last_error
FROM deliveries d JOIN touches t USING (idempotency_key)
WHERE d.state = 'uncertain'
  AND ($1::timestamptz IS NULL OR d.created_at >= $1) AND ($2::timestamptz IS NULL OR d.created_at < $2)
ORDER BY d.attempted_at NULLS LAST, d.idempotency_key
"""

UNCERTAIN_COLUMNS = ("key", "member_id", "channel", "scenario", "step", "attempts", "attempted_at", "last_error",
                     "vendor_ref")
UNCERTAIN_HEADERS = ("キー", "会員", "チャネル", "シナリオ", "ステップ", "試行", "最終試行", "理由", "ベンダー側の照合")


def channels_args(w: Window) -> tuple:
    return (w.start, w.end, w.timezone)


@dataclass
class ChannelsReport(Report):
    """The day table, and the uncertain sends an operator checks at the vendor."""

    uncertain: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "uncertain": self.uncertain}

    def to_text(self) -> str:
        lines = [super().to_text(), "",
                 f"確認が必要な送信 (uncertain: 届いたか不明、再送しません): {len(self.uncertain)}件"]
        if self.uncertain:
            cells = [[_cell(c, row[c]) for c in UNCERTAIN_COLUMNS] for row in self.uncertain]
            numeric = [c == "attempts" for c in UNCERTAIN_COLUMNS]
            lines += ["", *table(list(UNCERTAIN_HEADERS), cells, numeric)]
        return "\n".join(lines)


async def add_uncertain(conn_or_pool: asyncpg.Connection | asyncpg.Pool, w: Window, report: Report) -> Report:
    """The report with the period's uncertain sends, their times on the shop's clock."""
    records = await conn_or_pool.fetch(UNCERTAIN_SQL, w.start, w.end)
    uncertain = [
        {**{c: r[c] for c in UNCERTAIN_COLUMNS[:-1]},
         "attempted_at": shop_time(r["attempted_at"], w.timezone).isoformat(timespec="seconds")
         if r["attempted_at"] else None,
         "vendor_ref": vendor_ref(r["channel"], r["key"])}
        for r in records
    ]
    return ChannelsReport(**{f.name: getattr(report, f.name) for f in fields(Report)}, uncertain=uncertain)


def vendor_ref(channel: str, key: str) -> str | None:
    """What the vendor knows the message by: the mail server logs the Message-ID (its part before
    the shop's domain), the SMS gateway the client_ref; both are fixed by the touch's key."""
    if channel == "email":
        return "Message-ID " + message_id(key, "").partition("@")[0] + "@…>"
    if channel == "sms":
        return "client_ref " + client_ref(key)
    return None


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column == "attempted_at":  # 2026-03-02T10:15:00+09:00 → 2026-03-02 10:15, on the shop's clock
        return value[:16].replace("T", " ")
    return str(value)
