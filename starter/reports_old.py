"""The marketers' reports (SPEC §6): every report's SQL in one place.

Each report is one query over the read-model views of migration 004 (``orders``,
``main_purchases``, ``subscriptions`` …) and the ``touches`` table; PostgreSQL does
the counting, Python only passes parameters and renders the (few) result rows as
an aligned text table, JSON or CSV.

Dates. ``--from`` / ``--to`` are calendar dates in the shop's timezone
(``REPORT_TIMEZONE``), both inclusive: ``start`` is 00:00 of the first day and the
upper bound is 00:00 of the day after ``end``. Months of cohorts are months in the
same timezone. ``as_of`` (the "today" of RFM, CPM and LTV) defaults to now — for
RFM and CPM to the end of ``--to`` when it is given; ``--from`` has no part in them.

The scenario KPI definitions (``converts_on``, ``kpi_days``, names) come from
``workflows.scenarios.TEMPLATES`` and are passed into the SQL as arrays, so the
templates stay the single source.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Literal
from zoneinfo import ZoneInfo

import asyncpg

from workflows.policy import PolicyConfig
from workflows.scenarios import TEMPLATES

# The shop's timezone: report dates and cohort months are read in it.
REPORT_TIMEZONE = "Asia/Tokyo"

# --- RFM (rfm) -------------------------------------------------------------------------
# R from the days since the latest main purchase: ≤ 30 → 5, ≤ 60 → 4, ≤ 90 → 3, ≤ 180 → 2, else 1.
RFM_RECENCY_DAYS = (30, 60, 90, 180)

# --- CPM (顧客ポートフォリオ・マネジメント) ---------------------------------------------
# The usual CPM cut-offs for a single-product shop, as named constants:
# - a member is 離脱 (lapsed) when the latest main purchase is more than CPM_ACTIVE_DAYS
#   before as_of — the same 90 days after which the lifecycle calls a member dormant;
# - tenure (在籍期間) = days from the first to the latest main purchase; CPM_TENURE_DAYS
#   separates the young (よちよち / 流行) from the long-standing (コツコツ / 優良);
# - cumulative revenue (累計購入金額, every non-cancelled order) of CPM_REVENUE_YEN or
#   more makes 流行 (young) or 優良 (long-standing); below it よちよち / コツコツ.
# F = 1 is 初回客 whatever its tenure and revenue.
CPM_ACTIVE_DAYS = 90
CPM_TENURE_DAYS = 300
CPM_REVENUE_YEN = 30_000
CPM_SEGMENTS = ("初回客", "よちよち客", "コツコツ客", "流行客", "優良客",
                "初回離脱客", "よちよち離脱客", "コツコツ離脱客", "流行離脱客", "優良離脱客")

# --- 定期フロー / LTV -------------------------------------------------------------------
SUBSCRIPTION_DELIVERIES = 12  # continuation shown at delivery 1 … 12
LTV_DAYS = tuple(range(0, 361, 30))  # day_0, day_30, …, day_360

# 95 % two-sided normal quantile, for the lift's confidence interval.
Z95 = 1.96


class ReportError(ValueError):
    """A report cannot be run as asked (unknown name, bad period); the message says why."""


# --- the reports' SQL ------------------------------------------------------------------------


def _bucket_sql(*parts: str) -> str:
    """``workflows.policy.bucket`` in SQL: the first 8 bytes of sha256("a:b:c"), unsigned, mod 100.

    Used only for entries none of whose touches reached the holdout / variant decision
    (they expired first): the deterministic hash tells which group they were in.
    """
    joined = " || ':' || ".join(parts)
    return (f"(((('x' || encode(substr(sha256(convert_to({joined}, 'UTF8')), 1, 8), 'hex'))"
            f"::bit(64)::bigint::numeric + 18446744073709551616) % 18446744073709551616) % 100)::int")


# An *entry* is a distinct (member, scenario, occurrence) in touches; its moment is the
# earliest planned_at of its touches (--from/--to filter on it). An entry whose touches
# were all `cancelled` is left out: its exit (the conversion itself, a cancelled order, an
# erasure) came before its first step was due, so the scenario never acted on it — in
# either group. (S11, for one, records such an entry for every purchase followed by
# another within 90 days: counting them would drown the dormant members it is about.)
#
# Group (intention to treat). The policy decides holdout per member and scenario by a
# stable hash *before* any channel rule, but *after* the cancel (exit) and expiry rules.
# So: an entry with a `holdout` touch is in the holdout group; one with a `sent` or
# `suppressed` touch is in treatment; one whose touches all expired (or expired and were
# cancelled) before any step was decided gets the group the policy's hash gives it
# (bucket < holdout percent). Classifying entries by "all touches holdout" instead would
# move every holdout member with a cancelled later step (an early converter) into
# treatment and inflate the lift. Holdout touches carry no variant, so a scenario's
# holdout group is the shared control of each of its variants (each variant row shows
# it, so entered = the variant's treatment entries + the whole holdout); a treatment
# entry without a recorded variant gets the one the policy's variant hash gives.
#
# touched = treatment entries with at least one `sent` touch. Converted: the member had
# the scenario's converts_on within (moment, moment + kpi_days]: main_purchase = a
# non-cancelled order with a main line; cross_purchase = a non-cancelled order with a
# cross line; subscription_* = that event. rate = converted / treatment entries,
# holdout_rate = converted / holdout entries, lift = rate − holdout_rate with a 95 %
# interval for a difference of two proportions by Newcombe's hybrid score method
# (Wilson intervals (l, u) of each rate: lift − √((p1−l1)² + (u2−p2)²) …
# lift + √((u1−p1)² + (p2−l2)²)). Unlike the textbook normal approximation it stays
# honest for the small or all-or-nothing holdout groups a 10 % control gives a young
# scenario (1 member, 0 of 17 converted). NULL when a group is empty.
SCENARIOS_SQL = f"""
WITH kpi AS (
    SELECT * FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::int[])
        AS k(scenario, name, kpi, converts_on, kpi_days)
),
variants AS (  -- (scenario, variant, index, number of variants); '-' with n = 0 when none
    SELECT * FROM unnest($9::text[], $10::text[], $11::int[], $12::int[]) AS v(scenario, variant, idx, n)
),
entries AS (
    SELECT t.member_id, t.scenario, t.occurrence,
           min(t.planned_at)                                AS moment,
           bool_or(t.outcome = 'holdout')                   AS held_out,
           bool_or(t.outcome IN ('sent', 'suppressed'))     AS treated,
           bool_or(t.outcome = 'sent')                      AS touched,
           min(t.variant)                                   AS variant
    FROM touches t
    WHERE t.scenario = ANY($4::text[])
    GROUP BY t.member_id, t.scenario, t.occurrence
    HAVING bool_or(t.outcome <> 'cancelled')
       AND ($1::timestamptz IS NULL OR min(t.planned_at) >= $1::timestamptz)
       AND ($2::timestamptz IS NULL OR min(t.planned_at) < $2::timestamptz)
),
assigned AS (
    SELECT e.member_id, e.scenario, e.moment, e.touched,
           CASE WHEN e.held_out THEN true
                WHEN e.treated THEN false
                ELSE {_bucket_sql("e.member_id", "e.scenario", "'holdout'")} < $3::int
           END AS holdout,
           coalesce(e.variant, v.variant, '-') AS arm
    FROM entries e
    LEFT JOIN variants v
           ON v.scenario = e.scenario AND v.n > 0
          AND v.idx = {_bucket_sql("e.member_id", "e.scenario", "'variant'")} % v.n
),
conversions AS (  -- per member and kind, every moment it happened
    SELECT member_id, kind, array_agg(at) AS ats
    FROM (
        SELECT member_id, 'main_purchase' AS kind, placed_at AS at FROM main_purchases
        UNION ALL
        SELECT member_id, 'cross_purchase', placed_at FROM orders
        WHERE has_cross AND NOT cancelled AND NOT is_sample
        UNION ALL
        SELECT member_id, type, occurred_at FROM member_events
        WHERE type IN ('subscription_started', 'subscription_resumed', 'subscription_cancelled')
    ) c
    GROUP BY member_id, kind
),
outcomes AS (
    SELECT a.scenario, a.arm, a.holdout, a.touched,
           coalesce((SELECT bool_or(at > a.moment AND at <= a.moment + make_interval(days => k.kpi_days))
                     FROM unnest(c.ats) AS at), false) AS converted
    FROM assigned a
    JOIN kpi k USING (scenario)
    LEFT JOIN conversions c ON c.member_id = a.member_id AND c.kind = k.converts_on
),
treatment AS (
    SELECT scenario, arm, count(*) AS n, count(*) FILTER (WHERE touched) AS touched,
           count(*) FILTER (WHERE converted) AS converted
    FROM outcomes WHERE NOT holdout GROUP BY scenario, arm
),
control AS (
    SELECT scenario, count(*) AS n, count(*) FILTER (WHERE converted) AS converted
    FROM outcomes WHERE holdout GROUP BY scenario
),
arms AS (  -- the declared variants, and any other recorded in touches
    SELECT scenario, variant AS arm FROM variants
    UNION
    SELECT scenario, arm FROM treatment
),
measured AS (
    SELECT k.scenario, k.name, a.arm, k.kpi, k.kpi_days,
           coalesce(t.n, 0) AS n1, coalesce(t.touched, 0) AS touched, coalesce(t.converted, 0) AS x1,
           coalesce(c.n, 0) AS n2, coalesce(c.converted, 0) AS x2,
           t.converted::float8 / nullif(t.n, 0) AS p1,
           c.converted::float8 / nullif(c.n, 0) AS p2
    FROM kpi k
    JOIN arms a USING (scenario)
    LEFT JOIN treatment t ON t.scenario = k.scenario AND t.arm = a.arm
    LEFT JOIN control c ON c.scenario = k.scenario
),
wilson AS (  -- the Wilson score interval of each group's rate
    SELECT *,
           (p1 + z2 / (2 * n1)) / (1 + z2 / n1) - {Z95} * sqrt(p1 * (1 - p1) / n1 + z2 / (4 * n1 * n1)) / (1 + z2 / n1) AS l1,
           (p1 + z2 / (2 * n1)) / (1 + z2 / n1) + {Z95} * sqrt(p1 * (1 - p1) / n1 + z2 / (4 * n1 * n1)) / (1 + z2 / n1) AS u1,
           (p2 + z2 / (2 * n2)) / (1 + z2 / n2) - {Z95} * sqrt(p2 * (1 - p2) / n2 + z2 / (4 * n2 * n2)) / (1 + z2 / n2) AS l2,
           (p2 + z2 / (2 * n2)) / (1 + z2 / n2) + {Z95} * sqrt(p2 * (1 - p2) / n2 + z2 / (4 * n2 * n2)) / (1 + z2 / n2) AS u2
    FROM (SELECT *, {Z95} * {Z95} AS z2 FROM measured WHERE n1 > 0 AND n2 > 0) m
),
lifted AS (
    SELECT m.*, m.p1 - m.p2 AS lift,
           m.p1 - m.p2 - sqrt((w.p1 - w.l1) ^ 2 + (w.u2 - w.p2) ^ 2) AS ci_low,
           m.p1 - m.p2 + sqrt((w.u1 - w.p1) ^ 2 + (w.p2 - w.l2) ^ 2) AS ci_high
    FROM measured m
    LEFT JOIN wilson w ON w.scenario = m.scenario AND w.arm = m.arm
)
SELECT scenario, name, arm AS variant, kpi, kpi_days AS window_days,
       (n1 + n2)::int AS entered, n2::int AS holdout, touched::int AS touched, x1::int AS converted,
       round(p1::numeric, 4)::float8 AS rate,
       x2::int AS holdout_converted,
       round(p2::numeric, 4)::float8 AS holdout_rate,
       round(lift::numeric, 4)::float8 AS lift,
       round(ci_low::numeric, 4)::float8 AS lift_ci_low,
       round(ci_high::numeric, 4)::float8 AS lift_ci_high
FROM lifted
ORDER BY scenario, arm
"""

FUNNEL_STEPS = (
    ("sample_or_trial", "サンプル・お試し"),
    ("f1", "F1 初回購入"),
    ("f2", "F2 2回目"),
    ("f3", "F3 3回目"),
    ("established", "定着 (F4+)"),
)

# The golden route: members (of the cohort: first event within --from/--to) who ever
# reached each step. sample_or_trial = a non-cancelled sample request or trial-only
# order; f1 … established = the 1st … 4th main purchase. from_previous = members who
# reached the previous step and then this one (for f1: the first main purchase at or
# after the first sample/trial); rate = from_previous / members of the previous step;
# median_days = median days between the two moments over those members.
FUNNEL_SQL = """
WITH cohort AS (
    SELECT member_id FROM member_events
    GROUP BY member_id
    HAVING ($1::timestamptz IS NULL OR min(occurred_at) >= $1::timestamptz)
       AND ($2::timestamptz IS NULL OR min(occurred_at) < $2::timestamptz)
),
reached AS (
    SELECT member_id, 0 AS step_no, min(placed_at) AS at
    FROM orders
    WHERE (is_sample OR is_trial) AND NOT cancelled AND member_id IN (SELECT member_id FROM cohort)
    GROUP BY member_id
    UNION ALL
    SELECT member_id, n::int, placed_at
    FROM main_purchases
    WHERE n <= 4 AND member_id IN (SELECT member_id FROM cohort)
),
steps AS (
    SELECT (i - 1)::int AS step_no, step, label
    FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS s(step, label, i)
),
pairs AS (  -- each step with the member's previous one (steps 1–4 are consecutive; 0 may be missing)
    SELECT step_no, member_id, at, prev_at,
           prev_step = step_no - 1 AND prev_at <= at AS via_previous
    FROM (SELECT r.*, lag(step_no) OVER w AS prev_step, lag(at) OVER w AS prev_at
          FROM reached r
          WINDOW w AS (PARTITION BY member_id ORDER BY step_no)) ordered
),
counted AS (
    SELECT s.step_no, s.step, s.label,
           count(p.member_id) AS members,
           count(p.member_id) FILTER (WHERE p.via_previous) AS from_previous,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM p.at - p.prev_at) / 86400)
               FILTER (WHERE p.via_previous) AS median_days
    FROM steps s LEFT JOIN pairs p USING (step_no)
    GROUP BY s.step_no, s.step, s.label
)
SELECT step, label, members::int AS members,
       CASE WHEN step_no > 0 THEN from_previous::int END AS from_previous,
       round(from_previous::numeric / nullif(lag(members) OVER (ORDER BY step_no), 0), 4)::float8 AS rate,
       round(median_days::numeric, 1)::float8 AS median_days
FROM counted
ORDER BY step_no
"""

# 定期フロー: subscriptions by the month (shop timezone) they started — the earlier of
# their subscription_started event and their first delivery (the first non-cancelled
# order carrying the subscription_id); --from/--to filter on that moment. d1 … d12 =
# continuation at delivery k: the share with at least k deliveries among the
# subscriptions whose k-th delivery was due by as_of (started + (k − 1) × its interval,
# 30 days when unknown) or has happened — a young cohort's later deliveries are not
# counted as lost before they are due (NULL when none is due yet). The last row (合計)
# is every cohort together.
_SHARES = ",\n       ".join(
    f"round(count(*) FILTER (WHERE deliveries >= {k})::numeric"
    f" / nullif(count(*) FILTER (WHERE deliveries >= {k}"
    f" OR started_at + make_interval(days => {k - 1} * interval_days) <= $3::timestamptz), 0), 4)::float8 AS d{k}"
    for k in range(1, SUBSCRIPTION_DELIVERIES + 1)
)
SUBSCRIPTION_FLOW_SQL = f"""
WITH intervals AS (  -- the interval each subscription started with
    SELECT DISTINCT ON (member_id, payload->>'subscription_id')
           member_id, payload->>'subscription_id' AS subscription_id,
           (payload->>'interval_days')::int AS interval_days
    FROM member_events WHERE type = 'subscription_started'
    ORDER BY member_id, payload->>'subscription_id', occurred_at
)
SELECT CASE WHEN grouping(cohort) = 1 THEN '合計' ELSE cohort END AS cohort,
       count(*)::int AS started,
       {_SHARES}
FROM (
    SELECT to_char(s.started_at AT TIME ZONE '{REPORT_TIMEZONE}', 'YYYY-MM') AS cohort, s.deliveries,
           s.started_at, coalesce(i.interval_days, 30) AS interval_days
    FROM subscriptions s
    LEFT JOIN intervals i USING (member_id, subscription_id)
    WHERE ($1::timestamptz IS NULL OR s.started_at >= $1::timestamptz)
      AND ($2::timestamptz IS NULL OR s.started_at < $2::timestamptz)
      AND s.started_at <= $3::timestamptz
) s
GROUP BY ROLLUP (cohort)
HAVING count(*) > 0
ORDER BY grouping(cohort), cohort
"""

# RFM and CPM start from the same picture of each buyer as of $1.
_PER_MEMBER = """WITH per_member AS (  -- one pass over the orders: no join
    SELECT member_id,
           count(*) FILTER (WHERE is_main)          AS f,
           min(placed_at) FILTER (WHERE is_main)    AS first_at,
           max(placed_at) FILTER (WHERE is_main)    AS last_at,
           sum(revenue)                             AS revenue
    FROM orders
    WHERE NOT cancelled AND NOT is_sample AND placed_at <= $1::timestamptz
    GROUP BY member_id
    HAVING count(*) FILTER (WHERE is_main) > 0
),"""

# Members with at least one main purchase by as_of, from what they had bought by as_of
# (orders placed after it are left out). R and F as in RFM_RECENCY_DAYS and
# 1, 2, 3, 4–5 → 4, 6+ → 5; M = ntile(5) of cumulative revenue (every non-cancelled
# order, trial and cross lines included). Rows per (r, f); avg_m = mean M score there.
# Segment rule (first match):
#   r ≥ 4 and f ≥ 4 → 優良     (bought within 60 days, 4+ times)
#   r ≥ 4 and f = 1 → 新規     (one recent purchase)
#   r ≥ 4           → 育成     (recent, F 2–3: on the way to 優良)
#   r = 3           → 要注意   (61–90 days: about to go dormant, SPEC §3)
#   r = 2           → 離脱予備 (91–180 days)
#   r = 1           → 休眠     (over 180 days)
RFM_SQL = f"""
{_PER_MEMBER}
scored AS (
    SELECT m.member_id, m.revenue,
           CASE WHEN $1::timestamptz - m.last_at <= interval '{RFM_RECENCY_DAYS[0]} days' THEN 5
                WHEN $1::timestamptz - m.last_at <= interval '{RFM_RECENCY_DAYS[1]} days' THEN 4
                WHEN $1::timestamptz - m.last_at <= interval '{RFM_RECENCY_DAYS[2]} days' THEN 3
                WHEN $1::timestamptz - m.last_at <= interval '{RFM_RECENCY_DAYS[3]} days' THEN 2
                ELSE 1 END AS r,
           CASE WHEN m.f >= 6 THEN 5 WHEN m.f >= 4 THEN 4 ELSE m.f END AS f,
           ntile(5) OVER (ORDER BY m.revenue, m.member_id) AS m
    FROM per_member m
)
SELECT r::int AS r, f::int AS f,
       CASE WHEN r >= 4 AND f >= 4 THEN '優良'
            WHEN r >= 4 AND f = 1 THEN '新規'
            WHEN r >= 4 THEN '育成'
            WHEN r = 3 THEN '要注意'
            WHEN r = 2 THEN '離脱予備'
            ELSE '休眠' END AS segment,
       count(*)::int AS members,
       sum(revenue)::bigint AS revenue,
       round(avg(revenue))::bigint AS avg_revenue,
       round(avg(m), 2)::float8 AS avg_m
FROM scored
GROUP BY r, f
ORDER BY r DESC, f DESC
"""

# CPM (see the constants at the top): members with at least one main purchase by as_of.
CPM_SQL = f"""
{_PER_MEMBER}
classified AS (
    SELECT m.member_id, m.revenue,
           CASE WHEN m.f = 1 THEN '初回'
                WHEN m.last_at - m.first_at < interval '{CPM_TENURE_DAYS} days'
                    THEN CASE WHEN m.revenue >= {CPM_REVENUE_YEN} THEN '流行' ELSE 'よちよち' END
                ELSE CASE WHEN m.revenue >= {CPM_REVENUE_YEN} THEN '優良' ELSE 'コツコツ' END
           END
           || CASE WHEN $1::timestamptz - m.last_at > interval '{CPM_ACTIVE_DAYS} days' THEN '離脱客' ELSE '客' END
           AS segment
    FROM per_member m
),
segments AS (
    SELECT segment, i FROM unnest($2::text[]) WITH ORDINALITY AS s(segment, i)
)
SELECT g.segment,
       count(c.member_id)::int AS members,
       coalesce(sum(c.revenue), 0)::bigint AS revenue,
       round(avg(c.revenue))::bigint AS avg_revenue,
       round(count(c.member_id)::numeric / nullif(sum(count(c.member_id)) OVER (), 0), 4)::float8 AS share
FROM segments g LEFT JOIN classified c USING (segment)
GROUP BY g.segment, g.i
ORDER BY g.i
"""

# LTV: members by the month (shop timezone) of their first main purchase (--from/--to
# filter on it). day_N = cumulative revenue per member of the non-cancelled orders placed
# from the first main purchase up to N days after it (day_0: that moment), averaged over
# the cohort. NULL until N days have elapsed by as_of for every member of the cohort, so
# that a figure always covers the whole cohort.
_LTV_MEMBER = ",\n           ".join(
    f"sum(revenue) FILTER (WHERE placed_at <= first_at + interval '{d} days') AS day_{d}"
    for d in LTV_DAYS
)
_LTV_COHORT = ",\n       ".join(
    f"CASE WHEN max(first_at) + interval '{d} days' <= $3::timestamptz"
    f" THEN round(avg(coalesce(day_{d}, 0)))::bigint END AS day_{d}"
    for d in LTV_DAYS
)
LTV_SQL = f"""
WITH counted AS (
    SELECT member_id, placed_at, revenue,
           min(placed_at) FILTER (WHERE is_main) OVER (PARTITION BY member_id) AS first_at
    FROM orders
    WHERE NOT cancelled AND NOT is_sample
),
per_member AS (
    SELECT member_id, first_at,
           {_LTV_MEMBER}
    FROM counted
    WHERE placed_at >= first_at AND first_at <= $3::timestamptz
      AND ($1::timestamptz IS NULL OR first_at >= $1::timestamptz)
      AND ($2::timestamptz IS NULL OR first_at < $2::timestamptz)
    GROUP BY member_id, first_at
)
SELECT to_char(first_at AT TIME ZONE '{REPORT_TIMEZONE}', 'YYYY-MM') AS cohort,
       count(*)::int AS members,
       {_LTV_COHORT}
FROM per_member
GROUP BY 1
ORDER BY 1
"""


# --- the registry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """The period and the 'today' a report runs for (bounds as timestamps; upper exclusive)."""

    start: datetime | None
    end: datetime | None
    as_of: datetime


def _scenario_args(w: Window) -> tuple:
    variants = [(t.scenario.value, v, i, len(t.variants)) for t in TEMPLATES for i, v in enumerate(t.variants)]
    variants += [(t.scenario.value, "-", 0, 0) for t in TEMPLATES if not t.variants]
    return (
        w.start, w.end, PolicyConfig().holdout_percent,
        [t.scenario.value for t in TEMPLATES], [t.name_ja for t in TEMPLATES], [t.kpi for t in TEMPLATES],
        [t.converts_on for t in TEMPLATES], [t.kpi_days for t in TEMPLATES],
        *(list(column) for column in zip(*variants)),
    )


@dataclass(frozen=True)
class ReportSpec:
    name: str
    title: str
    columns: tuple[str, ...]
    sql: str
    args: Callable[[Window], tuple]
    # What as_of defaults to: "now", "to" (the end of --to if given, else now: RFM and CPM
    # are a picture at one moment), or None when the report does not use it.
    as_of: Literal["now", "to"] | None = None
    # Float columns shown with one decimal in the text table (others: three).
    one_decimal: frozenset[str] = frozenset()


REPORTS: dict[str, ReportSpec] = {spec.name: spec for spec in (
    ReportSpec(
        "scenarios", "シナリオ別KPI (ホールドアウト比較)",
        ("scenario", "name", "variant", "kpi", "window_days", "entered", "holdout", "touched", "converted",
         "rate", "holdout_converted", "holdout_rate", "lift", "lift_ci_low", "lift_ci_high"),
        SCENARIOS_SQL, _scenario_args,
    ),
    ReportSpec(
        "funnel", "ライフサイクルファネル (ゴールデンルート)",
        ("step", "label", "members", "from_previous", "rate", "median_days"),
        FUNNEL_SQL,
        lambda w: (w.start, w.end, [s for s, _ in FUNNEL_STEPS], [label for _, label in FUNNEL_STEPS]),
        one_decimal=frozenset({"median_days"}),
    ),
    ReportSpec(
        "subscription-flow", "定期フロー (お届け回数別の継続率)",
        ("cohort", "started", *(f"d{k}" for k in range(1, SUBSCRIPTION_DELIVERIES + 1))),
        SUBSCRIPTION_FLOW_SQL, lambda w: (w.start, w.end, w.as_of), as_of="now",
    ),
    ReportSpec(
        "rfm", "RFM分析",
        ("r", "f", "segment", "members", "revenue", "avg_revenue", "avg_m"),
        RFM_SQL, lambda w: (w.as_of,), as_of="to",
    ),
    ReportSpec(
        "cpm", "顧客ポートフォリオ (CPM)",
        ("segment", "members", "revenue", "avg_revenue", "share"),
        CPM_SQL, lambda w: (w.as_of, list(CPM_SEGMENTS)), as_of="to",
    ),
    ReportSpec(
        "ltv", "LTV (初回購入月コホート別・1人あたり累計売上)",
        ("cohort", "members", *(f"day_{d}" for d in LTV_DAYS)),
        LTV_SQL, lambda w: (w.start, w.end, w.as_of), as_of="now",
    ),
)}


# --- running and rendering -------------------------------------------------------------------


@dataclass
class Report:
    name: str
    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    start: date | None = None
    end: date | None = None
    as_of: datetime | None = None
    one_decimal: frozenset[str] = field(default=frozenset(), repr=False)

    def period(self) -> str:
        span = f"{self.start or '…'} 〜 {self.end or '…'}" if self.start or self.end else "全期間"
        return f"期間 {span}" + (f" / 基準日時 {self.as_of.isoformat(timespec='minutes')}" if self.as_of else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "report": self.name, "title": self.title,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "columns": self.columns, "rows": self.rows,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, indent=2)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return out.getvalue()

    def to_text(self) -> str:
        """An aligned table (East Asian wide characters count two columns); numbers right-aligned."""
        cells = [[self._cell(c, row.get(c)) for c in self.columns] for row in self.rows]
        widths = [max(_width(text) for text in (c, *(r[i] for r in cells))) for i, c in enumerate(self.columns)]
        numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in self.rows)
                   and any(row.get(c) is not None for row in self.rows) for c in self.columns]
        lines = [f"{self.title} — {self.period()}", "",
                 _line(self.columns, widths, numeric), _line(["-" * w for w in widths], widths, numeric)]
        lines += [_line(r, widths, numeric) for r in cells]
        if not cells:
            lines.append("(no rows)")
        return "\n".join(lines)

    def _cell(self, column: str, value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, float):
            return f"{value:.1f}" if column in self.one_decimal else f"{value:.3f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _line(cells: list[str], widths: list[int], numeric: list[bool]) -> str:
    padded = [" " * (w - _width(c)) + c if right else c + " " * (w - _width(c))
              for c, w, right in zip(cells, widths, numeric)]
    return "  ".join(padded).rstrip()


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def day_start(day: date) -> datetime:
    """00:00 of a calendar day in the shop's timezone."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(REPORT_TIMEZONE))


def window(spec: ReportSpec, start: date | None, end: date | None, as_of: datetime | None,
           now: datetime | None = None) -> Window:
    if start and end and start > end:
        raise ReportError(f"--from {start} is after --to {end}")
    if as_of is not None and as_of.tzinfo is None:
        raise ReportError("as_of needs a timezone offset")
    upper = day_start(end + timedelta(days=1)) if end else None
    if as_of is None:
        as_of = upper if spec.as_of == "to" and upper is not None else (now or datetime.now(timezone.utc))
    return Window(start=day_start(start) if start else None, end=upper, as_of=as_of)


def get_spec(name: str) -> ReportSpec:
    try:
        return REPORTS[name]
    except KeyError:
        raise ReportError(f"unknown report {name!r}: choose from {', '.join(REPORTS)}") from None


async def run_report(conn_or_pool: asyncpg.Connection | asyncpg.Pool, name: str, start: date | None = None,
                     end: date | None = None, as_of: datetime | None = None) -> Report:
    """Run one report over the read models; ``start``/``end`` are inclusive dates in the shop's timezone."""
    spec = get_spec(name)
    w = window(spec, start, end, as_of)
    records = await conn_or_pool.fetch(spec.sql, *spec.args(w))
    rows = [{c: _plain(r[c]) for c in spec.columns} for r in records]
    # RFM and CPM are a picture at one moment: --from has no part in them.
    return Report(name=spec.name, title=spec.title, columns=list(spec.columns), rows=rows,
                  start=None if spec.as_of == "to" else start, end=end,
                  as_of=w.as_of if spec.as_of else None, one_decimal=spec.one_decimal)
