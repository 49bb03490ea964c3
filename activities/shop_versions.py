"""The shop's configuration versions in PostgreSQL, and the worker's copy of them.

``goldenroute config apply`` inserts a version (``apply``); every worker reads them
all (``load``) into a ``ShopVersions`` (what the delivery activities render with:
the version a touch was decided under) and a ``workflows.versions.VersionBook``
(what member workflows decide with), and refreshes both well within the lead time
(``ConfigRefresher``). Why a lead time, and why a worker that cannot refresh stops
deciding rather than guessing: see ``workflows.versions``.

A version is immutable, so a refresh reads only the versions it has not seen
(numbers are dense and committed in order: ``apply`` holds a table lock until it
commits, so a reader that sees version n + 1 also sees n).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Iterable

import asyncpg
import structlog
from pydantic import ValidationError

from workflows.shop import ShopConfig
from workflows.versions import Version, VersionBook

if TYPE_CHECKING:
    from worker.shop_config import LoadedShop

log = structlog.get_logger(__name__)


class StoredVersionInvalid(RuntimeError):
    """A stored version no longer validates against this code's ShopConfig: the worker
    cannot know those rules, so it says which version and why instead of guessing."""


@dataclass(frozen=True)
class ShopVersion:
    number: int
    effective_at: datetime
    digest: str
    config: ShopConfig
    templates: dict[str, str]
    applied_at: datetime | None = None
    note: str | None = None


_COLUMNS = "version, digest, applied_at, effective_at, source, templates, note"


def _version(row: asyncpg.Record) -> ShopVersion:
    """The version as applied: from its source, not from ``body``. jsonb keeps a mapping's keys
    sorted, not in the file's order, and the order of a scenario's variants is the order of
    their slots (``policy.variant_of``): read back from ``body``, ``{letter = 3, call = 1}``
    would give members other variants than the file, ``goldenroute preview`` and the members
    decided before a refresh gave them. ``body`` is there for SQL (reports, listings)."""
    try:
        config = ShopConfig.model_validate(tomllib.loads(row["source"]))
    except (ValidationError, tomllib.TOMLDecodeError) as error:
        raise StoredVersionInvalid(f"config_versions version {row['version']} does not validate: {error}") from None
    return ShopVersion(
        number=row["version"], effective_at=row["effective_at"], digest=row["digest"], config=config,
        templates=json.loads(row["templates"]), applied_at=row["applied_at"], note=row["note"],
    )


class ShopVersions:
    """Every version this process has read, by number; one object shared by the refresher
    (which adds to it) and the activities (which read it)."""

    def __init__(self, versions: Iterable[ShopVersion] = ()) -> None:
        self._versions: dict[int, ShopVersion] = {}
        self._rules: dict[int, Version] = {}
        self.add(versions)

    def add(self, versions: Iterable[ShopVersion]) -> None:
        for version in versions:
            self._versions[version.number] = version
            self._rules[version.number] = Version(version.number, version.effective_at,
                                                  version.config.rules(version.number))

    def get(self, number: int) -> ShopVersion | None:
        return self._versions.get(number)

    def latest(self) -> ShopVersion | None:
        """The version applied last (in force or about to be); None before the first apply."""
        return self._versions[max(self._versions)] if self._versions else None

    def all(self) -> list[ShopVersion]:
        return [self._versions[n] for n in sorted(self._versions)]

    def book_versions(self) -> list[Version]:
        return [self._rules[n] for n in sorted(self._rules)]


async def load(pool: asyncpg.Pool | asyncpg.Connection, after: int = 0) -> tuple[list[ShopVersion], datetime]:
    """The versions numbered above ``after`` (all by default), and the database's now().

    now() is the transaction's start, no later than the snapshot the rows were read in:
    a version not read here was applied after it, so it takes effect after now() + lead.
    """
    async with _connection(pool) as conn, conn.transaction():
        now = await conn.fetchval("SELECT now()")
        rows = await conn.fetch(f"SELECT {_COLUMNS} FROM config_versions WHERE version > $1 ORDER BY version",
                                after)
    return [_version(row) for row in rows], now


async def fetch(pool: asyncpg.Pool | asyncpg.Connection, number: int) -> ShopVersion | None:
    """One version by its number (None for 0, the built-in example shop, and for one not applied)."""
    async with _connection(pool) as conn:
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM config_versions WHERE version = $1", number)
    return _version(row) if row is not None else None


_APPLY = f"""
WITH newest AS (SELECT max(version) AS version, max(effective_at) AS effective_at FROM config_versions),
     moment AS (SELECT clock_timestamp() AS at)
INSERT INTO config_versions (version, digest, applied_at, effective_at, source, body, templates, note)
SELECT coalesce(newest.version, 0) + 1, $1, moment.at,
       -- never before the version it follows: the newest applied is the one in force last
       greatest(moment.at + $2::interval, newest.effective_at), $3, $4::jsonb, $5::jsonb, $6
FROM newest, moment
RETURNING {_COLUMNS}
"""


async def apply(pool: asyncpg.Pool, loaded: LoadedShop, lead: timedelta,
                note: str | None = None) -> tuple[ShopVersion, bool]:
    """Apply a configuration: a new version effective ``lead`` from now, or (False) the
    newest version when it already is this configuration (the same digest)."""
    if lead < timedelta(0):
        raise ValueError(f"lead must not be negative: {lead}")
    async with pool.acquire() as conn, conn.transaction():
        # EXCLUSIVE: two applies take their numbers one after the other; readers go on.
        await conn.execute("LOCK TABLE config_versions IN EXCLUSIVE MODE")
        newest = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM config_versions ORDER BY version DESC LIMIT 1")
        if newest is not None and newest["digest"] == loaded.digest:
            return _version(newest), False
        row = await conn.fetchrow(
            _APPLY, loaded.digest, lead, loaded.source,
            json.dumps(loaded.config.model_dump(mode="json"), ensure_ascii=False),
            json.dumps(loaded.templates, ensure_ascii=False), note,
        )
    return _version(row), True


class ConfigRefresher:
    """Keeps one worker's ``VersionBook`` and ``ShopVersions`` current.

    After each refresh the book is confirmed until the database's now() + lead / 2: no
    version it has not read can take effect before then. A failed refresh leaves
    ``known_until`` where it was, so decisions past it wait (``BookNotCurrent``).
    """

    def __init__(self, pool: asyncpg.Pool, lead: timedelta, book: VersionBook | None = None,
                 shops: ShopVersions | None = None) -> None:
        self.pool = pool
        self.lead = lead
        # Nothing is confirmed before the first refresh: every moment is past known_until.
        self.book = book or VersionBook(known_until=datetime.min.replace(tzinfo=timezone.utc))
        self.shops = shops or ShopVersions()

    async def refresh(self) -> None:
        """Read the versions not read yet; raises when PostgreSQL cannot be read."""
        latest = self.shops.latest()
        found, now = await load(self.pool, after=latest.number if latest else 0)
        self.shops.add(found)
        for version in found:
            log.info("config.version_loaded", version=version.number,
                     effective_at=version.effective_at.isoformat(), digest=version.digest[:12])
        self.book.replace(self.shops.book_versions(), now + self.lead / 2)

    async def run(self, stop: asyncio.Event, every: timedelta) -> None:
        """Refresh every ``every`` until ``stop`` is set. A failure is logged and tried again
        at the next turn; the loop itself never ends on one (the book just goes stale)."""
        while not stop.is_set():
            try:
                async with asyncio.timeout(every.total_seconds()):
                    await stop.wait()
                return
            except TimeoutError:
                pass
            try:
                # A refresh slower than lead / 2 could not have kept the book current anyway.
                async with asyncio.timeout(self.lead.total_seconds() / 2):
                    await self.refresh()
            except Exception as error:  # noqa: BLE001 — any failure: the book keeps its known_until
                known = self.book.known_until
                log.warning("config.refresh_failed", error=str(error) or type(error).__name__,
                            error_type=type(error).__name__, known_until=known.isoformat() if known else None)


@contextlib.asynccontextmanager
async def _connection(pool: asyncpg.Pool | asyncpg.Connection):
    if isinstance(pool, asyncpg.Connection):
        yield pool
    else:
        async with pool.acquire() as conn:
            yield conn

