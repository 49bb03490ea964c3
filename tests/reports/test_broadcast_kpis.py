"""The broadcasts' rows of `report scenarios` on a small fixed dataset, counted by hand here:
reach, sent, suppressed by reason, expired, holdout, and a main purchase within 14 days of
the touch's decision against the holdout's, per broadcast and (--runs) per run."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

import pytest

from starter.cli import main
from starter.dashboard import render_dashboard
from starter.dashboard_broadcasts import broadcasts
from starter.reports import run_report
from starter.reports.broadcasts import BROADCAST_KPI, BROADCAST_KPI_DAYS
from tests.factories import cancelled, days, jst, order
from tests.reports.conftest import touch, write, write_touches
from worker.shop_config import load_shop_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shop.toml"
R1 = jst(2026, 1, 5, 10)  # weekly_news, run 2026-01-05 (Monday 10:00), decided when due
R2 = R1 + days(7)  # its next run
COUNTED = ("entered", "holdout", "touched", "suppressed", "suppressed_by", "expired", "converted", "rate",
           "holdout_converted", "holdout_rate", "lift")


def bc(member_id: str, broadcast: str, run: str, outcome: str, at, reason: str | None = None) -> tuple:
    return touch(member_id, "BC", broadcast, run, outcome, at, reason=reason)


def dataset() -> tuple[list, list]:
    w1, w2 = "2026-01-05", "2026-01-12"
    touches = [
        bc("w1", "weekly_news", w1, "sent", R1),  # buys on day 3 (and day 12): converted
        bc("w2", "weekly_news", w1, "sent", R1),  # buys on day 14, the window's last moment: converted
        bc("w3", "weekly_news", w1, "sent", R1),  # buys on day 15: too late
        bc("w4", "weekly_news", w1, "sent", R1),  # a cross product only: not a main purchase
        bc("w5", "weekly_news", w1, "sent", R1),  # an order cancelled: no purchase
        bc("w10", "weekly_news", w1, "sent", R1),  # bought the day before the touch only
        bc("w6", "weekly_news", w1, "suppressed", R1, "no_channel"),  # buys on day 7: converted (treated)
        bc("w7", "weekly_news", w1, "suppressed", R1, "frequency_cap"),
        bc("w8", "weekly_news", w1, "suppressed", R1, "no_channel"),
        bc("w9", "weekly_news", w1, "expired", R1, "late:4d_overdue"),  # buys on day 1: in neither group
        bc("h1", "weekly_news", w1, "holdout", R1, "holdout:10%"),  # buys on day 10: holdout converted
        bc("h2", "weekly_news", w1, "holdout", R1, "holdout:10%"),
        bc("c1", "weekly_news", w1, "cancelled", R1),  # erased before it was decided: left out
        # The next run: w1 sent (buys on day 12 = day 5 of this run), h1 held out (day 10 = day 3).
        bc("w1", "weekly_news", w2, "sent", R2),
        bc("h1", "weekly_news", w2, "holdout", R2, "holdout:10%"),
        # The monthly DM: d1 buys on day 20, after its 14 days; d2 held out.
        bc("d1", "monthly_dm", "2026-01", "sent", R1),
        bc("d2", "monthly_dm", "2026-01", "holdout", R1, "holdout:10%"),
        # A scenario's touch of w1: not a broadcast's.
        touch("w1", "S11", "comeback_offer", "o-old", "sent", R1),
    ]
    events = [
        order("w1", R1 + days(3), "w1-a"), order("w1", R1 + days(12), "w1-b"),
        order("w2", R1 + days(BROADCAST_KPI_DAYS), "w2-a"),
        order("w3", R1 + days(15), "w3-a"),
        order("w4", R1 + days(2), "w4-x", role="cross"),
        order("w5", R1 + days(4), "w5-a"), cancelled("w5", R1 + days(5), "w5-a"),
        order("w10", R1 - days(1), "w10-a"),
        order("w6", R1 + days(7), "w6-a"),
        order("w9", R1 + days(1), "w9-a"),
        order("h1", R1 + days(10), "h1-a"),
        order("d1", R1 + days(20), "d1-a"),
    ]
    return events, touches


def newcombe(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """The 95 % interval of p1 − p2 by Newcombe's hybrid score method, from Wilson intervals."""
    def wilson(x: int, n: int) -> tuple[float, float, float]:
        z2, p = 1.96 ** 2, x / n
        centre, half = (p + z2 / (2 * n)) / (1 + z2 / n), 1.96 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
        return p, centre - half, centre + half
    (p1, l1, u1), (p2, l2, u2) = wilson(x1, n1), wilson(x2, n2)
    return (p1 - p2 - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), p1 - p2 + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


async def test_a_row_per_broadcast_after_the_scenarios_counted_by_hand(report_pool):
    events, touches = dataset()
    await write(report_pool, events)
    await write_touches(report_pool, touches)

    report = await run_report(report_pool, "scenarios")
    assert [r["scenario"] for r in report.rows][-2:] == ["BC", "BC"]
    assert report.rows[-3]["scenario"] == "S12"  # the scenarios first, as before
    rows = {r["name"]: r for r in report.rows if r["scenario"] == "BC"}
    weekly, monthly = rows["weekly_news"], rows["monthly_dm"]
    assert (weekly["variant"], weekly["run"], weekly["kpi"], weekly["window_days"]) == ("-", None, BROADCAST_KPI, 14)
    # weekly_news, both runs: 14 touches (c1 cancelled is not one); 3 held out (h1 twice, h2);
    # sent 7 (w1 twice, w2 w3 w4 w5 w10); suppressed 3 (w6 w8 no_channel, w7 frequency_cap); expired 1 (w9).
    # Treatment 10 (sent + suppressed): converted w1 (run 1), w2, w6, w1 (run 2) = 4 → 0.4.
    # Holdout 3: h1 in both runs = 2 → 0.6667. Lift 0.4 − 0.6667 = −0.2667.
    assert {k: weekly[k] for k in COUNTED} == {
        "entered": 14, "holdout": 3, "touched": 7, "suppressed": 3, "suppressed_by": "no_channel 2, frequency_cap 1",
        "expired": 1, "converted": 4, "rate": 0.4, "holdout_converted": 2, "holdout_rate": 0.6667, "lift": -0.2667}
    low, high = newcombe(4, 10, 2, 3)
    assert (weekly["lift_ci_low"], weekly["lift_ci_high"]) == (round(low, 4), round(high, 4))
    # monthly_dm: d1's purchase on day 20 is after its 14 days.
    assert {k: monthly[k] for k in COUNTED} == {
        "entered": 2, "holdout": 1, "touched": 1, "suppressed": 0, "suppressed_by": None, "expired": 0,
        "converted": 0, "rate": 0.0, "holdout_converted": 0, "holdout_rate": 0.0, "lift": 0.0}
    # The scenario rows leave the broadcasts' columns empty; S11's touch is not a broadcast's.
    s11 = next(r for r in report.rows if r["scenario"] == "S11")
    assert (s11["run"], s11["suppressed"], s11["suppressed_by"], s11["expired"], s11["entered"]) == (
        None, None, None, None, 1)


async def test_runs_gives_a_row_per_broadcast_and_run(report_pool):
    events, touches = dataset()
    await write(report_pool, events)
    await write_touches(report_pool, touches)

    report = await run_report(report_pool, "scenarios", options={"runs": True})
    assert report.title.endswith("・ブロードキャストは回別")
    rows = {(r["name"], r["run"]): r for r in report.rows if r["scenario"] == "BC"}
    assert list(rows) == [("monthly_dm", "2026-01"), ("weekly_news", "2026-01-05"), ("weekly_news", "2026-01-12")]
    # Run 1: treatment 9 (6 sent, 3 suppressed), converted w1 w2 w6 = 3 → 0.3333; holdout h1 h2, h1 → 0.5.
    assert {k: rows[("weekly_news", "2026-01-05")][k] for k in COUNTED} == {
        "entered": 12, "holdout": 2, "touched": 6, "suppressed": 3, "suppressed_by": "no_channel 2, frequency_cap 1",
        "expired": 1, "converted": 3, "rate": 0.3333, "holdout_converted": 1, "holdout_rate": 0.5, "lift": -0.1667}
    # Run 2: w1 buys on its day 5, h1 on its day 3: 1 of 1 against 1 of 1.
    assert {k: rows[("weekly_news", "2026-01-12")][k] for k in COUNTED} == {
        "entered": 2, "holdout": 1, "touched": 1, "suppressed": 0, "suppressed_by": None, "expired": 0,
        "converted": 1, "rate": 1.0, "holdout_converted": 1, "holdout_rate": 1.0, "lift": 0.0}


async def test_the_period_selects_touches_by_their_run(report_pool):
    events, touches = dataset()
    await write(report_pool, events)
    await write_touches(report_pool, touches)
    from datetime import date

    report = await run_report(report_pool, "scenarios", date(2026, 1, 10), date(2026, 1, 31))
    rows = {r["name"]: r for r in report.rows if r["scenario"] == "BC"}
    assert list(rows) == ["weekly_news"]  # run 2 only
    assert (rows["weekly_news"]["entered"], rows["weekly_news"]["converted"]) == (2, 1)


async def test_a_configured_broadcast_without_a_run_has_an_empty_row(report_pool):
    loaded = load_shop_config(EXAMPLE)
    await report_pool.execute(
        "INSERT INTO config_versions (version, digest, applied_at, effective_at, source, body, templates)"
        " VALUES (1, $1, now(), now(), $2, $3::jsonb, '{}')",
        loaded.digest, loaded.source, json.dumps(loaded.config.model_dump(mode="json")))
    await write_touches(report_pool, [bc("w1", "weekly_news", "2026-01-05", "sent", R1)])
    rows = [r for r in (await run_report(report_pool, "scenarios")).rows if r["scenario"] == "BC"]
    assert [(r["name"], r["entered"], r["touched"], r["rate"], r["lift"]) for r in rows] == [
        ("monthly_dm", 0, 0, None, None), ("nyusan_trial", 0, 0, None, None), ("weekly_news", 1, 1, 0.0, None)]


@pytest.fixture
async def shop(report_pool, report_database_url, monkeypatch, tmp_path) -> str:
    """The dataset in a fresh database; DATABASE_URL points the CLI at it."""
    events, touches = dataset()
    await write(report_pool, events)
    await write_touches(report_pool, touches)
    monkeypatch.setenv("DATABASE_URL", report_database_url)
    monkeypatch.setenv("GOLDENROUTE_HOME", str(tmp_path))  # no dev stack file from elsewhere
    return report_database_url


def test_the_cli_prints_the_broadcast_rows_as_text_json_and_csv(shop, capsysbinary):
    def out() -> str:
        return capsysbinary.readouterr().out.decode("utf-8-sig")

    assert main(["report", "scenarios"]) == 0
    lines = out().splitlines()
    weekly = next(line for line in lines if line.startswith("BC") and "weekly_news" in line).split()
    assert weekly[:11] == ["BC", "weekly_news", "-", "-", BROADCAST_KPI, "14", "14", "3", "7", "3", "no_channel"]
    assert main(["report", "scenarios", "--json", "--runs"]) == 0
    rows = [r for r in json.loads(out())["rows"] if r["scenario"] == "BC"]
    assert [(r["name"], r["run"], r["entered"], r["converted"]) for r in rows] == [
        ("monthly_dm", "2026-01", 2, 0), ("weekly_news", "2026-01-05", 12, 3), ("weekly_news", "2026-01-12", 2, 1)]
    assert main(["report", "scenarios", "--csv"]) == 0
    table = list(csv.DictReader(io.StringIO(out())))
    weekly_csv = next(r for r in table if r["name"] == "weekly_news")
    assert (weekly_csv["scenario"], weekly_csv["run"], weekly_csv["suppressed_by"], weekly_csv["lift"]) == (
        "BC", "", "no_channel 2, frequency_cap 1", "-0.2667")
    assert main(["report", "funnel", "--runs"]) == 2
    assert "report funnel takes no --runs" in capsysbinary.readouterr().err.decode()


async def test_the_dashboard_shows_the_broadcasts_in_their_own_section(report_pool):
    events, touches = dataset()
    await write(report_pool, events)
    await write_touches(report_pool, touches)
    html = render_dashboard({name: await run_report(report_pool, name) for name in ("funnel", "scenarios")})

    section = re.search(r"<section id=broadcasts>(.*?)</section>", html).group(1)
    assert "<h2>ブロードキャスト別KPI" in section and f"{BROADCAST_KPI_DAYS}日以内の本品購入" in section
    rows = {m[0]: re.findall(r"<td[^>]*>(.*?)</td>", m[1])
            for m in re.findall(r"<tr class='[^']*' data-broadcast='([^']*)'>(.*?)</tr>", section)}
    assert list(rows) == ["monthly_dm", "weekly_news"]
    weekly = rows["weekly_news"]
    assert [weekly[i] for i in (0, 1, 3, 4, 5, 6, 7, 8, 9)] == [
        "weekly_news", "14", "7 (50.0%)", "3 (no_channel 2, frequency_cap 1)", "1", "3", "40.0%", "66.7%",
        "-26.7pt"]
    scenarios = re.search(r"<section id=scenarios>(.*?)</section>", html).group(1)
    assert "data-scenario='S11'" in scenarios and "BC" not in scenarios and "weekly_news" not in scenarios


def test_the_broadcasts_section_escapes_every_text_and_names_broadcasts_not_run_yet():
    evil = "<script>alert('x')</script>"
    row = {"scenario": "BC", "name": evil, "run": evil, "entered": 3, "touched": 2, "suppressed": 1,
           "suppressed_by": evil, "expired": 0, "holdout": 0, "rate": 0.5, "lift": None}
    html = broadcasts([row, {"scenario": "BC", "name": "spring_sale", "entered": 0}])
    assert "<script" not in html and "&lt;script&gt;" in html
    assert "この期間の配信なし: spring_sale。" in html
