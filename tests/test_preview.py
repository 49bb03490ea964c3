"""``goldenroute preview``: a member's events through the real MemberWorkflow on the time-skipping server, dry.

The CLI tests call ``starter.cli.main`` (each run starts its own test server);
the example tests share one server through ``Previewer``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from starter.cli import main
from starter.preview import Preview, Previewer, days_to_shift, load_member_events, shift
from workflows import events as ev
from workflows import lifecycle

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "preview"
REQUIRED_KEYS = ["at", "scenario", "step", "channel", "outcome", "reason"]
ALL_SCENARIOS = {f"S{n:02d}" for n in range(1, 13)}


def preview_json(capsys: pytest.CaptureFixture, *args: str) -> list[dict]:
    code = main(["preview", *args, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def local(touch: dict) -> str:
    """'YYYY-MM-DDTHH:MM' as printed: the input's own timeline, member-local."""
    return touch["at"][:16]


# --- through the CLI ---------------------------------------------------------------------------


def test_sample_converts_gets_its_s01_touches_at_the_input_dates_and_the_order_cancels_the_rest(
        capsys, monkeypatch, tmp_path):
    # No dev stack and no database: a stale dev-stack.json and unreachable addresses change nothing.
    (tmp_path / "dev-stack.json").write_text(json.dumps(
        {"temporal_address": "127.0.0.1:1", "database_url": "postgresql://nobody@127.0.0.1:1/none"}))
    monkeypatch.setenv("GOLDENROUTE_HOME", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")

    touches = preview_json(capsys, str(EXAMPLES / "01_sample_converts.ndjson"), "--days", "60")

    s01 = [(local(t), t["step"], t["channel"], t["outcome"], t["reason"]) for t in touches if t["scenario"] == "S01"]
    assert s01 == [
        # The sample request at 21:16: the parcel insert goes at once (after the 10-minute grace period) ...
        ("2026-03-02T21:26", "sample_insert", "insert", "sent", "route:insert"),
        # ... the LINE welcome waits out the quiet hours until 09:00.
        ("2026-03-03T09:00", "welcome_offer", "line", "sent", "route:line"),
        # Sample shipped 3/3 15:30, 7 days → runs out 3/10: offer two days before, at the send hour.
        ("2026-03-08T10:00", "run_out_offer", "line", "sent", "route:line"),
        # The main order on 3/9 08:12 exits S01: the last call (due 3/10) is cancelled once
        # the order's burst has folded in (the grace period).
        ("2026-03-09T08:22", "last_call", None, "cancelled", "exit:order_placed"),
    ]
    assert all(t["at"].endswith("+09:00") for t in touches)
    assert [t for t in touches if t["step"] == "last_call"][0]["due_at"].startswith("2026-03-10T10:00")
    # The order starts F1 → F2 within the 60 days.
    assert ("S03", "thanks_insert", "2026-03-09T08:22") in {(t["scenario"], t["step"], local(t)) for t in touches}


def test_json_is_one_time_ordered_array_of_touches_with_the_required_keys_first(capsys):
    touches = preview_json(capsys, str(EXAMPLES / "04_normal_f1_to_f3.ndjson"))
    assert isinstance(touches, list) and touches
    for touch in touches:
        assert list(touch)[:6] == REQUIRED_KEYS
        assert touch["scenario"] in ALL_SCENARIOS
        assert touch["outcome"] in {"sent", "suppressed", "expired", "holdout", "cancelled"}
        datetime.fromisoformat(touch["at"])
    moments = [datetime.fromisoformat(t["at"]) for t in touches]
    assert moments == sorted(moments)
    assert {t["channel"] for t in touches} <= {None, "email", "insert"}


def test_the_table_names_each_scenario_in_japanese(capsys):
    assert main(["preview", str(EXAMPLES / "02_sample_never_buys.ndjson")]) == 0
    out = capsys.readouterr().out
    assert "日付" in out and "理由" in out
    assert "2026-04-10(金)  12:41  S01 サンプル→本品引上  welcome_offer  email" in out
    assert "2026-04-25(土)  10:00  S01 サンプル→本品引上  last_call" in out


def test_an_invalid_file_names_the_line_and_field_and_exits_non_zero(capsys, tmp_path):
    lines = (EXAMPLES / "10_lapsed_buyer.ndjson").read_text(encoding="utf-8").splitlines()
    broken = json.loads(lines[1])
    broken["occurred_at"] = broken["occurred_at"][:-6]  # no offset
    path = tmp_path / "broken.ndjson"
    path.write_text("\n".join([lines[0], json.dumps(broken), *lines[2:]]) + "\n", encoding="utf-8")

    assert main(["preview", str(path), "--json"]) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "line 2: occurred_at" in captured.err


def test_a_file_with_two_members_is_refused(capsys, tmp_path):
    path = tmp_path / "two.ndjson"
    path.write_text((EXAMPLES / "02_sample_never_buys.ndjson").read_text(encoding="utf-8")
                    + (EXAMPLES / "10_lapsed_buyer.ndjson").read_text(encoding="utf-8"), encoding="utf-8")

    assert main(["preview", str(path), "--json"]) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "line 4: member_id" in captured.err and "one member per file" in captured.err


def test_several_files_or_a_directory_preview_each_member_into_one_json_object(capsys, tmp_path):
    never_buys, lapsed = EXAMPLES / "02_sample_never_buys.ndjson", EXAMPLES / "10_lapsed_buyer.ndjson"
    alone = preview_json(capsys, str(never_buys), "--days", "30")

    assert main(["preview", str(never_buys), str(lapsed), "--days", "30", "--json"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert [m["member_id"] for m in both["members"]] == ["C-2025-0002", "C-2025-0010"]
    assert both["members"][0] == {"member_id": "C-2025-0002", "timezone": "Asia/Tokyo", "touches": alone}

    # A directory stands for its *.ndjson files, in name order.
    assert main(["preview", str(EXAMPLES), "--days", "30", "--json"]) == 0
    members = json.loads(capsys.readouterr().out)["members"]
    assert len(members) == len(list(EXAMPLES.glob("*.ndjson"))) and members[1] == both["members"][0]


def test_a_rejected_file_among_several_is_named_with_its_line_and_nothing_runs(capsys, tmp_path):
    (tmp_path / "a_good.ndjson").write_text((EXAMPLES / "02_sample_never_buys.ndjson").read_text(encoding="utf-8"))
    broken = tmp_path / "b_broken.ndjson"
    broken.write_text((EXAMPLES.parent / "with_invalid_lines.ndjson").read_text(encoding="utf-8"))

    assert main(["preview", str(tmp_path), "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"rejected {broken} line 2: occurred_at" in captured.err
    # The same member in two files: which file's events would be its?
    assert main(["preview", str(tmp_path / "a_good.ndjson"), str(EXAMPLES / "02_sample_never_buys.ndjson")]) == 1
    assert "one file per member" in capsys.readouterr().err


def test_a_year_of_one_member_completes_in_seconds(capsys):
    started = time.monotonic()
    touches = preview_json(capsys, str(EXAMPLES / "07_loyal_monthly.ndjson"), "--days", "365")
    assert time.monotonic() - started < 30
    first, last = datetime.fromisoformat(touches[0]["at"]), datetime.fromisoformat(touches[-1]["at"])
    assert last - first > timedelta(days=330)
    assert last <= datetime.fromisoformat("2027-01-20T20:41:55+09:00")  # first event + 365 days
    assert [t["variant"] for t in touches if t["scenario"] == "S08"] == ["secret_sale", "secret_sale"]


# --- the examples, on one shared server ----------------------------------------------------------


def has(touches, **want) -> bool:
    return any(all(getattr(t, k) == v for k, v in want.items()) for t in touches)


# What each example is there to show (examples/preview/README.md has the same table).
SHOWS = {
    "01_sample_converts": [dict(scenario="S01", step="run_out_offer", outcome="sent"),
                           dict(scenario="S01", step="last_call", outcome="cancelled", reason="exit:order_placed")],
    "02_sample_never_buys": [dict(scenario="S01", step=s, outcome="sent")
                             for s in ("welcome_offer", "sample_insert", "run_out_offer", "last_call")],
    "03_trial_buyer": [dict(scenario="S02", step=s, outcome="sent") for s in ("welcome", "bulk_offer", "last_call")],
    "04_normal_f1_to_f3": [dict(scenario="S03", step="testimonial", outcome="sent"),
                           dict(scenario="S04", step="usage_tips", outcome="sent"),
                           dict(scenario="S05", step="member_benefits", outcome="sent"),
                           dict(scenario="S06", outcome="suppressed", reason="covered_by:S03"),
                           dict(scenario="S06", outcome="suppressed", reason="covered_by:S04"),
                           dict(scenario="S06", outcome="sent"),
                           dict(scenario="S09", outcome="sent")],
    "05_subscriber_pauses_online": [dict(scenario="S07", step="resume_link", outcome="sent", channel="line"),
                                    dict(scenario="S03", reason="route:line;upsell_omitted:subscriber")],
    "06_subscriber_pauses_offline": [dict(scenario="S07", step="resume_link", outcome="sent", channel="dm"),
                                     dict(scenario="S07", step="resume_call", outcome="sent", channel="call_center")],
    "07_loyal_monthly": [dict(scenario="S08", step="loyalty_offer", outcome="sent")],
    "08_f3_without_cross": [dict(scenario="S09", step="cross_offer", outcome="sent")],
    "09_cross_purchases_stop": [dict(scenario="S10", step="cross_follow_up", outcome="sent")],
    "10_lapsed_buyer": [dict(scenario="S11", step="comeback_offer", outcome="sent", channel="sms"),
                        dict(scenario="S11", step="new_product", outcome="sent", channel="sms")],
    "11_subscriber_churn_signals": [dict(scenario="S12", step="call_center_task", outcome="sent"),
                                    dict(scenario="S12", step="follow_up_faq", outcome="sent")],
    "12_consent_withdrawn": [dict(scenario="S03", step="survey", outcome="suppressed", reason="no_channel")],
    "13_late_night_line": [dict(scenario="S01", step="welcome_offer", outcome="sent", channel="line")],
    "14_erasure_request": [dict(scenario="S01", outcome="cancelled", reason="exit:member_erased")],
    "15_monthly_for_40_months": [dict(scenario="S08", step="loyalty_offer", outcome="sent"),
                                 dict(scenario="S09", step="cross_offer", outcome="sent")],
}


@pytest.fixture(scope="module")
async def example_previews() -> dict[str, Preview]:
    files = sorted(EXAMPLES.glob("*.ndjson"))
    assert len(files) >= 10
    async with Previewer.start() as previewer:
        return {f.stem: await previewer.run(load_member_events(f.read_text(encoding="utf-8")), 365) for f in files}


async def test_every_scenario_is_reached_by_some_example(example_previews):
    reached = {t.scenario for p in example_previews.values() for t in p.touches if t.outcome in ("sent", "holdout")}
    assert reached == ALL_SCENARIOS
    sent = {t.scenario for p in example_previews.values() for t in p.touches if t.outcome == "sent"}
    assert sent == ALL_SCENARIOS  # the examples' members are outside the holdout of the scenario each shows


async def test_each_example_shows_what_it_is_there_for(example_previews):
    assert set(SHOWS) == set(example_previews)
    for name, wanted in SHOWS.items():
        for want in wanted:
            assert has(example_previews[name].touches, **want), (name, want)


async def test_examples_follow_the_member_clock(example_previews):
    # 23:04 sample request, LINE only: the welcome waits for 09:00 the next morning.
    late = example_previews["13_late_night_line"].touches
    welcome = next(t for t in late if t.step == "welcome_offer")
    assert welcome.at.isoformat(timespec="minutes") == "2026-08-21T09:00+09:00"
    # The churn signal at 23:18 reaches the call centre at once (after the grace period) and the FAQ follows the next day at 10:00.
    churn = [(t.at.isoformat(timespec="minutes"), t.step) for t in example_previews["11_subscriber_churn_signals"].touches
             if t.scenario == "S12"]
    assert churn == [("2026-03-12T23:28+09:00", "call_center_task"), ("2026-03-13T10:00+09:00", "follow_up_faq"),
                     ("2026-04-20T21:15+09:00", "call_center_task"), ("2026-04-21T10:00+09:00", "follow_up_faq")]
    # Registered more than 180 days before the third purchase: no onboarding.
    assert not has(example_previews["08_f3_without_cross"].touches, scenario="S05")
    for preview in example_previews.values():
        assert [t.at for t in preview.touches] == sorted(t.at for t in preview.touches)
        assert all(preview.start <= t.at <= preview.end for t in preview.touches)


async def test_a_workflow_that_fails_is_reported_instead_of_stalling_the_clock(monkeypatch):
    def broken(state, event):
        raise RuntimeError("a bug in the fold of churn signals")

    monkeypatch.setitem(lifecycle._FOLDS, ev.ChurnSignal, broken)
    events = load_member_events((EXAMPLES / "11_subscriber_churn_signals.ndjson").read_text(encoding="utf-8"))
    async with Previewer.start() as previewer:
        with pytest.raises(RuntimeError, match="member workflow failed"):
            await asyncio.wait_for(previewer.run(events, 365), timeout=60)


# --- time alignment ------------------------------------------------------------------------------


def test_the_shift_is_whole_days_on_the_member_wall_clock():
    berlin = ZoneInfo("Europe/Berlin")
    winter = datetime(2026, 1, 10, 23, 30, tzinfo=berlin)
    moved = shift(winter, 180, berlin)  # into summer time: still 23:30 local
    assert (moved.date().isoformat(), moved.hour, moved.minute) == ("2026-07-09", 23, 30)
    assert shift(moved, -180, berlin) == winter

    tokyo = ZoneInfo("Asia/Tokyo")
    first = datetime(2026, 3, 2, 21, 14, 5, tzinfo=tokyo)
    now = datetime(2026, 11, 22, 20, 55, tzinfo=ZoneInfo("UTC"))
    days = days_to_shift(first, now, tokyo)
    assert shift(first, days, tokyo) >= now > shift(first, days - 1, tokyo)
    assert days_to_shift(now + timedelta(days=3, hours=1), now, tokyo) == -3


def test_a_40_month_buyer_gets_s08_and_s09_in_its_third_year_and_nothing_expires(capsys):
    touches = preview_json(capsys, str(EXAMPLES / "15_monthly_for_40_months.ndjson"), "--days", "1250")
    assert not [t for t in touches if t["outcome"] == "expired"]
    third_year = [t for t in touches if "2025-09-04" <= t["at"][:10] < "2026-09-04" and t["outcome"] == "sent"]
    assert {"S08", "S09"} <= {t["scenario"] for t in third_year}
    s08 = [datetime.fromisoformat(t["at"]) for t in touches if t["scenario"] == "S08" and t["outcome"] == "sent"]
    assert len(s08) == 6 and all(b - a >= timedelta(days=180) for a, b in zip(s08, s08[1:]))
    keys = [(t["scenario"], t["step"], t["due_at"]) for t in touches]
    assert len(keys) == len(set(keys))  # one outcome per (scenario, step, day)


# --- a closed pipe: `goldenroute preview … | head -2` ------------------------------------------


def test_a_reader_that_goes_away_ends_the_preview_quietly_with_0():
    example = str(EXAMPLES / "02_sample_never_buys.ndjson")
    # The reader is gone before the first byte, so that the write certainly fails (EPIPE) …
    run = subprocess.Popen([sys.executable, "-m", "starter.cli", "preview", example, "--days", "30"],
                           cwd=EXAMPLES.parent.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run.stdout.close()
    err = run.stderr.read().decode()
    assert run.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "Broken pipe" not in err and "Errno" not in err
    # … and `| head -2`, literally.
    piped = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{sys.executable} -m starter.cli preview {example} --days 30 | head -2"],
        cwd=EXAMPLES.parent.parent, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and "Traceback" not in piped.stderr, piped.stderr
    assert piped.stdout.startswith("member C-2025-0002 (Asia/Tokyo): 2026-04-10T12:30+09:00")
    assert len(piped.stdout.splitlines()) == 2
