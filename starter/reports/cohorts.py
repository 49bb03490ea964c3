"""Reports by cohort: the lifecycle funnel, the 定期フロー and LTV by first-purchase month."""

from __future__ import annotations


# --- 定期フロー / LTV -------------------------------------------------------------------
SUBSCRIPTION_DELIVERIES = 12  # continuation shown at delivery 1 … 12
LTV_DAYS = tuple(range(0, 361, 30))  # day_0, day_30, …, day_360

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
    SELECT to_char(s.started_at AT TIME ZONE $4::text, 'YYYY-MM') AS cohort, s.deliveries,
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
SELECT to_char(first_at AT TIME ZONE $4::text, 'YYYY-MM') AS cohort,
       count(*)::int AS members,
       {_LTV_COHORT}
FROM per_member
GROUP BY 1
ORDER BY 1
"""
