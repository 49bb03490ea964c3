"""購入フロー (product flow): which product members buy first, then second and third.

A purchase here is a main purchase (SPEC §3: a non-cancelled order with a main line;
trial-only orders and samples are not), numbered per member by order time then order id
as the ``main_purchases`` view numbers them, and its product is the SKU of its first main
line. The cohort is the members whose first main purchase falls in --from/--to; their
later purchases count up to as_of (default now).

Rows, step F1→F2: for each first product (``from_sku``, bought first by ``from_members``
members), the members whose second purchase is ``to_sku`` — or none yet (``to_sku``
NULL) — and ``rate`` = members / from_members. Step F2→F3 likewise from the second
product of every member who has one to the third. Names come from the shop's catalogue
(``catalogue``).
"""

from __future__ import annotations

from starter.reports.catalogue import CATALOGUE_CTE, named

NONE_YET = "(まだなし)"

PRODUCT_FLOW_SQL = f"""
WITH {CATALOGUE_CTE},
mains AS (  -- main purchases up to as_of, each with the SKU of its first main line
    SELECT member_id, order_id, placed_at,
           (array_agg(sku ORDER BY line_no) FILTER (WHERE role = 'main'))[1] AS sku
    FROM order_lines
    WHERE NOT cancelled AND placed_at <= $3::timestamptz
    GROUP BY member_id, order_id, placed_at
    HAVING bool_or(role = 'main')
),
numbered AS (
    SELECT member_id, sku, placed_at,
           row_number() OVER (PARTITION BY member_id ORDER BY placed_at, order_id) AS n
    FROM mains
),
paths AS (  -- the cohort: first main purchase within the period; its 1st, 2nd and 3rd product
    SELECT member_id,
           min(sku) FILTER (WHERE n = 1) AS p1,
           min(sku) FILTER (WHERE n = 2) AS p2,
           min(sku) FILTER (WHERE n = 3) AS p3
    FROM numbered
    WHERE n <= 3
    GROUP BY member_id
    HAVING ($1::timestamptz IS NULL OR min(placed_at) >= $1::timestamptz)
       AND ($2::timestamptz IS NULL OR min(placed_at) < $2::timestamptz)
),
moves AS (
    SELECT 1 AS k, p1 AS from_sku, p2 AS to_sku FROM paths
    UNION ALL
    SELECT 2, p2, p3 FROM paths WHERE p2 IS NOT NULL
),
counted AS (
    SELECT k, from_sku, to_sku, count(*) AS members,
           sum(count(*)) OVER (PARTITION BY k, from_sku) AS from_members
    FROM moves
    GROUP BY k, from_sku, to_sku
)
SELECT 'F' || m.k || '→F' || (m.k + 1) AS step,
       m.from_sku, {named("m.from_sku", "f")} AS from_name, m.from_members::int AS from_members,
       m.to_sku, CASE WHEN m.to_sku IS NULL THEN '{NONE_YET}' ELSE {named("m.to_sku", "t")} END AS to_name,
       m.members::int AS members,
       round(m.members / m.from_members, 4)::float8 AS rate
FROM counted m
LEFT JOIN catalogue f ON f.sku = m.from_sku
LEFT JOIN catalogue t ON t.sku = m.to_sku
ORDER BY m.k, m.from_members DESC, m.from_sku, m.to_sku IS NULL, m.members DESC, m.to_sku
"""
