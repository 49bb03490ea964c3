"""A segment as one parameterised query over the read models (``members``, ``orders``,
``order_lines``, ``member_channels``): values travel as parameters, never in the SQL text.

Each criterion of ``workflows.segments.Segment`` is one condition on the members
snapshot ``m``; RFM and CPM classify members as of ``as_of`` exactly as ``report rfm``
and ``report cpm`` do (the same constants, the same cut-offs), so a report's row and a
segment made from it count the same members.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import asyncpg

from starter.reports.segments import RFM_SEGMENT_SQL, buyers_sql, cpm_segment_sql, rfm_f_sql, rfm_r_sql
from workflows.segments import Range, Segment


@dataclass
class _Query:
    """The conditions so far and their parameters ($1, $2, … in the order they were added)."""

    as_of: datetime
    params: list[Any] = field(default_factory=list)
    ctes: dict[str, str] = field(default_factory=dict)
    conditions: list[str] = field(default_factory=list)
    channels: bool = False  # joins member_channels c
    _as_of_param: str | None = None

    def param(self, value: Any, cast: str) -> str:
        self.params.append(value)
        return f"${len(self.params)}::{cast}"

    @property
    def at(self) -> str:
        """``as_of`` as a parameter, added once however often it is used."""
        if self._as_of_param is None:
            self._as_of_param = self.param(self.as_of, "timestamptz")
        return self._as_of_param

    def where(self, condition: str) -> None:
        self.conditions.append(condition)

    def between(self, column: str, bounds: Range | None) -> None:
        if bounds is None:
            return
        if bounds.min is not None:
            self.where(f"{column} >= {self.param(bounds.min, 'bigint')}")
        if bounds.max is not None:
            self.where(f"{column} <= {self.param(bounds.max, 'bigint')}")


# Buyers as of the moment, ranked and classed by the reports' own rules (starter.reports.segments).
_RFM = """rfm AS (
    SELECT member_id, r, f, {segment} AS segment
    FROM (SELECT member_id, {r} AS r, {f} AS f FROM buyers) scored
)"""

# A SKU is bought when a non-cancelled order has a line of it, whatever the line's role
# (order_lines, migration 011); sample requests are not orders bought.
_BOUGHT = """EXISTS (SELECT 1 FROM order_lines l
        WHERE l.member_id = m.member_id AND NOT l.cancelled AND l.sku = ANY({skus}))"""


def compile_segment(segment: Segment, as_of: datetime) -> _Query:
    q = _Query(as_of=as_of)
    q.where("m.stage <> 'erased'")
    if segment.stage:
        q.where(f"m.stage = ANY({q.param(list(segment.stage), 'text[]')})")
    if segment.subscription_status:
        q.where(f"m.subscription_status = ANY({q.param([s.value for s in segment.subscription_status], 'text[]')})")
    if segment.sales_channel:
        q.where(f"m.sales_channel = {q.param(segment.sales_channel.value, 'text')}")
    q.between("m.purchase_count", segment.purchase_count)
    q.between("m.revenue", segment.revenue)
    _days_since(q, segment.days_since_last_purchase)
    if segment.bought:
        q.where(_BOUGHT.format(skus=q.param(list(segment.bought), "text[]")))
    if segment.never_bought:
        q.where("NOT " + _BOUGHT.format(skus=q.param(list(segment.never_bought), "text[]")))
    if segment.rfm or segment.cpm:
        q.ctes["buyers"] = f"buyers AS (\n    {buyers_sql(q.at)}\n)"
    if segment.rfm:
        q.ctes["rfm"] = _RFM.format(segment=RFM_SEGMENT_SQL, r=rfm_r_sql(q.at), f=rfm_f_sql())
        names = q.param(list(segment.rfm), "text[]")
        q.where(f"m.member_id IN (SELECT member_id FROM rfm WHERE segment = ANY({names})"
                f" OR 'R' || r || 'F' || f = ANY({names}))")
    if segment.cpm:
        q.ctes["cpm"] = f"cpm AS (\n    SELECT member_id, {cpm_segment_sql(q.at)} AS segment\n    FROM buyers\n)"
        q.where(f"m.member_id IN (SELECT member_id FROM cpm WHERE segment = ANY({q.param(list(segment.cpm), 'text[]')}))")
    for name in ("reachable", "consented", "contactable"):
        channels = getattr(segment, name)
        if channels:
            q.channels = True
            q.where(f"coalesce(c.{name}, '{{}}') && {q.param(list(channels), 'text[]')}")
    return q


def _days_since(q: _Query, bounds: Range | None) -> None:
    """Whole days elapsed: at least N days is ``last ≤ as_of − N × 24 h``; at most N is
    ``last > as_of − (N + 1) × 24 h``. Hours, not calendar days, so no timezone enters."""
    if bounds is None:
        return
    q.where(f"m.last_purchase_at <= {q.at}")  # as of a past day, a later purchase is not yet made
    if bounds.min is not None:
        q.where(f"m.last_purchase_at <= {q.at} - {q.param(bounds.min, 'int')} * interval '24 hours'")
    if bounds.max is not None:
        q.where(f"m.last_purchase_at > {q.at} - ({q.param(bounds.max, 'int')} + 1) * interval '24 hours'")


def _sql(q: _Query, columns: str, tail: str = "") -> str:
    ctes = f"WITH {', '.join(q.ctes.values())}\n" if q.ctes else ""
    join = " LEFT JOIN member_channels c USING (member_id)" if q.channels else ""
    return f"{ctes}SELECT {columns}\nFROM members m{join}\nWHERE {' AND '.join(q.conditions)}{tail}"


def _now(as_of: datetime | None) -> datetime:
    if as_of is not None and as_of.tzinfo is None:
        raise ValueError("as_of needs a timezone offset")
    return as_of or datetime.now(timezone.utc)


def _limited(q: _Query, limit: int | None) -> str:
    return "\nORDER BY m.member_id" + (f" LIMIT {q.param(limit, 'bigint')}" if limit is not None else "")


async def members_in(pool: asyncpg.Pool | asyncpg.Connection, segment: Segment, *, limit: int | None = None,
                     as_of: datetime | None = None) -> list[str]:
    """The ids of the segment's members, in member id order (at most ``limit``), as of
    ``as_of`` (default now): the moment RFM, CPM and the days since the last purchase are read at."""
    q = compile_segment(segment, _now(as_of))
    sql = _sql(q, "m.member_id", _limited(q, limit))
    return [r["member_id"] for r in await pool.fetch(sql, *q.params)]


async def count(pool: asyncpg.Pool | asyncpg.Connection, segment: Segment, *, as_of: datetime | None = None) -> int:
    q = compile_segment(segment, _now(as_of))
    return await pool.fetchval(_sql(q, "count(*)"), *q.params)


SAMPLE_COLUMNS = ("member_id", "stage", "purchase_count", "last_purchase_at", "revenue", "contactable")


async def sample(pool: asyncpg.Pool | asyncpg.Connection, segment: Segment, limit: int, *,
                 as_of: datetime | None = None) -> list[asyncpg.Record]:
    """The first ``limit`` members (by id) with what ``segment show`` prints of them."""
    q = compile_segment(segment, _now(as_of))
    q.channels = True
    columns = ("m.member_id, m.stage, m.purchase_count, m.last_purchase_at, m.revenue,"
               " coalesce(c.contactable, '{}') AS contactable")
    return await pool.fetch(_sql(q, columns, _limited(q, limit)), *q.params)
