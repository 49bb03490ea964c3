"""Where segments are kept, and how a row of a report becomes one.

A name is looked up in this order: the ``segments`` table (saved with ``segment save`` or
``segment from-report … --save``), then the ``[segments]`` of the shop configuration
applied last (``config_versions``), then a shop file given with ``--config``. The first
that has the name wins; ``segment list`` shows what a name hides.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import asyncpg
from pydantic import ValidationError

from activities.shop_versions import fetch
from workflows.segments import (
    CPM_CLASSES, RFM_CELL, RFM_SEGMENTS, SEGMENT_NAME, Segment, segment_problems, validation_problems,
)
from worker.shop_config import LoadedShop
from workflows.shop import ShopConfig


class SegmentError(ValueError):
    """A segment that cannot be used or saved as asked; ``problems`` names each field."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class Found:
    name: str
    segment: Segment
    origin: str  # "database (rfm:優良)", "configuration version 3", "file examples/shop.toml"


def check_name(name: str) -> None:
    if not re.match(SEGMENT_NAME, name):
        raise SegmentError(f"segments.{name}: a segment name is a-z, 0-9 and _, starting with a letter, "
                           "at most 64 characters")


def parse(name: str, definition: dict) -> Segment:
    """A definition as stored or typed; every problem names ``segments.NAME.field``."""
    check_name(name)
    try:
        return Segment.model_validate(definition)
    except ValidationError as error:
        raise SegmentError(validation_problems(error, f"segments.{name}")) from None


async def _saved(pool: asyncpg.Pool) -> list[Found]:
    rows = await pool.fetch("SELECT name, definition, source FROM segments ORDER BY name")
    return [Found(r["name"], parse(r["name"], json.loads(r["definition"])), f"database ({r['source']})")
            for r in rows]


async def latest_config(pool: asyncpg.Pool) -> tuple[int, ShopConfig] | None:
    """The shop configuration applied last (in force or about to be), with its number."""
    number = await pool.fetchval("SELECT max(version) FROM config_versions")
    version = await fetch(pool, number) if number else None
    return (version.number, version.config) if version else None


def _configured(config: ShopConfig | None, origin: str) -> list[Found]:
    return [Found(name, segment, origin) for name, segment in (config.segments if config else {}).items()]


async def every(pool: asyncpg.Pool, shop_file: LoadedShop | None = None) -> list[tuple[Found, Found | None]]:
    """Every segment in lookup order, each with the one of the same name that hides it (or None)."""
    latest = await latest_config(pool)
    sources = [await _saved(pool),
               _configured(latest[1] if latest else None, f"configuration version {latest[0]}" if latest else ""),
               _configured(shop_file.config if shop_file else None, f"file {shop_file.path if shop_file else ''}")]
    first: dict[str, Found] = {}
    listed = []
    for found in (f for source in sources for f in source):
        listed.append((found, first.get(found.name)))
        first.setdefault(found.name, found)
    return listed


async def lookup(pool: asyncpg.Pool, name: str, shop_file: LoadedShop | None = None) -> Found:
    for found, hidden_by in await every(pool, shop_file):
        if found.name == name and hidden_by is None:
            return found
    raise LookupError(f"no segment {name!r}: not saved in the database, not in the configuration applied last"
                      + (f", not in {shop_file.path}" if shop_file else ", and no --config FILE given")
                      + " (`goldenroute segment list`)")


async def catalogue_problems(pool: asyncpg.Pool, name: str, segment: Segment) -> list[str]:
    """SKUs the configuration applied last does not sell (none applied: nothing to check)."""
    latest = await latest_config(pool)
    return segment_problems(name, segment, latest[1].catalogue) if latest else []


async def save(pool: asyncpg.Pool, name: str, segment: Segment, source: str, *, replace: bool = False) -> None:
    check_name(name)
    problems = await catalogue_problems(pool, name, segment)
    if problems:
        raise SegmentError(problems)
    definition = segment.model_dump_json(exclude_none=True)
    saved = await pool.fetchval(
        "INSERT INTO segments (name, definition, source) VALUES ($1, $2::jsonb, $3)"
        " ON CONFLICT (name) DO UPDATE SET definition = EXCLUDED.definition, source = EXCLUDED.source,"
        " updated_at = now() WHERE $4 RETURNING 1", name, definition, source, replace)
    if saved is None:
        raise SegmentError(f"segments.{name}: already saved (--replace to overwrite it)")


async def delete(pool: asyncpg.Pool, name: str) -> bool:
    return await pool.fetchval("DELETE FROM segments WHERE name = $1 RETURNING 1", name) is not None


# --- a row of a report as a segment -------------------------------------------------------

# report rfm's segments in the names RFM analyses usually give them, for typing in a terminal.
RFM_ALIASES = {"champions": "優良", "new": "新規", "promising": "育成", "need_attention": "要注意",
               "about_to_sleep": "離脱予備", "hibernating": "休眠"}
_RFM_MEANING = {"優良": "60日以内に購入・4回以上", "新規": "60日以内の初回購入", "育成": "60日以内に購入・2〜3回",
                "要注意": "最終購入から61〜90日", "離脱予備": "最終購入から91〜180日", "休眠": "最終購入から181日以上"}
REPORTS = ("rfm", "cpm")


def from_report(report: str, row: str) -> tuple[Segment, str]:
    """The segment of one row of ``report rfm`` (a segment, or a cell ``R5F4``) or ``report cpm``
    (a class), and its source (``rfm:優良``). Its members are the row's as of the moment it is read."""
    if report == "rfm":
        key = row.strip()
        name = RFM_ALIASES.get(key.lower().replace("-", "_"), key)
        if RFM_CELL.match(name.upper()):
            name = name.upper()
            r, f = RFM_CELL.match(name).groups()
            description = f"RFM R{r}F{f} (report rfm の r = {r}, f = {f} の行)"
        elif name in RFM_SEGMENTS:
            description = f"RFM {name} ({_RFM_MEANING[name]})"
        else:
            raise SegmentError(f"report rfm has no row {row!r}: a segment ({', '.join(RFM_SEGMENTS)}; "
                               f"or {', '.join(RFM_ALIASES)}) or a cell such as R5F4")
        return Segment(description=description, rfm=(name,)), f"rfm:{name}"
    if report == "cpm":
        if row not in CPM_CLASSES:
            raise SegmentError(f"report cpm has no row {row!r}: one of {', '.join(CPM_CLASSES)}")
        return Segment(description=f"CPM {row}", cpm=(row,)), f"cpm:{row}"
    raise SegmentError(f"segments come from report {' or '.join(REPORTS)}, not {report!r}")

