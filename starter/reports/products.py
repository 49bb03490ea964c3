"""商品別新規・リピート: per product (SKU of a main line) and month, new and repeat buyers.

Counted are the main lines (SPEC §3: a trial line is never a main purchase) of
non-cancelled orders, per SKU and month of the order (shop timezone; --from/--to
filter on the order's moment). A member's first purchase of a SKU is its first
non-cancelled order with a main line of that SKU, ever — before the period too:

- new_buyers: members who bought the SKU in the month and whose first purchase of it
  is in that month (buying it twice in that month still makes one new buyer);
- repeat_buyers: the month's other buyers of the SKU, who had bought it before;
- orders: orders with a main line of the SKU; units and revenue: those lines'
  quantity and unit_price × quantity;
- repeat_rate = repeat_buyers / (new_buyers + repeat_buyers).
"""

from __future__ import annotations

from starter.reports.catalogue import CATALOGUE_CTE, named

PRODUCTS_SQL = f"""
WITH {CATALOGUE_CTE},
bought AS (  -- per member, SKU and non-cancelled order: its main lines of that SKU
    SELECT member_id, sku, order_id, placed_at,
           sum(quantity) AS units, sum(unit_price * quantity) AS revenue
    FROM order_lines
    WHERE role = 'main' AND NOT cancelled
    GROUP BY member_id, sku, order_id, placed_at
),
numbered AS (  -- k = 1: the member's first purchase of the SKU, over the whole log
    SELECT *, row_number() OVER (PARTITION BY member_id, sku ORDER BY placed_at, order_id) AS k
    FROM bought
),
monthly AS (
    SELECT sku, to_char(placed_at AT TIME ZONE $3::text, 'YYYY-MM') AS month,
           count(DISTINCT member_id) AS buyers,
           count(DISTINCT member_id) FILTER (WHERE k = 1) AS new_buyers,
           count(*) AS orders, sum(units) AS units, sum(revenue) AS revenue
    FROM numbered
    WHERE ($1::timestamptz IS NULL OR placed_at >= $1::timestamptz)
      AND ($2::timestamptz IS NULL OR placed_at < $2::timestamptz)
    GROUP BY 1, 2
)
SELECT m.sku, {named("m.sku")} AS name, m.month,
       m.new_buyers::int AS new_buyers, (m.buyers - m.new_buyers)::int AS repeat_buyers,
       m.orders::int AS orders, m.units::bigint AS units, m.revenue::bigint AS revenue,
       round((m.buyers - m.new_buyers)::numeric / m.buyers, 4)::float8 AS repeat_rate
FROM monthly m
LEFT JOIN catalogue c ON c.sku = m.sku
ORDER BY m.sku, m.month
"""
