-- Contact data: the only place personal data lives. Workflows see only which
-- channels are reachable.
CREATE TABLE member_contacts (
    member_id       text PRIMARY KEY,
    email           text,
    phone           text,
    line_user_id    text,
    postal_address  text,
    push_token      text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Every touch's one outcome, keyed by the idempotency key the workflow computed.
CREATE TABLE touches (
    idempotency_key text PRIMARY KEY,
    member_id       text NOT NULL,
    scenario        text NOT NULL,
    step            text NOT NULL,
    occurrence      text NOT NULL,
    channel         text,
    variant         text,
    outcome         text NOT NULL CHECK (outcome IN ('sent', 'suppressed', 'expired', 'holdout', 'cancelled')),
    reason          text NOT NULL,
    planned_at      timestamptz NOT NULL,
    decided_at      timestamptz NOT NULL,
    delivered_at    timestamptz,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX touches_member ON touches (member_id, planned_at);
CREATE INDEX touches_scenario ON touches (scenario, outcome);

-- The outbox: messages handed to a channel, one per touch.
CREATE TABLE deliveries (
    idempotency_key text PRIMARY KEY REFERENCES touches (idempotency_key),
    member_id       text NOT NULL,
    channel         text NOT NULL,
    template        text NOT NULL,
    body            jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deliveries_member ON deliveries (member_id);
