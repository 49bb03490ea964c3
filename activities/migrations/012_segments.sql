-- Segments (issue 13): named selections of members kept in PostgreSQL, beside the ones a
-- shop file declares ([segments]). definition is a workflows.segments.Segment as JSON;
-- source says where it came from: "rfm:優良", "cpm:初回離脱客", "cli".
CREATE TABLE segments (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,63}$'),
    definition  jsonb NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
    source      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- member_channels: per member, the channels it can be reached on (an address is stored)
-- and has consented to, folded from the event log as the member workflow folds them
-- (workflows/lifecycle.py): per channel, last writer wins on the stamp (occurred_at,
-- event_id in code-point order). Consent: a registration's consent names some channels
-- (null: unchanged), consent_changed one. Reach: a registration's `reach` carries each
-- channel's own stamp (the contact field's, from member_contacts); an older registration
-- without `reach` sets the whole `reachable` list on its own stamp. Only members with a
-- registration or a consent change have a row; an erased member has none (SPEC §2: stop
-- everything).
CREATE VIEW member_channels AS
WITH profile_events AS (
    SELECT e.* FROM member_events e
    WHERE e.type IN ('member_registered', 'consent_changed')
      AND NOT EXISTS (SELECT 1 FROM member_events x WHERE x.member_id = e.member_id AND x.type = 'member_erased')
),
consents AS (
    SELECT e.member_id, c.key AS channel, c.value = 'true'::jsonb AS granted, e.occurred_at, e.event_id
    FROM profile_events e CROSS JOIN LATERAL jsonb_each(e.payload->'consent') AS c
    WHERE e.type = 'member_registered' AND jsonb_typeof(e.payload->'consent') = 'object'
      AND jsonb_typeof(c.value) = 'boolean'
    UNION ALL
    SELECT member_id, payload->>'channel', (payload->>'granted')::boolean, occurred_at, event_id
    FROM profile_events WHERE type = 'consent_changed'
),
reaches AS (
    SELECT e.member_id, r.key AS channel, (r.value->>'reachable')::boolean AS reachable,
           (r.value->>'at')::timestamptz AS occurred_at, r.value->>'event_id' AS event_id
    FROM profile_events e CROSS JOIN LATERAL jsonb_each(e.payload->'reach') AS r
    WHERE e.type = 'member_registered' AND jsonb_typeof(e.payload->'reach') = 'object'
    UNION ALL
    SELECT e.member_id, ch, e.payload->'reachable' ? ch, e.occurred_at, e.event_id
    FROM profile_events e CROSS JOIN unnest(ARRAY['email', 'line', 'sms', 'push', 'dm']) AS ch
    WHERE e.type = 'member_registered' AND jsonb_typeof(e.payload->'reachable') = 'array'
      AND coalesce(e.payload->'reach', '{}'::jsonb) IN ('{}'::jsonb, 'null'::jsonb)
),
latest_consent AS (
    SELECT DISTINCT ON (member_id, channel) member_id, channel, granted
    FROM consents ORDER BY member_id, channel, occurred_at DESC, event_id COLLATE "C" DESC
),
latest_reach AS (
    SELECT DISTINCT ON (member_id, channel) member_id, channel, reachable
    FROM reaches ORDER BY member_id, channel, occurred_at DESC, event_id COLLATE "C" DESC
),
per_channel AS (
    SELECT member_id, channel, coalesce(r.reachable, false) AS reachable, coalesce(c.granted, false) AS consented
    FROM latest_reach r FULL JOIN latest_consent c USING (member_id, channel)
)
SELECT member_id,
       coalesce(array_agg(channel ORDER BY channel) FILTER (WHERE reachable), '{}') AS reachable,
       coalesce(array_agg(channel ORDER BY channel) FILTER (WHERE consented), '{}') AS consented,
       coalesce(array_agg(channel ORDER BY channel) FILTER (WHERE reachable AND consented), '{}') AS contactable
FROM per_channel
GROUP BY member_id;
