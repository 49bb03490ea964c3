"""Configuration versions in real PostgreSQL: apply, load, the worker's book and its refresh.

Each test gets a fresh, migrated database: versions are numbered per database, and a
test's versions must not become another test's (the reports read the shop's timezone
from them).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import AsyncIterator

import asyncpg
import pytest
import structlog

from activities import db
from activities.shop_versions import (
    ConfigRefresher, ShopVersions, StoredVersionInvalid, apply, fetch, load,
)
from tests.conftest import _with_database
from worker.shop_config import LoadedShop, parse_shop_config
from workflows.policy import variant_of
from workflows.versions import BookNotCurrent

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE = (EXAMPLES / "shop.toml").read_text(encoding="utf-8")
MINUTE = timedelta(minutes=1)


def shop(text: str = EXAMPLE) -> LoadedShop:
    return parse_shop_config(text, "shop.toml", EXAMPLES)


def changed(text: str = EXAMPLE, *, send_time: str = "11:00", holdout: int | None = None) -> LoadedShop:
    text = text.replace('send_time = "10:00"', f'send_time = "{send_time}"')
    if holdout is not None:
        text = text.replace("holdout_percent = 10", f"holdout_percent = {holdout}")
    return shop(text + "\n[scenarios.S06]\nenabled = false\n")


@pytest.fixture
async def versions_url(database_server_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database of its own, dropped after the test."""
    name = f"goldenroute_versions_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = _with_database(database_server_url, name)
    pool = await db.create_pool(url, max_size=1)
    await db.migrate(pool)
    await pool.close()
    yield url
    admin = await asyncpg.connect(database_server_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture
async def versions_pool(versions_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(versions_url, max_size=10)
    yield pool
    await pool.close()


async def test_the_same_configuration_twice_is_one_version(versions_pool):
    first, created = await apply(versions_pool, shop(), MINUTE, note="first")
    again, created_again = await apply(versions_pool, shop(), MINUTE, note="again")
    assert (created, created_again) == (True, False)
    assert again == first and first.number == 1 and first.note == "first"
    assert await versions_pool.fetchval("SELECT count(*) FROM config_versions") == 1
    assert first.config == shop().config and first.templates == shop().templates  # stored as validated


async def test_a_changed_configuration_is_the_next_version_a_lead_time_later(versions_pool):
    v1, _ = await apply(versions_pool, shop(), MINUTE)
    v2, created = await apply(versions_pool, changed(), timedelta(seconds=90))
    assert created and v2.number == 2 and v2.digest != v1.digest
    assert v2.effective_at >= v2.applied_at + timedelta(seconds=90)
    assert v2.effective_at >= v1.effective_at
    assert (v2.config.policy.send_time.hour, v2.config.scenarios["S06"].enabled) == (11, False)
    # Back to the first file: a new version again (the newest is what counts), not version 1.
    v3, created = await apply(versions_pool, shop(), MINUTE)
    assert created and v3.number == 3 and v3.digest == v1.digest


async def test_a_later_version_never_takes_effect_before_an_earlier_one(versions_pool):
    v1, _ = await apply(versions_pool, shop(), timedelta(hours=1))
    v2, _ = await apply(versions_pool, changed(), MINUTE)  # a shorter lead than v1 had
    assert v2.effective_at == v1.effective_at  # v2 replaces v1 from the moment v1 would start


async def test_versions_are_immutable(versions_pool):
    await apply(versions_pool, shop(), MINUTE)
    for statement in ("UPDATE config_versions SET note = 'edited'", "DELETE FROM config_versions"):
        with pytest.raises(asyncpg.RaiseError, match="immutable"):
            await versions_pool.execute(statement)


async def test_the_refreshed_book_gives_each_moment_its_version(versions_pool):
    v1, _ = await apply(versions_pool, shop(), timedelta(seconds=1))
    v2, _ = await apply(versions_pool, changed(), timedelta(seconds=2))
    # A lead far longer than the applies' keeps the whole of both inside the book's horizon.
    refresher = ConfigRefresher(versions_pool, lead=timedelta(hours=1))
    await refresher.refresh()
    found, now = await load(versions_pool)
    assert [v.number for v in found] == [1, 2]
    book = refresher.book
    assert now + timedelta(minutes=29) < book.known_until <= now + timedelta(minutes=31)
    assert book.at(v1.effective_at - timedelta(microseconds=1)).number == 0  # the SPEC's defaults
    assert book.at(v1.effective_at).number == 1
    assert book.at(v2.effective_at - timedelta(microseconds=1)).number == 1
    current = book.at(v2.effective_at)
    assert current.number == 2 and current.rules.version == 2
    assert current.rules.policy.send_hour == 11 and not current.rules.step_enabled("S06", "upsell")
    assert book.at(v2.effective_at).rules == v2.config.rules(2)
    # What the delivery activities read: the same versions, by number.
    shops = refresher.shops
    assert (shops.get(1).digest, shops.latest().number, shops.get(0), shops.get(3)) == (v1.digest, 2, None, None)
    assert [v.number for v in shops.all()] == [1, 2] and [v.number for v in shops.book_versions()] == [1, 2]


async def test_a_refresh_reads_only_new_versions_into_the_same_book(versions_pool):
    refresher = ConfigRefresher(versions_pool, lead=timedelta(hours=1))
    book, shops = refresher.book, refresher.shops
    await refresher.refresh()
    assert [v.number for v in book.versions] == [0] and shops.latest() is None
    v1, _ = await apply(versions_pool, shop(), timedelta(seconds=1))
    before = book.known_until
    await refresher.refresh()
    assert refresher.book is book and refresher.shops is shops
    assert [v.number for v in book.versions] == [0, 1] and book.known_until > before
    assert shops.get(1) == v1


async def test_a_book_that_cannot_be_refreshed_stops_deciding_past_what_it_knows(versions_url):
    pool = await db.create_pool(versions_url, max_size=2)
    refresher = ConfigRefresher(pool, lead=timedelta(seconds=60))
    await refresher.refresh()
    known = refresher.book.known_until
    refresher.book.at(known)  # up to it: answered
    await pool.close()  # PostgreSQL out of reach
    with pytest.raises(asyncpg.InterfaceError):
        await refresher.refresh()
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        running = asyncio.create_task(refresher.run(stop, timedelta(milliseconds=20)))
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.wait_for(running, 5)
    failures = [e for e in logs if e["event"] == "config.refresh_failed"]
    assert len(failures) >= 2  # logged each turn, and the loop went on
    assert failures[0]["known_until"] == known.isoformat() and failures[0]["error_type"] == "InterfaceError"
    assert refresher.book.known_until == known
    with pytest.raises(BookNotCurrent):
        refresher.book.at(known + timedelta(microseconds=1))
    refresher.pool = await db.create_pool(versions_url, max_size=2)  # reachable again
    try:
        await refresher.refresh()
    finally:
        await refresher.pool.close()
    assert refresher.book.known_until > known
    refresher.book.at(known + timedelta(microseconds=1))  # answered again


async def test_a_version_decides_as_its_file_does_variant_order_included(versions_pool):
    """jsonb sorts a mapping's keys; variants take their slots by name, so neither storage nor
    reordering the file moves a member to another variant."""
    loaded = shop(EXAMPLE + "\n[scenarios.S06]\nvariants = { letter = 3, call = 1 }\n")
    await apply(versions_pool, loaded, MINUTE)
    refresher = ConfigRefresher(versions_pool, lead=timedelta(hours=1))
    await refresher.refresh()
    stored = refresher.book.get(1).rules
    assert stored.variants("S06", ()) == loaded.config.rules(1).variants("S06", ()) == (("call", 1), ("letter", 3))
    members = [f"m-{i}" for i in range(40)]
    assert [variant_of(m, "S06", stored) for m in members] == [variant_of(m, "S06", loaded.config.rules(1))
                                                              for m in members]


async def test_concurrent_applies_get_distinct_numbers(versions_pool):
    files = [changed(send_time=f"{hour:02d}:00") for hour in range(8, 16)]
    applied = await asyncio.gather(*(apply(versions_pool, f, MINUTE) for f in files))
    numbers = sorted(v.number for v, created in applied if created)
    assert numbers == list(range(1, 9))
    by_number = sorted((v for v, _ in applied), key=lambda v: v.number)
    assert [v.applied_at for v in by_number] == sorted(v.applied_at for v in by_number)
    assert [v.effective_at for v in by_number] == sorted(v.effective_at for v in by_number)


async def test_a_stored_version_that_no_longer_validates_is_named(versions_pool):
    await apply(versions_pool, shop(), MINUTE)
    await versions_pool.execute(
        "INSERT INTO config_versions (version, digest, effective_at, source, body, templates)"
        " VALUES (2, 'x', clock_timestamp() + interval '1 minute', '', '{\"shop\": {}}', '{}')")
    assert (await fetch(versions_pool, 1)).number == 1
    with pytest.raises(StoredVersionInvalid, match="config_versions version 2"):
        await load(versions_pool)
    refresher = ConfigRefresher(versions_pool, lead=MINUTE, shops=ShopVersions())
    with pytest.raises(StoredVersionInvalid):
        await refresher.refresh()
