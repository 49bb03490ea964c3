-- The shop's configuration (SPEC §7), one immutable, numbered row per applied change.
-- A version takes effect a lead time after it was applied (effective_at), so every
-- worker has read it before any member can decide under it (workflows.versions):
-- a version is never changed or removed, or a member's history would no longer say
-- which rules it was decided under. `goldenroute config apply` inserts the next
-- number under a table lock; `body` is the validated ShopConfig as JSON, `source`
-- the file as the shop wrote it, `templates` the shop's own templates (name → text).
CREATE TABLE config_versions (
    version      int PRIMARY KEY CHECK (version >= 1),
    digest       text NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    effective_at timestamptz NOT NULL,
    source       text NOT NULL,
    body         jsonb NOT NULL,
    templates    jsonb NOT NULL,
    note         text,
    CHECK (effective_at >= applied_at)
);

CREATE FUNCTION config_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'config_versions are immutable: apply a new version instead (version %)', OLD.version;
END
$$;

CREATE TRIGGER config_versions_immutable BEFORE UPDATE OR DELETE ON config_versions
    FOR EACH ROW EXECUTE FUNCTION config_versions_immutable();
