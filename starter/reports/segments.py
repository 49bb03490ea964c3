"""Reports that segment the buyers as of one moment: RFM and CPM."""

from __future__ import annotations

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

# The rules below are SQL fragments that the reports and the segments (starter/segments:
# a report row turned into a segment has exactly the row's members) both build on.


def buyers_sql(at: str) -> str:
    """Each buyer as of ``at`` (an SQL expression): F, first and latest main purchase, revenue.
    One pass over the orders: no join."""
    return f"""SELECT member_id,
           count(*) FILTER (WHERE is_main)          AS f,
           min(placed_at) FILTER (WHERE is_main)    AS first_at,
           max(placed_at) FILTER (WHERE is_main)    AS last_at,
           sum(revenue)                             AS revenue
    FROM orders
    WHERE NOT cancelled AND NOT is_sample AND placed_at <= {at}
    GROUP BY member_id
    HAVING count(*) FILTER (WHERE is_main) > 0"""


def rfm_r_sql(at: str, last_at: str = "last_at") -> str:
    """R (5 … 1) from the days between the latest main purchase and ``at``."""
    steps = " ".join(f"WHEN {at} - {last_at} <= interval '{days} days' THEN {5 - i}"
                     for i, days in enumerate(RFM_RECENCY_DAYS))
    return f"CASE {steps} ELSE 1 END"


def rfm_f_sql(f: str = "f") -> str:
    return f"CASE WHEN {f} >= 6 THEN 5 WHEN {f} >= 4 THEN 4 ELSE {f} END"


# The segment of an (r, f) score, first match (see RFM_SQL).
RFM_SEGMENT_SQL = """CASE WHEN r >= 4 AND f >= 4 THEN '優良'
            WHEN r >= 4 AND f = 1 THEN '新規'
            WHEN r >= 4 THEN '育成'
            WHEN r = 3 THEN '要注意'
            WHEN r = 2 THEN '離脱予備'
            ELSE '休眠' END"""


def cpm_segment_sql(at: str, m: str = "") -> str:
    """The CPM class of a buyer row (columns prefixed ``m``) as of ``at``."""
    return f"""CASE WHEN {m}f = 1 THEN '初回'
                WHEN {m}last_at - {m}first_at < interval '{CPM_TENURE_DAYS} days'
                    THEN CASE WHEN {m}revenue >= {CPM_REVENUE_YEN} THEN '流行' ELSE 'よちよち' END
                ELSE CASE WHEN {m}revenue >= {CPM_REVENUE_YEN} THEN '優良' ELSE 'コツコツ' END
           END
           || CASE WHEN {at} - {m}last_at > interval '{CPM_ACTIVE_DAYS} days' THEN '離脱客' ELSE '客' END"""


# RFM and CPM start from the same picture of each buyer as of $1.
_PER_MEMBER = f"""WITH per_member AS (
    {buyers_sql("$1::timestamptz")}
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
           {rfm_r_sql("$1::timestamptz", "m.last_at")} AS r,
           {rfm_f_sql("m.f")} AS f,
           ntile(5) OVER (ORDER BY m.revenue, m.member_id) AS m
    FROM per_member m
)
SELECT r::int AS r, f::int AS f,
       {RFM_SEGMENT_SQL} AS segment,
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
           {cpm_segment_sql("$1::timestamptz", "m.")}
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
