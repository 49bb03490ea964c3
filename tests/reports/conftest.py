"""Each report test gets its own fresh, migrated database: reports count every member,
so a test must not see the members other tests wrote.

A migrated template database is made once per session; every test clones it
(``CREATE DATABASE … TEMPLATE``), which is much faster than migrating anew.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from typing import AsyncIterator, Iterable

import asyncpg
import pytest

from activities import db
from activities.projection import write_events
from tests.conftest import _with_database
from workflows.events import MemberEvent
from workflows.projection import LoggedEvent, MemberSnapshot, ProjectionRequest
from workflows.touches import touch_key


@pytest.fixture(scope="session")
async def reports_template(database_server_url: str) -> AsyncIterator[str]:
    name = f"goldenroute_reports_tpl_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        pool = await db.create_pool(_with_database(database_server_url, name), max_size=1)
        await db.migrate(pool)
        await pool.close()
    finally:
        await admin.close()
    yield name
    admin = await asyncpg.connect(database_server_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await admin.close()


@pytest.fixture
async def report_database_url(database_server_url: str, reports_template: str) -> AsyncIterator[str]:
    """A fresh database with every migration applied, dropped after the test."""
    name = f"goldenroute_reports_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_server_url)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{reports_template}"')
    await admin.close()
    yield _with_database(database_server_url, name)
    admin = await asyncpg.connect(database_server_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture
async def report_pool(report_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(report_database_url, max_size=2)
    yield pool
    await pool.close()


_NO_SNAPSHOT = dict(stage="prospect", purchase_count=0, subscription_status="none", sales_channel="online",
                    registered_at=None, first_purchase_at=None, last_purchase_at=None, next_touch_at=None,
                    revenue=0)


async def write(pool: asyncpg.Pool, events: Iterable[MemberEvent]) -> None:
    """The event log as the member workflows write it (activities.projection.write_events)."""
    by_member: dict[str, list[MemberEvent]] = defaultdict(list)
    for event in events:
        by_member[event.member_id].append(event)
    for member_id, logged in by_member.items():
        request = ProjectionRequest(
            member_id=member_id, version=1,
            events=tuple(LoggedEvent(seq=i, event=e) for i, e in enumerate(logged, 1)),
            snapshot=MemberSnapshot(member_id=member_id, **_NO_SNAPSHOT),
        )
        assert await write_events(pool, request) == len(logged)


def touch(member_id: str, scenario: str, step: str, occurrence: str, outcome: str, planned_at: datetime, *,
          variant: str | None = None, channel: str | None = "email", reason: str | None = None) -> tuple:
    """One row of the touches ledger (as activities.delivery records it)."""
    return (touch_key(member_id, scenario, step, occurrence), member_id, scenario, step, occurrence,
            None if outcome in ("holdout", "cancelled", "expired") else channel, variant, outcome,
            reason or outcome, planned_at, planned_at)


async def write_touches(pool: asyncpg.Pool, rows: Iterable[tuple]) -> None:
    await pool.executemany(
        "INSERT INTO touches (idempotency_key, member_id, scenario, step, occurrence, channel, variant,"
        " outcome, reason, planned_at, decided_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        list(rows),
    )
