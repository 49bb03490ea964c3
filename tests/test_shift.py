"""`goldenroute send FILE --now`: the whole timeline moved so its last event was 15 minutes ago.

The shift itself is tested in-process on the example files and on edge cases; the flag
through the real CLI against the session's PostgreSQL and Temporal dev server.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from starter.ingress import parse_lines
from starter.ingress.shift import LEAD, MAX_EVENT_ID, shift_to_now, shifted_event_id
from tests.test_send import _said, engine_env, goldenroute  # noqa: F401  (engine_env: a fixture)
from workflows.events import MemberRegistered

PROJECT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((PROJECT / "examples").glob("*.ndjson"))
NOW = datetime(2026, 12, 2, 13, 37, 21, 123456, tzinfo=ZoneInfo("Asia/Tokyo"))


def event(event_id: str, at: str, **fields) -> dict:
    return {"type": "member_registered", "event_id": event_id, "member_id": "m-1", "occurred_at": at, **fields}


def ndjson(*events: dict | str) -> bytes:
    return "\n".join(e if isinstance(e, str) else json.dumps(e, ensure_ascii=False) for e in events).encode() + b"\n"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_keeps_its_spacing_offsets_and_lines_and_ends_15_minutes_ago(path: Path) -> None:
    before = parse_lines(path.read_bytes())
    after, shift = shift_to_now(before, NOW)
    assert shift is not None and shift.events == len(before.numbered)
    assert [n for n, _ in after.numbered] == [n for n, _ in before.numbered]
    assert after.rejected == before.rejected  # with_invalid_lines: still lines 2 and 5, same reasons
    latest = max(e.occurred_at for e in after.events)
    assert NOW - LEAD - timedelta(seconds=1) < latest <= NOW - LEAD
    for (_, old), (_, new) in zip(before.numbered, after.numbered):
        assert new.occurred_at - old.occurred_at == shift.by
        assert new.occurred_at.utcoffset() == old.occurred_at.utcoffset()
        assert new.event_id == f"{old.event_id}@2026-12-02"
        # Nothing else of the event changes.
        unchanged = {"event_id", "occurred_at"}
        assert new.model_dump(exclude=unchanged) == old.model_dump(exclude=unchanged)
        assert new.model_fields_set == old.model_fields_set


def test_the_same_day_gives_the_same_ids_and_another_day_new_ones() -> None:
    parsed = parse_lines(ndjson(event("e1", "2026-01-01T10:00:00+09:00")))
    later_today = shift_to_now(parsed, NOW + timedelta(hours=3))[0].events[0]
    assert later_today.event_id == shift_to_now(parsed, NOW)[0].events[0].event_id == "e1@2026-12-02"
    assert shift_to_now(parsed, NOW + timedelta(days=1))[0].events[0].event_id == "e1@2026-12-03"


def test_the_day_is_the_day_where_now_is_given() -> None:
    parsed = parse_lines(ndjson(event("e1", "2026-01-01T10:00:00+09:00")))
    early_in_tokyo = datetime(2026, 12, 2, 8, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # still Dec 1 in UTC
    assert shift_to_now(parsed, early_in_tokyo)[0].events[0].event_id == "e1@2026-12-02"
    assert shift_to_now(parsed, early_in_tokyo.astimezone(timezone.utc))[0].events[0].event_id == "e1@2026-12-01"


def test_the_last_event_is_the_latest_not_the_last_line() -> None:
    parsed = parse_lines(ndjson(event("late", "2026-03-01T00:00:00+00:00"), event("early", "2026-02-01T00:00:00+00:00")))
    after, shift = shift_to_now(parsed, NOW)
    late, early = after.events
    assert NOW - LEAD - timedelta(seconds=1) < late.occurred_at <= NOW - LEAD
    assert late.occurred_at - early.occurred_at == timedelta(days=28)
    assert shift.latest == late.occurred_at


def test_a_file_dated_in_the_future_moves_back() -> None:
    parsed = parse_lines(ndjson(event("e1", "2027-06-01T10:00:00+09:00")))
    after, shift = shift_to_now(parsed, NOW)
    assert shift.by < timedelta(0) and after.events[0].occurred_at <= NOW - LEAD


def test_an_explicit_null_stays_explicit_and_a_field_left_out_stays_left_out() -> None:
    # contact.email null removes the stored address; phone left out keeps it (SPEC §2).
    parsed = parse_lines(ndjson(event("e1", "2026-01-01T10:00:00+09:00", contact={"email": None, "line_user_id": "U1"})))
    shifted = shift_to_now(parsed, NOW)[0].events[0]
    assert isinstance(shifted, MemberRegistered) and shifted.contact is not None
    assert shifted.contact.changes() == {"email": None, "line_user_id": "U1"}
    assert shifted.consent is None and "consent" not in shifted.model_fields_set


def test_an_event_moved_out_of_the_contracts_calendar_is_rejected_with_its_line() -> None:
    parsed = parse_lines(ndjson(event("old", "2000-01-02T00:00:00+00:00"), "not json",
                                event("new", "2040-01-01T00:00:00+00:00")))
    after, shift = shift_to_now(parsed, NOW)  # back by 13 years: 'old' lands in 1986
    assert [n for n, _ in after.numbered] == [3] and shift.events == 1
    assert [(r.line, r.problems[0].split(":")[0]) for r in after.rejected] == [(1, "occurred_at"), (2, "(event)")]


def test_a_long_event_id_is_shortened_with_a_hash_and_stays_valid() -> None:
    long_id = "x" * MAX_EVENT_ID
    shortened = shifted_event_id(long_id, "@2026-12-02")
    assert len(shortened) <= MAX_EVENT_ID and shortened.endswith("@2026-12-02")
    assert shortened == shifted_event_id(long_id, "@2026-12-02") != shifted_event_id("y" + long_id[1:], "@2026-12-02")
    after, _ = shift_to_now(parse_lines(ndjson(event(long_id, "2026-01-01T10:00:00+09:00"))), NOW)
    assert after.events[0].event_id == shortened and not after.rejected


def test_nothing_valid_nothing_shifted() -> None:
    parsed = parse_lines(b"not json\n")
    assert shift_to_now(parsed, NOW) == (parsed, None)
    with pytest.raises(ValueError):
        shift_to_now(parsed, NOW.replace(tzinfo=None))


# --- the flag through the real CLI -----------------------------------------------------------------


async def test_send_now_stores_the_shifted_events_and_the_same_file_again_is_a_duplicate(
        tmp_path: Path, engine_env: dict[str, str], pool: asyncpg.Pool, member_id: str) -> None:
    path = tmp_path / "member.ndjson"
    path.write_bytes(ndjson(event(f"{member_id}-1", "2026-01-01T10:00:00+09:00", member_id=member_id),
                            event(f"{member_id}-2", "2026-01-03T10:00:00+09:00", member_id=member_id)))
    first = await goldenroute(engine_env, "send", str(path), "--now")
    assert first.returncode == 0, _said(first)
    shifted, accepted = first.stdout.splitlines()[:2]
    assert shifted.startswith("shifted 2 events by +") and "(15 minutes ago)" in shifted, _said(first)
    assert accepted == "accepted 2 events for 1 member", _said(first)

    rows = await pool.fetch("SELECT event_id, occurred_at FROM member_events WHERE member_id = $1 ORDER BY seq",
                            member_id)
    day = datetime.now().astimezone().date().isoformat()
    assert [r["event_id"] for r in rows] == [f"{member_id}-1@{day}", f"{member_id}-2@{day}"]
    assert rows[1]["occurred_at"] - rows[0]["occurred_at"] == timedelta(days=2)
    ago = datetime.now(timezone.utc) - rows[1]["occurred_at"]
    assert LEAD <= ago < LEAD + timedelta(minutes=2)

    again = await goldenroute(engine_env, "send", str(path), "--now")
    assert again.returncode == 0, _said(again)
    assert again.stdout.splitlines()[1] == "accepted 0 events; 2 duplicates (already accepted, not stored again)"
    # Without --now the file's own events are other events.
    plain = await goldenroute(engine_env, "send", str(path))
    assert plain.stdout.splitlines()[0] == "accepted 2 events for 1 member", _said(plain)
