-- goldenroute's application database, created once on the first start of the
-- `postgresql` service (mounted into /docker-entrypoint-initdb.d by
-- docker-compose.yml; the entrypoint runs it with psql as the superuser).
--
-- Temporal keeps its own databases in the same server (`temporal` and
-- `temporal_visibility`, created by temporalio/auto-setup); the application's
-- data lives apart from them, owned by its own role so the worker never holds
-- the superuser's password.
--
-- The role's password comes from GOLDENROUTE_DB_PASSWORD in the postgresql
-- container's environment (psql's \getenv, PostgreSQL >= 15); it falls back to
-- 'goldenroute' so a bare `docker compose up` works. The worker's DATABASE_URL
-- in docker-compose.yml uses the same variable. Like every initdb script this
-- runs only on an empty data volume: to change the password later, use
-- ALTER ROLE goldenroute PASSWORD '...'.

\getenv goldenroute_password GOLDENROUTE_DB_PASSWORD
\if :{?goldenroute_password}
\else
\set goldenroute_password goldenroute
\endif

CREATE ROLE goldenroute LOGIN PASSWORD :'goldenroute_password';
CREATE DATABASE goldenroute OWNER goldenroute ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE goldenroute FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE goldenroute TO goldenroute;
