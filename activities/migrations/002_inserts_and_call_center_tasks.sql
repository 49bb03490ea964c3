-- 同梱: a leaflet the warehouse puts in the parcel of one order, one per touch.
-- It carries no personal data: the warehouse already has the parcel's address.
CREATE TABLE inserts (
    idempotency_key         text PRIMARY KEY REFERENCES touches (idempotency_key),
    member_id               text NOT NULL,
    order_id                text NOT NULL,
    scenario                text NOT NULL,
    step                    text NOT NULL,
    insert_code             text NOT NULL,  -- the printed leaflet, e.g. S01-sample-welcome
    body                    text NOT NULL,  -- its personalised text
    created_at              timestamptz NOT NULL DEFAULT now(),
    attached_to_shipment_at timestamptz     -- set by the warehouse when the parcel is packed
);
-- The packing line asks "what goes in this order's parcel?"; only the unpacked ones matter.
CREATE INDEX inserts_to_pack ON inserts (order_id) WHERE attached_to_shipment_at IS NULL;
CREATE INDEX inserts_member ON inserts (member_id);

-- コールセンター通知: a task in the agents' queue, one per touch. The agent looks the
-- member up by id; no phone number is copied here.
CREATE TABLE call_center_tasks (
    idempotency_key text PRIMARY KEY REFERENCES touches (idempotency_key),
    member_id       text NOT NULL,
    scenario        text NOT NULL,
    step            text NOT NULL,
    reason          text NOT NULL,  -- e.g. 解約兆候: 解約案内ページ閲覧
    talking_points  text NOT NULL,
    priority        int NOT NULL CHECK (priority >= 1),  -- 1 is called first (S12), then 2 (S07)
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done', 'cancelled')),
    due_at          timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- The agents' queue: open tasks, most urgent first.
CREATE INDEX call_center_tasks_queue ON call_center_tasks (priority, due_at) WHERE status = 'open';
CREATE INDEX call_center_tasks_member ON call_center_tasks (member_id);
