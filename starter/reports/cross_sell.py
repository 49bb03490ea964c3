"""クロスセル分析: pairs of products bought by the same member.

Products are the SKUs of main and cross lines of non-cancelled orders placed in
--from/--to (trial lines and samples are not purchases of a product here, SPEC §3);
the population N is the members with at least one such line. A SKU's role is ``main``
when anyone bought it as a main line, else ``cross``.

For each ordered pair A → B (A ≠ B) bought by at least ``min_members`` members
(--min-members, default 3):

- members_a, members_b: members who bought A, B;
- members_both: members who bought both — any time in the period, or with --within
  DAYS a purchase of A and one of B at most DAYS × 24 h apart (one order: 0 apart);
- attach_rate (併買率) = members_both / members_a, the share of A's buyers who also
  bought B; confidence (信頼度) is the same quotient under its association-rule name,
  P(B | A);
- lift = confidence / P(B), P(B) = members_b / N: above 1, A's buyers take B more often
  than members at large — a pair to recommend together (S09, the catalogue's ``cross``);
- main_to_cross: A was bought as a main product and B as a cross product, the pairs a
  cross-sell scenario works on.

Sorted by lift, then members_both (highest first), then the SKUs.
"""

from __future__ import annotations

from starter.reports.catalogue import CATALOGUE_CTE, named
from starter.reports.period import ReportError, Window

MIN_MEMBERS = 3  # a pair bought by fewer members says nothing yet

CROSS_SELL_SQL = f"""
WITH {CATALOGUE_CTE},
lines AS (
    SELECT member_id, sku, role, placed_at
    FROM order_lines
    WHERE role IN ('main', 'cross') AND NOT cancelled
      AND ($1::timestamptz IS NULL OR placed_at >= $1::timestamptz)
      AND ($2::timestamptz IS NULL OR placed_at < $2::timestamptz)
),
population AS (SELECT count(DISTINCT member_id) AS n FROM lines),
products AS (
    SELECT sku, count(DISTINCT member_id) AS members,
           CASE WHEN bool_or(role = 'main') THEN 'main' ELSE 'cross' END AS role
    FROM lines GROUP BY sku
),
bought AS (  -- per member and product: when it was bought
    SELECT member_id, sku, array_agg(DISTINCT placed_at) AS ats
    FROM lines GROUP BY member_id, sku
),
pairs AS (
    SELECT a.sku AS sku_a, b.sku AS sku_b, count(*) AS members_both
    FROM bought a
    JOIN bought b ON b.member_id = a.member_id AND b.sku <> a.sku
    WHERE $3::int IS NULL
       OR EXISTS (SELECT 1 FROM unnest(a.ats) AS ta, unnest(b.ats) AS tb
                  WHERE abs(extract(epoch FROM tb - ta)) <= $3::int * 86400)
    GROUP BY a.sku, b.sku
    HAVING count(*) >= $4::int
)
SELECT p.sku_a, {named("p.sku_a", "ca")} AS name_a, pa.role AS role_a,
       p.sku_b, {named("p.sku_b", "cb")} AS name_b, pb.role AS role_b,
       pa.members::int AS members_a, pb.members::int AS members_b, p.members_both::int AS members_both,
       round(p.members_both::numeric / pa.members, 4)::float8 AS attach_rate,
       round(p.members_both::numeric / pa.members, 4)::float8 AS confidence,
       round((p.members_both::numeric / pa.members) / (pb.members::numeric / n.n), 4)::float8 AS lift,
       pa.role = 'main' AND pb.role = 'cross' AS main_to_cross
FROM pairs p
CROSS JOIN population n
JOIN products pa ON pa.sku = p.sku_a
JOIN products pb ON pb.sku = p.sku_b
LEFT JOIN catalogue ca ON ca.sku = p.sku_a
LEFT JOIN catalogue cb ON cb.sku = p.sku_b
ORDER BY lift DESC, p.members_both DESC, p.sku_a, p.sku_b
"""

OPTIONS = (("within", None), ("min_members", MIN_MEMBERS))


def cross_sell_args(w: Window, within: int | None, min_members: int) -> tuple:
    if within is not None and within < 0:
        raise ReportError(f"--within must be 0 days or more, not {within}")
    if min_members < 1:
        raise ReportError(f"--min-members must be 1 or more, not {min_members}")
    return (w.start, w.end, within, min_members)


def cross_sell_terms(within: int | None, min_members: int) -> str:
    """What the title adds: the window the pairs were bought in and the minimum support."""
    when = f"{within}日以内" if within is not None else "期間内"
    return f" (同じ会員が{when}に両方購入・{min_members}人以上)"
