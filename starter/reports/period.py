"""The period and the "today" a report runs for, in the shop's timezone, and the shop's
configuration versions a report reads (the holdout share and variants in force).

The shop's timezone is its configuration's (``shop.timezone`` of the version applied
last): report dates and cohort months are read in it and every time a report prints
is shown in it. Before any version is applied, the built-in example shop's: Asia/Tokyo.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import asyncpg

from activities.shop_versions import ShopVersions, load
from workflows.rules import DEFAULT_RULES
from workflows.versions import EPOCH, Version

if TYPE_CHECKING:
    from starter.reports.registry import ReportSpec

DEFAULT_TIMEZONE = "Asia/Tokyo"  # the built-in example shop's (version 0)
# Version 0: the SPEC's rules, in force until the first applied version takes effect.
SPEC_VERSION = Version(0, EPOCH, DEFAULT_RULES)


class ReportError(ValueError):
    """A report cannot be run as asked (unknown name, bad period); the message says why."""


@dataclass(frozen=True)
class Shop:
    """What a report needs of the shop's configuration: its timezone, every version (oldest
    first, version 0 included) with the rules each decided under, and its broadcasts."""

    timezone: str = DEFAULT_TIMEZONE
    versions: tuple[Version, ...] = (SPEC_VERSION,)
    broadcasts: tuple[str, ...] = ()  # the names of the configuration applied last

    @property
    def latest(self) -> Version:
        return max(self.versions, key=lambda v: v.number)


async def read_shop(conn_or_pool: asyncpg.Connection | asyncpg.Pool) -> Shop:
    """The shop's configuration versions from PostgreSQL (none applied: the built-in shop)."""
    found, _ = await load(conn_or_pool)
    if not found:
        return Shop()
    return Shop(timezone=found[-1].config.shop.timezone,
                versions=(SPEC_VERSION, *ShopVersions(found).book_versions()),
                broadcasts=tuple(found[-1].config.broadcasts))


@dataclass(frozen=True)
class Window:
    """The period and the 'today' a report runs for (bounds as timestamps; upper exclusive),
    and the shop it runs for."""

    start: datetime | None
    end: datetime | None
    as_of: datetime
    shop: Shop = Shop()

    @property
    def timezone(self) -> str:
        return self.shop.timezone


def day_start(day: date, zone: str = DEFAULT_TIMEZONE) -> datetime:
    """00:00 of a calendar day in the shop's timezone."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(zone))


def shop_time(moment: datetime, zone: str = DEFAULT_TIMEZONE) -> datetime:
    """``moment`` on the shop's clock (``2026-12-02T00:49+00:00`` → ``2026-12-02T09:49+09:00``)."""
    return moment.astimezone(ZoneInfo(zone))


def window(spec: ReportSpec, start: date | None, end: date | None, as_of: datetime | None,
           now: datetime | None = None, shop: Shop = Shop()) -> Window:
    if start and end and start > end:
        raise ReportError(f"--from {start} is after --to {end}")
    if as_of is not None and as_of.tzinfo is None:
        raise ReportError("as_of needs a timezone offset")
    zone = shop.timezone
    upper = day_start(end + timedelta(days=1), zone) if end else None
    if as_of is None:
        as_of = upper if spec.as_of == "to" and upper is not None else (now or datetime.now(timezone.utc))
    return Window(start=day_start(start, zone) if start else None, end=upper, as_of=shop_time(as_of, zone),
                  shop=shop)
