-- 008_counts_from_worker.sql: the workers compute the counter terms of the objects they insert, in C
-- (ingest/count_terms.c), and add them in one statement per transaction (docs/QUERIES.md#counting).
-- Measured in docs/BENCHMARKS.md#counters: in SQL, 007's triggers spent 15-40 us of PostgreSQL CPU per
-- object on plan nodes; the worker has every object parsed already. What stays with the triggers:
--   * INSERT by anyone but a worker (operators' SQL, bp_count_make_sparse's recounts need none);
--   * every UPDATE (a newer version of an object that exists: a resubmitted batch, an object moving
--     to another batch), old and new rows, as in 007: the worker never sees the old row, and the
--     upsert cannot return it;
--   * every DELETE (the API's and the delete messages' bp_delete_object / bp_delete_batch, a dead
--     message's objects in the upsert itself, cascades) and TRUNCATE;
--   * the batches' counter ('B').
-- A worker marks its transaction with SET LOCAL batchpipe.counted_by = 'worker' at BEGIN; the INSERT
-- trigger then leaves the inserted rows to it. The worker learns which rows its upsert inserted (not
-- updated, not skipped as older, not tombstoned) from the upsert's RETURNING (xmax = 0: inserted).
-- Slots and sums are 007's: the worker adds to the slot of its backend (pg_backend_pid() % 64).
-- The trigger function also returns at once when its statement changed nothing it counts (the
-- workers' upsert fires the UPDATE and DELETE triggers on every call, nearly always with no row).

CREATE OR REPLACE FUNCTION bp_count_objects_trigger() RETURNS trigger
LANGUAGE plpgsql
SET work_mem = '64MB' -- a statement's terms hashed in memory (a 1,000-object batch: a few MB)
SET jit = off         -- the planner's estimate for a few thousand rows reaches jit_above_cost, and
                      -- compiling costs far more than the statement (measured: BENCHMARKS.md#counters)
AS
$$
DECLARE
    my_slot smallint := (pg_backend_pid() % 64)::smallint;
    src text;
    sparse text[];
    zeros uuid[];
    hot text[];
    k text;
BEGIN
    -- the worker counted the rows its upsert inserted, in C (above)
    IF TG_OP = 'INSERT' AND current_setting('batchpipe.counted_by', true) = 'worker' THEN
        RETURN NULL;
    END IF;
    -- a statement-level trigger fires even when the statement changed no row: the workers' upsert
    -- fires the UPDATE and DELETE triggers on every call, nearly always with nothing to count, and the
    -- counting statement below is planned on each EXECUTE (measured: BENCHMARKS.md#counters)
    IF TG_OP = 'DELETE' THEN
        IF NOT EXISTS (SELECT 1 FROM bp_old) THEN
            RETURN NULL;
        END IF;
    ELSIF TG_OP = 'INSERT' THEN
        IF NOT EXISTS (SELECT 1 FROM bp_new) THEN
            RETURN NULL;
        END IF;
    ELSIF NOT EXISTS (SELECT 1 FROM bp_old o JOIN bp_new n USING (id)
                      WHERE o.data IS DISTINCT FROM n.data OR o.batch_id IS DISTINCT FROM n.batch_id) THEN
        RETURN NULL; -- no row whose data or batch changed (below)
    END IF;
    sparse := ARRAY(SELECT c.key FROM count_keys c);
    IF TG_OP = 'INSERT' THEN
        src := 'SELECT 1 AS s, id, batch_id, data FROM bp_new';
    ELSIF TG_OP = 'DELETE' THEN
        src := 'SELECT -1 AS s, id, batch_id, data FROM bp_old';
    ELSE
        -- only rows whose data or batch changed (a replayed message rewrites neither)
        src := 'SELECT x.s, o.id, x.batch_id, x.data FROM bp_old o JOIN bp_new n USING (id) '
               'CROSS JOIN LATERAL (VALUES (-1, o.batch_id, o.data), (1, n.batch_id, n.data)) AS x(s, batch_id, data) '
               'WHERE o.data IS DISTINCT FROM n.data OR o.batch_id IS DISTINCT FROM n.batch_id';
    END IF;
    EXECUTE bp_count_upsert_sql(src, true) INTO zeros, hot USING my_slot, sparse, TG_OP = 'INSERT';
    IF zeros IS NOT NULL THEN
        DELETE FROM count_terms WHERE h = ANY (zeros) AND slot = my_slot AND n = 0;
    END IF;
    IF hot IS NOT NULL THEN
        FOREACH k IN ARRAY hot LOOP
            PERFORM bp_count_make_sparse(k);
        END LOOP;
    END IF;
    RETURN NULL;
END
$$;

-- Add a worker's terms (kinds[i], keys[i], vals[i] (canonical JSON text), ns[i]), summed per term by the
-- worker (each term once), to the caller's slot, as 007's trigger adds a statement's: rows left at 0 are
-- removed, and a key this change shows to be sparse (007's rule, over the worker's transaction instead
-- of one statement) is made so. sparse is the set of sparse keys the worker computed the terms with: if
-- count_keys holds another set (a key became sparse since the worker read it), nothing is added and
-- applied is false, current holds the set to compute with again. Call it after the transaction's
-- upserts: from then on the transaction holds its lock on objects, so the set cannot change under it
-- until it commits (bp_count_make_sparse waits for the writers in flight).
CREATE FUNCTION bp_count_add_terms(sparse text[], kinds text[], keys text[], vals text[], ns bigint[],
                                   OUT applied boolean, OUT current text[])
LANGUAGE plpgsql
SET jit = off
AS
$$
DECLARE
    my_slot smallint := (pg_backend_pid() % 64)::smallint;
    zeros uuid[];
    hot text[];
    k text;
BEGIN
    current := ARRAY(SELECT c.key FROM count_keys c ORDER BY c.key COLLATE "C");
    IF NOT (current <@ coalesce(sparse, '{}') AND coalesce(sparse, '{}') <@ current) THEN
        applied := false;
        RETURN;
    END IF;
    WITH t AS MATERIALIZED (
        SELECT u.kind::"char" AS kind, u.key, u.val::jsonb AS value, u.n
        FROM unnest(kinds, keys, vals, ns) AS u(kind, key, val, n) WHERE u.n <> 0),
    up AS (
        INSERT INTO count_terms AS c (h, slot, kind, key, value, n)
        SELECT bp_count_hash(t.kind, t.key, t.value), my_slot, t.kind, t.key, t.value, t.n FROM t ORDER BY 1
        ON CONFLICT (h, slot) DO UPDATE SET n = c.n + EXCLUDED.n
        RETURNING c.h, c.n)
    SELECT (SELECT array_agg(up.h) FROM up WHERE up.n = 0),
           (SELECT array_agg(k.key) FROM t k
            JOIN (SELECT p.key, count(*) AS nv FROM t p WHERE p.kind = 'p' AND p.n > 0 GROUP BY p.key) AS pv
              ON pv.key = k.key
            WHERE k.kind = 'k' AND k.n >= 200 AND pv.nv >= 0.75 * k.n)
    INTO zeros, hot;
    IF zeros IS NOT NULL THEN
        DELETE FROM count_terms WHERE h = ANY (zeros) AND slot = my_slot AND n = 0;
    END IF;
    IF hot IS NOT NULL THEN
        FOREACH k IN ARRAY hot LOOP
            PERFORM bp_count_make_sparse(k);
        END LOOP;
    END IF;
    applied := true;
END
$$;
