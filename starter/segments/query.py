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

from starter.reports.segments import CPM_ACTIVE_DAYS, CPM_REVENUE_YEN, CPM_TENURE_DAYS, RFM_RECENCY_DAYS
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


# Buyers as of the moment, from the orders they had placed by then: the reports' own picture.
_BUYERS = """buyers AS (
    SELECT member_id,
           count(*) FILTER (WHERE is_main)        AS f,
           min(placed_at) FILTER (WHERE is_main)  AS first_at,
           max(placed_at) FILTER (WHERE is_main)  AS last_at,
           sum(revenue)                           AS revenue
    FROM orders
    WHERE NOT cancelled AND NOT is_sample AND placed_at <= {at}
    GROUP BY member_id
    HAVING count(*) FILTER (WHERE is_main) > 0
)"""

_RFM = """rfm AS (
    SELECT member_id, r, f,
           CASE WHEN r >= 4 AND f >= 4 THEN '優良' WHEN r >= 4 AND f = 1 THEN '新規'
                WHEN r >= 4 THEN '育成' WHEN r = 3 THEN '要注意' WHEN r = 2 THEN '離脱予備'
                ELSE '休眠' END AS segment
    FROM (SELECT member_id,
                 CASE {recency} ELSE 1 END AS r,
                 CASE WHEN f >= 6 THEN 5 WHEN f >= 4 THEN 4 ELSE f END AS f
          FROM buyers) scored
)"""

_CPM = f"""cpm AS (
    SELECT member_id,
           CASE WHEN f = 1 THEN '初回'
                WHEN last_at - first_at < interval '{CPM_TENURE_DAYS} days'
                    THEN CASE WHEN revenue >= {CPM_REVENUE_YEN} THEN '流行' ELSE 'よちよち' END
                ELSE CASE WHEN revenue >= {CPM_REVENUE_YEN} THEN '優良' ELSE 'コツコツ' END END
           || CASE WHEN {{at}} - last_at > interval '{CPM_ACTIVE_DAYS} days' THEN '離脱客' ELSE '客' END
           AS segment
    FROM buyers
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
        q.ctes["buyers"] = _BUYERS.format(at=q.at)
    if segment.rfm:
        recency = " ".join(f"WHEN {q.at} - last_at <= interval '{days} days' THEN {5 - i}"
                           for i, days in enumerate(RFM_RECENCY_DAYS))
        q.ctes["rfm"] = _RFM.format(recency=recency)
        names = q.param(list(segment.rfm), "text[]")
        q.where(f"m.member_id IN (SELECT member_id FROM rfm WHERE segment = ANY({names})"
                f" OR 'R' || r || 'F' || f = ANY({names}))")
    if segment.cpm:
        q.ctes["cpm"] = _CPM.format(at=q.at)
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
