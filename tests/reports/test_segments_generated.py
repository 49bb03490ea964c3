"""Segments over the generated shop (``tests.datasets``: 300 members, 15 months) match the
members picked out directly in Python from the same events, without SQL.

Facts are folded here as plainly as possible: an order is its first placement and counts
unless cancelled; F counts those with a main line; consent and reach are last-writer-wins
on (occurred_at, event_id); RFM and CPM use the reports' cut-offs. Stage and subscription
status come from the engine's own fold (``workflows.lifecycle.apply``) at ``UNTIL``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from activities import db
from starter.reports.segments import CPM_ACTIVE_DAYS, CPM_REVENUE_YEN, CPM_TENURE_DAYS, RFM_RECENCY_DAYS
from starter.segments import count, members_in
from tests import datasets
from tests.conftest import _with_database
from workflows.events import CONSENT_CHANNELS
from workflows.lifecycle import advance_clock, apply, new_member
from workflows.segments import Segment

JST = ZoneInfo("Asia/Tokyo")
START = datetime(2025, 1, 1, tzinfo=JST)
UNTIL = datetime(2026, 4, 1, tzinfo=JST)
MEMBERS, SEED = 300, 20250101  # the dashboard's shop (tests/reports/test_dashboard.py)
DAY = timedelta(days=1)


@dataclass
class Member:
    member_id: str
    stage: str = "prospect"
    subscription: str = "none"
    sales_channel: str = "online"
    consent: dict = field(default_factory=dict)  # channel → (stamp, granted)
    reach: dict = field(default_factory=dict)  # channel → (stamp, reachable)
    orders: dict = field(default_factory=dict)  # order_id → (placed_at, lines)
    cancelled: set = field(default_factory=set)
    channel_stamp: tuple = ()
    engine_contactable: set = field(default_factory=set)  # what the workflow's own fold routes to

    def counted(self) -> list[tuple[datetime, list]]:
        return [(at, lines) for oid, (at, lines) in self.orders.items() if oid not in self.cancelled]

    @property
    def mains(self) -> list[datetime]:
        return sorted(at for at, lines in self.counted() if any(line.role == "main" for line in lines))

    @property
    def f(self) -> int:
        return len(self.mains)

    @property
    def revenue(self) -> int:
        return sum(line.unit_price * line.quantity for _, lines in self.counted() for line in lines)

    @property
    def days_since(self) -> int | None:
        return (UNTIL - self.mains[-1]) // DAY if self.mains else None

    def skus(self) -> set[str]:
        return {line.sku for _, lines in self.counted() for line in lines}

    def channels(self, which: str) -> set[str]:
        reachable = {c for c, (_, on) in self.reach.items() if on}
        consented = {c for c, (_, on) in self.consent.items() if on}
        return {"reachable": reachable, "consented": consented, "contactable": reachable & consented}[which]

    def rfm(self) -> str | None:
        if not self.f:
            return None
        since = UNTIL - self.mains[-1]
        r = next((5 - i for i, d in enumerate(RFM_RECENCY_DAYS) if since <= d * DAY), 1)
        f = 5 if self.f >= 6 else 4 if self.f >= 4 else self.f
        return ("優良" if r >= 4 and f >= 4 else "新規" if r >= 4 and f == 1 else "育成" if r >= 4
                else "要注意" if r == 3 else "離脱予備" if r == 2 else "休眠")

    def cpm(self) -> str | None:
        if not self.f:
            return None
        first, last = self.mains[0], self.mains[-1]
        rich = self.revenue >= CPM_REVENUE_YEN
        kind = ("初回" if self.f == 1 else ("流行" if rich else "よちよち") if last - first < CPM_TENURE_DAYS * DAY
                else ("優良" if rich else "コツコツ"))
        return kind + ("離脱客" if UNTIL - last > CPM_ACTIVE_DAYS * DAY else "客")


def fold(events: list) -> Member:
    m = Member(events[0].member_id)
    state = new_member(m.member_id)
    for e in events:
        state = apply(state, e)
        stamp = (e.occurred_at, e.event_id)
        if e.type == "member_registered":
            if e.sales_channel is not None and stamp > m.channel_stamp:
                m.sales_channel, m.channel_stamp = e.sales_channel.value, stamp
            for channel, granted in (e.consent.given() if e.consent else {}).items():
                if channel not in m.consent or stamp > m.consent[channel][0]:
                    m.consent[channel] = (stamp, granted)
            for channel in ("email", "line", "sms", "push", "dm") if e.reachable is not None else ():
                if channel not in m.reach or stamp > m.reach[channel][0]:
                    m.reach[channel] = (stamp, channel in e.reachable)
        elif e.type == "consent_changed" and (e.channel not in m.consent or stamp > m.consent[e.channel][0]):
            m.consent[e.channel] = (stamp, e.granted)
        elif e.type == "order_placed":
            m.orders.setdefault(e.order_id, (e.occurred_at, e.lines))
        elif e.type == "order_cancelled":
            m.cancelled.add(e.order_id)
    state = advance_clock(state, UNTIL)
    m.stage, m.subscription = state.stage.value, state.subscription_status.value
    m.engine_contactable = {c.value for c in CONSENT_CHANNELS if state.can_reach(c)}
    return m


@pytest.fixture(scope="module")
def members() -> list[Member]:
    shop = datasets.generate(MEMBERS, SEED, START, arrivals_over=(UNTIL - START).days)
    return [fold([e for e in events if e.occurred_at <= UNTIL]) for events in shop
            if any(e.occurred_at <= UNTIL for e in events)]


@pytest.fixture(scope="module")
async def pool(database_server_url: str):
    name = f"goldenroute_segments_gen_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    pool = await db.create_pool(_with_database(database_server_url, name))
    await db.migrate(pool)
    await datasets.load(pool, datasets.generate(MEMBERS, SEED, START, arrivals_over=(UNTIL - START).days), UNTIL)
    yield pool
    await pool.close()
    admin = await asyncpg.connect(database_server_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


def _in(lo: int | None, hi: int | None) -> Callable[[int | None], bool]:
    return lambda v: v is not None and (lo is None or v >= lo) and (hi is None or v <= hi)


CASES: dict[str, tuple[dict, Callable[[Member], bool]]] = {
    "dormant_soon": ({"purchase_count": {"min": 2}, "days_since_last_purchase": {"min": 60, "max": 89},
                      "contactable": ["email", "line"]},
                     lambda m: m.f >= 2 and _in(60, 89)(m.days_since) and bool(m.channels("contactable") & {"email", "line"})),
    "koso_without_lacto": ({"bought": ["KOSO-30"], "never_bought": ["LACTO-30"], "sales_channel": "online",
                            "revenue": {"min": 10_000}},
                           lambda m: "KOSO-30" in m.skus() and "LACTO-30" not in m.skus()
                           and m.sales_channel == "online" and m.revenue >= 10_000),
    "rfm_lapsing_by_email": ({"rfm": ["要注意", "離脱予備"], "consented": ["email"]},
                             lambda m: m.rfm() in ("要注意", "離脱予備") and "email" in m.channels("consented")),
    "cpm_lapsed_by_post": ({"cpm": ["よちよち離脱客", "初回離脱客"], "reachable": ["dm"]},
                           lambda m: m.cpm() in ("よちよち離脱客", "初回離脱客") and "dm" in m.channels("reachable")),
    "dormant_or_stopped": ({"stage": ["dormant"], "subscription_status": ["paused", "cancelled"]},
                           lambda m: m.stage == "dormant" and m.subscription in ("paused", "cancelled")),
    "weekly_mailmag": ({"sales_channel": "online", "contactable": ["email", "line"]},
                       lambda m: m.sales_channel == "online" and bool(m.channels("contactable") & {"email", "line"})),
    "established_loyal": ({"stage": ["established"], "purchase_count": {"min": 6}, "bought": ["LACTO-30", "VITAMIN-C-30"]},
                          lambda m: m.stage == "established" and m.f >= 6 and bool(m.skus() & {"LACTO-30", "VITAMIN-C-30"})),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_a_segment_is_the_members_python_picks_from_the_events(pool, members, name):
    criteria, holds = CASES[name]
    expected = sorted(m.member_id for m in members if m.stage != "erased" and holds(m))
    assert expected, f"{name}: the generated shop should have such members"
    segment = Segment(description=name, **criteria)
    assert await members_in(pool, segment, as_of=UNTIL) == expected
    assert await count(pool, segment, as_of=UNTIL) == len(expected)


async def test_the_snapshot_agrees_with_the_plain_fold(pool, members):
    """What the segments read of the members table is what the events say."""
    rows = {r["member_id"]: r for r in await pool.fetch("SELECT * FROM members")}
    assert len(rows) == len(members)
    for m in members:
        row = rows[m.member_id]
        assert (row["purchase_count"], row["revenue"], row["stage"], row["sales_channel"]) == (
            m.f, m.revenue, m.stage, m.sales_channel), m.member_id


async def test_member_channels_agrees_with_the_plain_fold_and_the_workflows(pool, members):
    rows = {r["member_id"]: r for r in await pool.fetch("SELECT * FROM member_channels")}
    for m in members:
        row = rows[m.member_id]
        for which in ("reachable", "consented", "contactable"):
            assert set(row[which]) == m.channels(which), (m.member_id, which)
        assert set(row["contactable"]) == m.engine_contactable, m.member_id
