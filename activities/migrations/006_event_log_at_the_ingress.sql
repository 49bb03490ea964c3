-- The event log becomes the ingress's (SPEC §6: an event the ingress has accepted is
-- never lost, even while Temporal is down). The ingress appends each accepted event
-- with forwarded_at NULL in the transaction that answers the order system; a forwarder
-- then signals the member's workflow, in seq order per member, and sets forwarded_at.
-- Rows written by member workflows that still log their own events (started before
-- this change) need no forwarding: the column defaults to now() for them. A forwarder
-- leases a member's unforwarded events for a while (lease_until) and signals them
-- without holding a connection; a forwarder that died lets its lease run out.
ALTER TABLE member_events
    ADD COLUMN accepted_at   timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN forwarded_at  timestamptz DEFAULT now(),
    ADD COLUMN forward_error text,
    ADD COLUMN lease_until   timestamptz,  -- a forwarder is signalling it until then
    ADD COLUMN source        text;

UPDATE member_events SET accepted_at = recorded_at, forwarded_at = recorded_at;

CREATE INDEX member_events_unforwarded ON member_events (member_id, seq) WHERE forwarded_at IS NULL;
CREATE INDEX member_events_erased ON member_events (member_id) WHERE type = 'member_erased';
