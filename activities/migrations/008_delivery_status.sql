-- Real channels (issue 11): each message to a member has a delivery status.
--
-- queued    rendered and stored, not yet handed to the vendor (or no sender is configured
--           for its channel: it waits in the outbox for the shop's own relay / MA tool)
-- sending   an attempt is under way; SMTP and SMS have no idempotency key, so an attempt
--           found in this state by the next one (a worker killed mid-call) is not repeated
-- sent      the vendor accepted it (vendor_message_id when it gave one)
-- failed    the vendor refused it for good (last_error); the touch becomes suppressed
-- uncertain the result of an attempt is unknown (SMTP / SMS after a crash or a timeout):
--           shown to the operator, never sent again blindly
-- exported  postal DM: handed to the print house in a daily file (exported_at)
ALTER TABLE deliveries
    ADD COLUMN state             text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'sending', 'sent', 'failed', 'uncertain', 'exported')),
    ADD COLUMN attempts          int NOT NULL DEFAULT 0,
    ADD COLUMN vendor_message_id text,
    ADD COLUMN last_error        text,
    ADD COLUMN attempted_at      timestamptz,
    ADD COLUMN sent_at           timestamptz,
    ADD COLUMN updated_at        timestamptz NOT NULL DEFAULT now();

-- Messages written before real channels were handed to the outbox, which was the channel then.
UPDATE deliveries SET state = 'sent', sent_at = created_at, updated_at = created_at;

CREATE INDEX deliveries_state ON deliveries (channel, state) WHERE state IN ('queued', 'sending', 'uncertain');
CREATE INDEX deliveries_day ON deliveries (channel, created_at);
