"""Segments over the read models, on real PostgreSQL: each criterion on ten hand-made members.

The members are loaded as the member workflows would have written them by ``UNTIL``
(``tests.datasets.load``: the engine's own fold makes the snapshot), and every
expected set below is worked out by hand from the events.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import asyncpg
import pytest

from activities import db
from starter.reports import run_report
from starter.segments import count, from_report, members_in
from starter.segments.query import compile_segment
from tests import datasets
from tests.conftest import _with_database
from tests.factories import JST, cancelled, days, event, order, registered, sample, subscription
from tests.reports.conftest import write
from workflows.events import parse_event
from workflows.segments import Segment

UNTIL = datetime(2026, 4, 1, tzinfo=JST)  # the segments' "now": every event is before it


def ago(n: float) -> datetime:
    return UNTIL - days(n)


def hand_made_members() -> list[list]:
    def lines(sku: str, price: int = 3980, role: str = "main", quantity: int = 1) -> dict:
        return {"sku": sku, "role": role, "quantity": quantity, "days_supply": 30, "unit_price": price}

    nyusan = lines("NYUSAN-30", 2980, "cross")
    return [
        # a: F2, last purchase 65 days ago; LINE and email; KOSO-30 ×2 → 7,960
        [registered("a", ago(130)), order("a", ago(120), "a1"), order("a", ago(65), "a2")],
        # b: F3, last purchase 89 days 12 hours ago (89 whole days, not dormant); email only;
        # NYUSAN-30 as a cross line of its 2nd order → 3 × 3,980 + 2,980 = 14,920
        [registered("b", ago(160), line=False, reachable=("email", "dm")), order("b", ago(150), "b1"),
         order("b", ago(120), "b2", extra_lines=[nyusan]), order("b", ago(89.5), "b3")],
        # c: F2, dormant (100 days); consents to LINE but has no LINE address: not contactable by it
        [registered("c", ago(210), email=False, reachable=("email",)), order("c", ago(200), "c1"),
         order("c", ago(100), "c2")],
        # d: 定期 (AOJIRU-30) active, F2, last purchase exactly 10 days ago; email only
        [registered("d", ago(50), line=False, reachable=("email",)),
         subscription("subscription_started", "d", ago(40), "d-sub", sku="AOJIRU-30", interval_days=30),
         event("order_placed", "d", ago(40), order_id="d1", subscription_id="d-sub", lines=[lines("AOJIRU-30", 3480)]),
         event("order_placed", "d", ago(10), order_id="d2", subscription_id="d-sub", lines=[lines("AOJIRU-30", 3480)])],
        # e: offline, 定期 paused after one delivery (F1, 70 days ago); DM only
        [registered("e", ago(80), line=False, email=False, sales_channel="offline", reachable=("dm",)),
         subscription("subscription_started", "e", ago(70), "e-sub", sku="AOJIRU-30", interval_days=30),
         event("order_placed", "e", ago(70), order_id="e1", subscription_id="e-sub", lines=[lines("AOJIRU-30", 3480)]),
         subscription("subscription_paused", "e", ago(50), "e-sub")],
        # f: a sample only (F0, stage sample): nothing bought
        [registered("f", ago(20), line=False, reachable=("email",)), sample("f", ago(20), "f-s")],
        # g: offline prospect, no consent at all, no address
        [event("member_registered", "g", ago(15), sales_channel="offline", consent={"dm": False})],
        # h: a cancelled COLLAGEN-30 order, then a trial of KOSO-30 (F0, stage trial)
        [registered("h", ago(31), line=False, reachable=("email",)),
         event("order_placed", "h", ago(30), order_id="h1", lines=[lines("COLLAGEN-30", 4980)]),
         cancelled("h", ago(29), "h1"), order("h", ago(25), "h2", role="trial", price=1980)],
        # i: erased: in no segment, whatever it bought
        [registered("i", ago(100)), order("i", ago(90), "i1"), event("member_erased", "i", ago(5))],
        # j: F4 established at 9,800 each (39,200: 流行); opted out of email 3 days ago
        [registered("j", ago(110)), *(order("j", ago(n), f"j{n}", price=9800) for n in (100, 70, 45, 5)),
         event("consent_changed", "j", ago(3), channel="email", granted=False)],
    ]


@pytest.fixture(scope="module")
async def shop(database_server_url, reports_template):
    """One database for the module: the tests only read it."""
    name = f"goldenroute_segments_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_server_url)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{reports_template}"')
    await admin.close()
    pool = await db.create_pool(_with_database(database_server_url, name), max_size=2)
    await datasets.load(pool, hand_made_members(), UNTIL)
    yield pool
    await pool.close()
    admin = await asyncpg.connect(database_server_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def ids(pool, **criteria) -> list[str]:
    return await members_in(pool, Segment(description="test", **criteria), as_of=UNTIL)


EVERYONE = ["a", "b", "c", "d", "e", "f", "g", "h", "j"]  # not i: erased


@pytest.mark.parametrize("criteria, expected", [
    ({}, EVERYONE),
    ({"stage": ["f2"]}, ["a", "d"]),  # c is F2 but dormant
    ({"stage": ["f2", "f3"]}, ["a", "b", "d"]),
    ({"stage": ["dormant"]}, ["c"]),
    ({"stage": ["sample", "trial", "prospect"]}, ["f", "g", "h"]),
    ({"stage": ["established"]}, ["j"]),
    ({"purchase_count": {"min": 2}}, ["a", "b", "c", "d", "j"]),
    ({"purchase_count": {"max": 1}}, ["e", "f", "g", "h"]),
    ({"purchase_count": {"min": 2, "max": 3}}, ["a", "b", "c", "d"]),
    ({"subscription_status": ["active"]}, ["d"]),
    ({"subscription_status": ["paused", "cancelled"]}, ["e"]),
    ({"subscription_status": ["none"]}, ["a", "b", "c", "f", "g", "h", "j"]),
    ({"bought": ["NYUSAN-30"]}, ["b"]),
    ({"bought": ["KOSO-30"]}, ["a", "b", "c", "h", "j"]),  # h: its trial line
    ({"bought": ["AOJIRU-30", "NYUSAN-30"]}, ["b", "d", "e"]),
    ({"bought": ["COLLAGEN-30"]}, []),  # h's order was cancelled
    ({"never_bought": ["KOSO-30"]}, ["d", "e", "f", "g"]),
    ({"never_bought": ["KOSO-30", "AOJIRU-30"]}, ["f", "g"]),
    ({"bought": ["KOSO-30"], "never_bought": ["NYUSAN-30"]}, ["a", "c", "h", "j"]),
    ({"days_since_last_purchase": {"min": 60, "max": 89}}, ["a", "b", "e"]),
    ({"days_since_last_purchase": {"min": 90}}, ["c"]),
    ({"days_since_last_purchase": {"max": 10}}, ["d", "j"]),  # d: exactly 10 days
    ({"days_since_last_purchase": {"max": 9}}, ["j"]),
    ({"revenue": {"min": 14_920}}, ["b", "j"]),
    ({"revenue": {"min": 1, "max": 7_960}}, ["a", "c", "d", "e", "h"]),  # h: 1,980 (its trial)
    ({"sales_channel": "offline"}, ["e", "g"]),
    ({"sales_channel": "online"}, ["a", "b", "c", "d", "f", "h", "j"]),
    ({"reachable": ["line"]}, ["a", "j"]),
    ({"consented": ["line"]}, ["a", "c", "j"]),
    ({"contactable": ["line"]}, ["a", "j"]),  # c consents to LINE without a LINE id
    ({"consented": ["email"]}, ["a", "b", "d", "f", "h"]),  # j opted out
    ({"reachable": ["email"]}, ["a", "b", "c", "d", "f", "h", "j"]),
    ({"contactable": ["email", "line"]}, ["a", "b", "d", "f", "h", "j"]),
    ({"contactable": ["dm"]}, ["a", "b", "e", "j"]),
    ({"consented": ["sms", "push"]}, []),
    ({"rfm": ["要注意"]}, ["a", "b", "e"]),  # 61–90 days: 65, 89.5, 70
    ({"rfm": ["離脱予備"]}, ["c"]),
    ({"rfm": ["育成", "優良"]}, ["d", "j"]),
    ({"rfm": ["R5F4"]}, ["j"]),
    ({"rfm": ["R3F2", "R3F3"]}, ["a", "b"]),
    ({"cpm": ["よちよち客"]}, ["a", "b", "d"]),
    ({"cpm": ["よちよち離脱客"]}, ["c"]),
    ({"cpm": ["初回客"]}, ["e"]),
    ({"cpm": ["流行客"]}, ["j"]),
    # 休眠予備軍 as examples/shop.toml defines it
    ({"purchase_count": {"min": 2}, "days_since_last_purchase": {"min": 60, "max": 89},
      "contactable": ["email", "line"]}, ["a", "b"]),
])
async def test_each_criterion_by_hand(shop, criteria, expected):
    assert await ids(shop, **criteria) == expected
    assert await count(shop, Segment(description="test", **criteria), as_of=UNTIL) == len(expected)


async def test_limit_takes_the_first_by_member_id(shop):
    assert await members_in(shop, Segment(description="all"), limit=3, as_of=UNTIL) == ["a", "b", "c"]
    assert await members_in(shop, Segment(description="all"), limit=0, as_of=UNTIL) == []


async def test_the_clock_moves_days_since_the_last_purchase(shop):
    segment = Segment(description="60–89", days_since_last_purchase={"min": 60, "max": 89})
    assert await members_in(shop, segment, as_of=UNTIL + days(1)) == ["a", "e"]  # b: 90.5 days
    assert await members_in(shop, segment, as_of=UNTIL - days(5)) == ["a", "b", "e"]  # a: 60 days to the second
    assert await members_in(shop, segment, as_of=UNTIL - days(5) - timedelta(seconds=1)) == ["b", "e"]


async def test_values_are_parameters_not_sql(shop):
    hostile = "x'); DROP TABLE members; --"
    q = compile_segment(Segment(description="t", bought=(hostile,), cpm=("初回客",)), UNTIL)
    assert hostile not in "".join(q.conditions) and hostile in q.params[0]
    assert await ids(shop, bought=[hostile]) == []
    assert await shop.fetchval("SELECT count(*) FROM members") == 10


async def test_member_channels_folds_reach_stamps_in_any_delivery_order(report_pool):
    """A registration carrying ``reach`` (the ingress's per-channel stamps) wins per channel on
    that stamp, not on when it arrived: an email removed later stays removed when the older
    registration arrives last; consent is last-writer-wins on the event's own stamp."""
    def reg(event_id: str, at: datetime, email: bool, stamp: datetime, consent: dict) -> dict:
        reach = {"email": {"reachable": email, "at": stamp.isoformat(), "event_id": event_id},
                 "line": {"reachable": True, "at": ago(30).isoformat(), "event_id": "r0"}}
        return {"type": "member_registered", "event_id": event_id, "member_id": "k", "occurred_at": at.isoformat(),
                "reachable": [c for c, r in reach.items() if r["reachable"]], "reach": reach, "consent": consent}

    newer = parse_event(reg("r2", ago(10), False, ago(10), {"email": False}))
    older = parse_event(reg("r1", ago(20), True, ago(20), {"email": True, "line": True}))
    await write(report_pool, [newer, older])  # the newer arrives first
    row = await report_pool.fetchrow("SELECT reachable, consented, contactable FROM member_channels WHERE member_id = 'k'")
    assert (row["reachable"], row["consented"], row["contactable"]) == (["line"], ["line"], ["line"])


async def test_a_report_row_as_a_segment_has_exactly_the_rows_members(shop):
    """Erased members excepted: the reports count what happened, i's purchase included (R3F1,
    初回客: 90 days to the second is still R3 and still active); a segment is for reaching members."""
    erased = {"R3F1": 1, "要注意": 1, "初回客": 1}
    rfm = await run_report(shop, "rfm", as_of=UNTIL)
    assert sum(r["members"] for r in rfm.rows) == 7
    for row in rfm.rows:
        cell = f"R{row['r']}F{row['f']}"
        segment, source = from_report("rfm", cell)
        assert source == f"rfm:{cell}"
        assert await count(shop, segment, as_of=UNTIL) == row["members"] - erased.get(cell, 0), row
    for name in {r["segment"] for r in rfm.rows}:
        segment, _ = from_report("rfm", name)
        expected = sum(r["members"] for r in rfm.rows if r["segment"] == name) - erased.get(name, 0)
        assert await count(shop, segment, as_of=UNTIL) == expected, name
    cpm = await run_report(shop, "cpm", as_of=UNTIL)
    for row in cpm.rows:
        segment, source = from_report("cpm", row["segment"])
        assert source == f"cpm:{row['segment']}"
        assert await count(shop, segment, as_of=UNTIL) == row["members"] - erased.get(row["segment"], 0), row
    champions, source = from_report("rfm", "CHAMPIONS")
    assert (champions.rfm, source) == (("優良",), "rfm:優良")
    assert await members_in(shop, champions, as_of=UNTIL) == ["j"]
