-- 004_roles.sql: least-privilege roles. The API reads and deletes; the ingest workers write.
-- Neither owns the schema (the migrating user does). They are group roles (NOLOGIN): grant them to
-- login users, e.g.  CREATE ROLE api_login LOGIN PASSWORD '...' IN ROLE batchpipe_api;
-- Roles are cluster-wide, so creating them tolerates their existing already.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'batchpipe_api') THEN
        CREATE ROLE batchpipe_api NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'batchpipe_ingest') THEN
        CREATE ROLE batchpipe_ingest NOLOGIN;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO batchpipe_api, batchpipe_ingest;

-- the API: queries, deletes (objects and batches), and reading the offsets for ?wait=
GRANT SELECT, DELETE ON batches, objects TO batchpipe_api;
GRANT SELECT ON ingest_offsets TO batchpipe_api;

-- the workers: upserts and their offsets; no DELETE
GRANT SELECT, INSERT, UPDATE ON batches, objects, ingest_offsets TO batchpipe_ingest;
