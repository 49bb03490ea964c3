"""The dashboard over a generated shop of 300 members, on real PostgreSQL.

The shop comes from ``tests.datasets``: every member's touches are the ones the
engine's core decides, so the dashboard is checked against data shaped like a
real 単品通販 shop's, in a database of its own.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from activities import db
from starter.dashboard import SECTIONS, TITLE, render_dashboard, write_dashboard
from starter.reports import run_report
from tests import datasets
from tests.conftest import _with_database

JST = ZoneInfo("Asia/Tokyo")
START = datetime(2025, 1, 1, tzinfo=JST)
UNTIL = datetime(2026, 4, 1, tzinfo=JST)  # 15 months: the first cohorts have a whole year behind them
MEMBERS, SEED = 300, 20250101
LOAD_SECONDS = 10  # "a few seconds" with room for a slow CI machine


@pytest.fixture(scope="module")
def shop() -> list[list]:
    # New members keep arriving up to the dashboard's day, as in a running shop.
    return datasets.generate(MEMBERS, SEED, START, arrivals_over=(UNTIL - START).days)


@dataclass
class Loaded:
    pool: asyncpg.Pool
    seconds: float


@pytest.fixture(scope="module")
async def loaded(database_server_url: str, shop) -> Loaded:
    """A fresh database of its own (other report tests bring their own data), migrated and loaded."""
    name = f"goldenroute_dashboard_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    pool = await db.create_pool(_with_database(database_server_url, name))
    await db.migrate(pool)
    began = time.perf_counter()
    await datasets.load(pool, shop, UNTIL)
    yield Loaded(pool, time.perf_counter() - began)
    await pool.close()
    admin = await asyncpg.connect(database_server_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture(scope="module")
async def dashboard(loaded: Loaded, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dashboard") / "dashboard.html"
    await write_dashboard(loaded.pool, out, as_of=UNTIL)
    return out


# --- the generated shop ------------------------------------------------------------------


def _dump(shop) -> list[list[dict]]:
    return [[e.model_dump(mode="json") for e in events] for events in shop]


def test_the_generator_is_deterministic_for_a_seed():
    shop = datasets.generate(MEMBERS, SEED, START)
    assert _dump(datasets.generate(MEMBERS, SEED, START)) == _dump(shop)
    assert _dump(datasets.generate(MEMBERS, SEED + 1, START)) != _dump(shop)


def test_every_persona_in_its_proportion(shop):
    by_persona = Counter(events[0].member_id.rsplit("-", 1)[1] for events in shop)
    assert set(by_persona) == set(datasets.PERSONAS)
    for persona, share in datasets.PERSONAS.items():
        assert abs(by_persona[persona] - share * MEMBERS) < 1, persona
    assert Counter(datasets.personas(7, SEED)).keys() <= set(datasets.PERSONAS)


def _members(shop, persona: str) -> list[list]:
    return [events for events in shop if events[0].member_id.endswith(f"-{persona}")]


def _mains(events) -> list:
    cancelled = {e.order_id for e in events if e.type == "order_cancelled"}
    return [e for e in events if e.type == "order_placed" and e.order_id not in cancelled
            and any(line.role == "main" for line in e.lines)]


def test_each_persona_behaves_as_its_name_says(shop):
    assert all(any(e.type == "sample_requested" for e in m) for m in _members(shop, "sample"))
    assert all(any(e.type == "order_placed" and {l.role for l in e.lines} == {"trial"} for e in m)
               for m in _members(shop, "trial"))
    assert {len(_mains(m)) for m in _members(shop, "normal")} == {1, 2, 3}

    loyal = _members(shop, "loyal")
    assert sum(len(_mains(m)) >= 4 for m in loyal) >= 0.8 * len(loyal)
    assert any(any(l.role == "cross" for e in _mains(m) for l in e.lines) for m in loyal)

    subscribers = _members(shop, "subscriber")
    assert all(any(e.type == "subscription_started" for e in m) for m in subscribers)
    kinds = Counter(e.type for m in subscribers for e in m)
    for kind in ("subscription_paused", "subscription_resumed", "subscription_cancelled",
                 "subscription_interval_changed", "churn_signal"):
        assert kinds[kind] > 0, kind

    for member in _members(shop, "reactivated"):
        times = [e.occurred_at for e in _mains(member)]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert any(gap >= timedelta(days=90) for gap in gaps) or times[0] > START + timedelta(days=600)


def test_the_rates_a_shop_would_expect():
    """Over many members, so that chance does not hide the generator's own rates."""
    shop = datasets.generate(3000, SEED, START)
    samples = _members(shop, "sample")
    assert 0.30 <= sum(bool(_mains(m)) for m in samples) / len(samples) <= 0.40  # 本商品引上率
    trials = _members(shop, "trial")
    assert 0.35 <= sum(bool(_mains(m)) for m in trials) / len(trials) <= 0.55
    stops = Counter(len(_mains(m)) for m in _members(shop, "normal"))
    assert stops[1] > stops[2] > stops[3] > 0  # fewer drop out at each step


def test_first_events_spread_over_a_year_and_prices_are_a_shops(shop):
    firsts = [events[0].occurred_at for events in datasets.generate(MEMBERS, SEED, START)]
    assert len({(t.year, t.month) for t in firsts}) == 12
    assert min(firsts) >= START and max(firsts) < START + timedelta(days=365)
    lines = [line for events in shop for e in events if e.type == "order_placed" for line in e.lines]
    assert all(2980 <= line.unit_price <= 5980 for line in lines)
    assert sum(line.days_supply == 30 for line in lines) > 0.8 * len(lines)


# --- loading ----------------------------------------------------------------------------------


async def test_300_members_load_in_a_few_seconds(loaded: Loaded, shop):
    assert loaded.seconds < LOAD_SECONDS
    pool = loaded.pool
    events = sum(1 for events in shop for e in events if e.occurred_at <= UNTIL)
    assert await pool.fetchval("SELECT count(*) FROM member_events") == events
    assert await pool.fetchval("SELECT count(*) FROM members") == MEMBERS
    # seq is each member's arrival order, 1 … n without gaps
    assert await pool.fetchval(
        "SELECT bool_and(n = top) FROM (SELECT count(*) AS n, max(seq) AS top FROM member_events"
        " GROUP BY member_id) s")
    outcomes = dict(await pool.fetch("SELECT outcome, count(*) FROM touches GROUP BY outcome"))
    assert {"sent", "holdout", "suppressed", "cancelled"} <= outcomes.keys()


async def test_the_snapshot_the_engine_folds_agrees_with_the_report_views(loaded: Loaded):
    """members (the workflow's fold) and the views over the event log (the reports) must agree."""
    disagreements = await loaded.pool.fetch("""
        WITH mains AS (SELECT member_id, count(*) AS f, min(placed_at) AS first_at, max(placed_at) AS last_at
                       FROM main_purchases GROUP BY member_id),
             spend AS (SELECT member_id, sum(revenue) AS revenue FROM orders
                       WHERE NOT cancelled AND NOT is_sample GROUP BY member_id)
        SELECT m.member_id
        FROM members m LEFT JOIN mains USING (member_id) LEFT JOIN spend USING (member_id)
        WHERE m.purchase_count <> coalesce(mains.f, 0)
           OR m.revenue <> coalesce(spend.revenue, 0)
           OR m.first_purchase_at IS DISTINCT FROM mains.first_at
           OR m.last_purchase_at IS DISTINCT FROM mains.last_at
    """)
    assert disagreements == []


# --- the dashboard ----------------------------------------------------------------------------


class StrictParser(HTMLParser):
    """html.parser with the checks it does not do itself: every element closed, in order."""

    VOID = {"meta", "br", "img", "link", "input", "hr", "rect", "line", "circle", "polyline", "stop"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.errors: list[str] = []
        self.tags: Counter = Counter()
        self.doctypes = 0

    def handle_decl(self, decl: str) -> None:
        self.doctypes += decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs) -> None:
        self.tags[tag] += 1
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs) -> None:
        self.tags[tag] += 1

    def handle_endtag(self, tag) -> None:
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.open[-1:] or 'nothing'}")
        else:
            self.open.pop()


class TableRows(HTMLParser):
    """The cells of each <tr> of the table with the given class, with the row's attributes."""

    def __init__(self, table_class: str) -> None:
        super().__init__(convert_charrefs=True)
        self.table_class, self.inside, self.rows = table_class, False, []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs) -> None:
        attrs = dict(attrs)
        if tag == "table":
            self.inside = attrs.get("class") == self.table_class
        elif self.inside and tag == "tr":
            self.rows.append((attrs, []))
        elif self.inside and tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag) -> None:
        if tag == "table":
            self.inside = False
        elif tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1][1].append("".join(self._cell).strip())
            self._cell = None


def _table(html: str, table_class: str) -> list[tuple[dict, list[str]]]:
    parser = TableRows(table_class)
    parser.feed(html)
    return [(attrs, cells) for attrs, cells in parser.rows if cells and attrs]  # body rows carry data-*


async def test_the_dashboard_is_one_self_contained_html_document(dashboard: Path):
    html = dashboard.read_text(encoding="utf-8")
    parser = StrictParser()
    parser.feed(html)
    parser.close()
    assert parser.errors == [] and parser.open == []
    assert parser.doctypes == 1 and parser.tags["html"] == 1 and parser.tags["body"] == 1
    assert parser.tags["svg"] >= 4
    assert parser.tags["table"] >= 2
    # Readable with no network: no script, no stylesheet link, no URL of any kind.
    assert parser.tags["script"] == 0 and parser.tags["link"] == 0 and parser.tags["img"] == 0
    for reference in ("http://", "https://", "//cdn", "@import", "src=", "href="):
        assert reference not in html, reference
    assert f"<title>{TITLE}</title>" in html
    for title in ("ライフサイクル・ファネル", "定期フロー", "コホート別LTV", "シナリオ別KPI", "リフト"):
        assert title in html, title
    assert all(f"<h2>{title}</h2>" in html for title in SECTIONS.values())


async def test_the_funnel_shows_the_funnel_reports_numbers(dashboard: Path, loaded: Loaded):
    report = await run_report(loaded.pool, "funnel")
    rows = _table(dashboard.read_text(encoding="utf-8"), "funnel")
    assert [attrs["data-step"] for attrs, _ in rows] == [r["step"] for r in report.rows]
    assert [int(cells[1].replace(",", "")) for _, cells in rows] == [r["members"] for r in report.rows]
    assert report.rows[0]["members"] > report.rows[-1]["members"] > 0


async def test_the_kpi_table_has_a_row_per_scenario_with_entries(dashboard: Path, loaded: Loaded):
    report = await run_report(loaded.pool, "scenarios")
    entered = [r for r in report.rows if r["entered"] > 0]
    rows = _table(dashboard.read_text(encoding="utf-8"), "scenarios")
    assert [attrs["data-scenario"] for attrs, _ in rows] == [r["scenario"] for r in entered]
    assert len({r["scenario"] for r in entered}) >= 10  # a realistic shop reaches nearly every scenario
    for (attrs, cells), row in zip(rows, entered):
        excludes_zero = (row["lift_ci_low"] or 0) > 0 or (row["lift_ci_high"] or 0) < 0
        assert ("sig" in attrs["class"].split()) == (excludes_zero and row["lift"] is not None)
        assert f"{row['entered']:,}" in cells[4]


async def test_the_ltv_and_subscription_charts_cover_every_cohort(dashboard: Path, loaded: Loaded):
    html = dashboard.read_text(encoding="utf-8")
    for name in ("ltv", "subscription-flow"):
        report = await run_report(loaded.pool, name, as_of=UNTIL)
        assert report.rows
        for row in report.rows:
            assert f">{row['cohort']}" in html, (name, row["cohort"])


def test_every_text_is_escaped():
    @dataclass
    class Fake:
        rows: list

    evil = "<script>alert('x')</script>"
    html = render_dashboard({
        "funnel": Fake([{"step": "f1", "label": evil, "members": 1, "rate": None, "median_days": None}]),
        "scenarios": Fake([{"scenario": evil, "name": evil, "variant": evil, "kpi": evil, "entered": 3,
                            "touched": 2, "lift": 0.1, "lift_ci_low": 0.05, "lift_ci_high": 0.15}]),
        "ltv": Fake([{"cohort": evil, "members": 1, "day_0": 100}]),
        "subscription-flow": Fake([{"cohort": evil, "started": 1, "d1": 1.0}]),
        "cpm": Fake([{"segment": evil, "members": 1, "revenue": 1, "avg_revenue": 1, "share": 1.0}]),
    })
    assert "<script" not in html and "&lt;script&gt;" in html
