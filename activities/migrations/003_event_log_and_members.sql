-- The event log: every event a member workflow accepted, as it accepted it (contact
-- data already stripped by the ingress), append-only. seq is the member's own
-- order of arrival; a duplicate event_id is the same event and is kept once.
CREATE TABLE member_events (
    event_id    text PRIMARY KEY,
    member_id   text NOT NULL,
    seq         bigint NOT NULL,
    type        text NOT NULL,
    occurred_at timestamptz NOT NULL,
    payload     jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (member_id, seq)
);
CREATE INDEX member_events_type ON member_events (type, occurred_at);
CREATE INDEX member_events_order ON member_events ((payload->>'order_id')) WHERE payload ? 'order_id';

-- The current snapshot of each member, written by its workflow. version only grows:
-- a retried or late write of an older snapshot changes nothing.
CREATE TABLE members (
    member_id           text PRIMARY KEY,
    version             bigint NOT NULL,
    stage               text NOT NULL,
    purchase_count      int NOT NULL,
    subscription_status text NOT NULL,
    sales_channel       text NOT NULL,
    registered_at       timestamptz,
    first_purchase_at   timestamptz,
    last_purchase_at    timestamptz,
    next_touch_at       timestamptz,
    revenue             bigint NOT NULL DEFAULT 0,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX members_stage ON members (stage);
