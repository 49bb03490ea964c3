-- Contact changes are last-writer-wins per field, on the same stamp the workflow uses
-- (workflows/facts.py Stamp): (occurred_at, event_id) of the registration that last set
-- the field, compared as a tuple. A removal (null) keeps its stamp too, so an older
-- registration delivered again or late cannot bring a removed address back (SPEC §2:
-- any delivery order of the same events gives the same contact).
-- event_id compares in code-point order (COLLATE "C"), as Python compares strings.
ALTER TABLE member_contacts
    ADD COLUMN email_at                timestamptz,
    ADD COLUMN email_event             text COLLATE "C",
    ADD COLUMN phone_at                timestamptz,
    ADD COLUMN phone_event             text COLLATE "C",
    ADD COLUMN line_user_id_at         timestamptz,
    ADD COLUMN line_user_id_event      text COLLATE "C",
    ADD COLUMN postal_address_at       timestamptz,
    ADD COLUMN postal_address_event    text COLLATE "C",
    ADD COLUMN push_token_at           timestamptz,
    ADD COLUMN push_token_event        text COLLATE "C";

-- Rows stored before this migration do not know which registration set which field.
-- Stamp every field with the newest logged registration that carried a contact (the
-- ingress stores a contact before it forwards the event, so any older registration was
-- most likely applied already): an older one delivered again cannot undo a removal.
UPDATE member_contacts AS c SET
    email_at = r.occurred_at,          email_event = r.event_id,
    phone_at = r.occurred_at,          phone_event = r.event_id,
    line_user_id_at = r.occurred_at,   line_user_id_event = r.event_id,
    postal_address_at = r.occurred_at, postal_address_event = r.event_id,
    push_token_at = r.occurred_at,     push_token_event = r.event_id
FROM (
    SELECT DISTINCT ON (member_id) member_id, occurred_at, event_id
    FROM member_events
    WHERE type = 'member_registered' AND jsonb_typeof(payload -> 'reachable') = 'array'
    ORDER BY member_id, occurred_at DESC, event_id COLLATE "C" DESC
) AS r
WHERE r.member_id = c.member_id;
