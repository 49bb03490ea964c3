-- LINE's webhook names a member by its LINE user id (source.userId): the ingress finds the
-- member through member_contacts.line_user_id for every follow / unfollow, so that lookup
-- must not scan the table. Partial: most rows have no LINE id. Not UNIQUE: two member
-- records of one person may carry the same id, and both then follow LINE's consent.
-- (A plain CREATE INDEX: migrations run in a transaction, where CONCURRENTLY cannot; it
-- holds writes to member_contacts for the seconds the build takes.)
CREATE INDEX member_contacts_line_user ON member_contacts (line_user_id) WHERE line_user_id IS NOT NULL;
