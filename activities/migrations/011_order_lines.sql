-- order_lines: one row per line of each placed order, the product-level read model of
-- the 購入フロー, 商品別新規・リピート and クロスセル analyses (starter/reports). An
-- order is the orders view's (004): its first placement by seq — sample_requested of
-- the same order_id included, so an order_id the orders view takes as a sample has no
-- lines here — and it is cancelled when any order_cancelled names it, whatever the
-- arrival order. role is the line's (main / cross / trial, SPEC §3): a trial line is
-- never a main purchase.
CREATE VIEW order_lines AS
WITH placed AS (
    SELECT DISTINCT ON (member_id, payload->>'order_id')
           member_id, payload->>'order_id' AS order_id, type, occurred_at, payload
    FROM member_events
    WHERE type IN ('order_placed', 'sample_requested')
    ORDER BY member_id, payload->>'order_id', seq
),
cancelled AS (
    SELECT DISTINCT member_id, payload->>'order_id' AS order_id
    FROM member_events WHERE type = 'order_cancelled'
)
SELECT p.member_id,
       p.order_id,
       p.occurred_at                                   AS placed_at,
       c.order_id IS NOT NULL                          AS cancelled,
       p.payload->>'subscription_id'                   AS subscription_id,
       l.i::int                                        AS line_no,     -- 1, 2, … in the order's own order
       l.line->>'sku'                                  AS sku,
       l.line->>'role'                                 AS role,
       (l.line->>'quantity')::int                      AS quantity,
       (l.line->>'unit_price')::bigint                 AS unit_price,
       (l.line->>'days_supply')::int                   AS days_supply
FROM placed p
LEFT JOIN cancelled c USING (member_id, order_id)
CROSS JOIN LATERAL jsonb_array_elements(p.payload->'lines') WITH ORDINALITY AS l(line, i)
WHERE p.type = 'order_placed';
