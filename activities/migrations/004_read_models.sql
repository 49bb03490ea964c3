-- Read models for the marketers' reports (starter/reports.py): plain views over the
-- event log, so they are rebuilt by construction — no projection to keep in step.
-- member_events already holds each event once (duplicates are dropped on event_id).

-- orders: one row per (member_id, order_id) that was placed (order_placed) or requested
-- (sample_requested). A shipment or cancellation may arrive before its order: it is
-- joined here whatever the arrival order; an order known only by its shipment or
-- cancellation (still held) has no row. If an order_id is placed twice with different
-- event_ids, the first to arrive (lowest seq) wins, as in the workflow's fold.
CREATE VIEW orders AS
WITH placed AS (
    SELECT DISTINCT ON (member_id, payload->>'order_id')
           member_id, payload->>'order_id' AS order_id, type, occurred_at, payload
    FROM member_events
    WHERE type IN ('order_placed', 'sample_requested')
    ORDER BY member_id, payload->>'order_id', seq
),
shipped AS (
    SELECT member_id, payload->>'order_id' AS order_id, min(occurred_at) AS shipped_at
    FROM member_events WHERE type = 'order_shipped'
    GROUP BY 1, 2
),
cancelled AS (
    SELECT member_id, payload->>'order_id' AS order_id, min(occurred_at) AS cancelled_at
    FROM member_events WHERE type = 'order_cancelled'
    GROUP BY 1, 2
)
SELECT p.member_id,
       p.order_id,
       p.occurred_at                                   AS placed_at,
       s.shipped_at,                                   -- the earliest shipment
       c.cancelled_at,
       c.cancelled_at IS NOT NULL                      AS cancelled,
       p.type = 'sample_requested'                     AS is_sample,
       coalesce(l.has_main, false)                     AS is_main,     -- has a main line
       coalesce(l.trial_only, false)                   AS is_trial,    -- trial lines only
       coalesce(l.has_cross, false)                    AS has_cross,
       coalesce(l.revenue, 0)                          AS revenue,     -- Σ unit_price × quantity
       coalesce(l.main_supply_days, 0)                 AS main_supply_days,  -- of its first main line
       CASE WHEN p.type = 'sample_requested' THEN (p.payload->>'days_supply')::int
            ELSE l.supply_days END                     AS supply_days, -- the sample's, or the longest line's
       p.payload->>'subscription_id'                   AS subscription_id
FROM placed p
LEFT JOIN shipped s USING (member_id, order_id)
LEFT JOIN cancelled c USING (member_id, order_id)
LEFT JOIN LATERAL (
    SELECT bool_or(line->>'role' = 'main')                                   AS has_main,
           bool_and(line->>'role' = 'trial')                                 AS trial_only,
           bool_or(line->>'role' = 'cross')                                  AS has_cross,
           sum((line->>'unit_price')::bigint * (line->>'quantity')::bigint)  AS revenue,
           (array_agg((line->>'days_supply')::int * (line->>'quantity')::int ORDER BY i)
                FILTER (WHERE line->>'role' = 'main'))[1]                    AS main_supply_days,
           max((line->>'days_supply')::int * (line->>'quantity')::int)       AS supply_days
    FROM jsonb_array_elements(CASE WHEN p.type = 'order_placed' THEN p.payload->'lines' END)
         WITH ORDINALITY AS lines(line, i)
) l ON true;

-- main_purchases: the purchases that make F (SPEC §3): non-cancelled orders with a main
-- line. n is the member's F after the purchase (ordered by order time, then order id).
CREATE VIEW main_purchases AS
SELECT member_id, order_id, placed_at, shipped_at, revenue, main_supply_days, subscription_id,
       row_number() OVER (PARTITION BY member_id ORDER BY placed_at, order_id) AS n
FROM orders
WHERE is_main AND NOT cancelled AND NOT is_sample;

-- subscription_events: the 定期 events, one row each.
CREATE VIEW subscription_events AS
SELECT member_id, payload->>'subscription_id' AS subscription_id, type, occurred_at,
       (payload->>'interval_days')::int AS interval_days, event_id, seq
FROM member_events
WHERE type IN ('subscription_started', 'subscription_paused', 'subscription_resumed',
               'subscription_cancelled', 'subscription_interval_changed');

-- subscription_deliveries: each non-cancelled order of a subscription, numbered 1, 2, …
CREATE VIEW subscription_deliveries AS
SELECT member_id, subscription_id, order_id, placed_at, shipped_at, revenue,
       row_number() OVER (PARTITION BY member_id, subscription_id ORDER BY placed_at, order_id) AS delivery
FROM orders
WHERE subscription_id IS NOT NULL AND NOT cancelled AND NOT is_sample;

-- subscriptions: one row per (member_id, subscription_id) that has a subscription_started
-- event or at least one delivery. started_at is the earlier of the two — the cohort
-- moment of the 定期フロー; status is the latest status event's (started → active), the
-- latest by (occurred_at, event_id) as in the workflow's fold.
CREATE VIEW subscriptions AS
WITH events AS (
    SELECT member_id, subscription_id,
           min(occurred_at) FILTER (WHERE type = 'subscription_started')   AS started_event_at,
           min(occurred_at) FILTER (WHERE type = 'subscription_cancelled') AS cancelled_at,
           (array_agg(type ORDER BY occurred_at DESC, event_id COLLATE "C" DESC)
                FILTER (WHERE type <> 'subscription_interval_changed'))[1] AS last_status_event
    FROM subscription_events
    GROUP BY 1, 2
),
delivered AS (
    SELECT member_id, subscription_id, count(*) AS deliveries,
           min(placed_at) AS first_delivery_at, max(placed_at) AS last_delivery_at
    FROM subscription_deliveries
    GROUP BY 1, 2
)
SELECT member_id, subscription_id,
       least(e.started_event_at, d.first_delivery_at) AS started_at,
       e.started_event_at,
       d.first_delivery_at,
       d.last_delivery_at,
       coalesce(d.deliveries, 0)                      AS deliveries,
       e.cancelled_at,
       CASE e.last_status_event
            WHEN 'subscription_paused' THEN 'paused'
            WHEN 'subscription_cancelled' THEN 'cancelled'
            ELSE 'active' END                         AS status
FROM events e
FULL JOIN delivered d USING (member_id, subscription_id)
WHERE e.started_event_at IS NOT NULL OR d.deliveries IS NOT NULL;

-- Every report starts from the orders view, whose first step picks each order's first
-- placement per member (DISTINCT ON member_id, order_id by seq): this partial index lets
-- it stream in that order instead of sorting every order of the log, and serves a
-- per-member look-up of orders. The reports read everything else in one pass (no other
-- index would be used), and touches — written on every delivery — gets none.
CREATE INDEX member_events_member_order ON member_events (member_id, (payload->>'order_id'), seq)
    WHERE type IN ('order_placed', 'sample_requested');
