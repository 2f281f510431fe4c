-- 011_sparse_rule.sql: a key becomes sparse (its pairs and values counted through the GIN index, not
-- by counter rows: 007_counts.sql, "Sparse keys") from 0.25 distinct values per object instead of 0.75.
-- Measured (docs/BENCHMARKS.md, 2026-12-07): keys that mix a dozen words with thousands of distinct
-- numbers (bench/ingest.py's default data: about 0.4 distinct values per object) stayed dense under
-- 0.75, so nearly every number was a counter row of its own, mostly a new row in every transaction:
-- counting doubled PostgreSQL's CPU per object and ingest fell to 0.39 of COPY. At 0.25 a value of a
-- sparse key is held by 1/250 of the key's objects on average: rare enough, mostly, for the GIN index
-- to count it cheaply (a frequent value of a sparse key costs what it matches). Keys of a handful of values (0.003 per object in the assessment-
-- like data) stay dense by far. The two statements that apply the rule are redefined with the new
-- constant and nothing else changed; keys already sparse stay so, and a dense key becomes sparse the
-- next time a statement (or a worker's transaction) with 200 of its objects shows the new ratio.

CREATE OR REPLACE FUNCTION bp_count_upsert_sql(src text, totals boolean) RETURNS text
LANGUAGE sql IMMUTABLE AS
$f$ SELECT format($q$
    WITH t AS MATERIALIZED (%s),
    up AS (
        INSERT INTO count_terms AS c (h, slot, kind, key, value, n)
        SELECT bp_count_hash(t.kind, t.key, t.value), $1, t.kind, t.key, t.value, t.n FROM t ORDER BY 1
        ON CONFLICT (h, slot) DO UPDATE SET n = c.n + EXCLUDED.n
        RETURNING c.h, c.n)
    SELECT (SELECT array_agg(up.h) FROM up WHERE up.n = 0),
           (SELECT array_agg(k.key) FROM t k
            JOIN (SELECT p.key, count(*) AS nv FROM t p WHERE $3 AND p.kind = 'p' GROUP BY p.key) AS pv
              ON pv.key = k.key
            WHERE $3 AND k.kind = 'k' AND k.n >= 200 AND pv.nv >= 0.25 * k.n) $q$,
    bp_count_terms_sql(src, totals)) $f$;

CREATE OR REPLACE FUNCTION bp_count_add_terms(sparse text[], kinds text[], keys text[], vals text[], ns bigint[],
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
            WHERE k.kind = 'k' AND k.n >= 200 AND pv.nv >= 0.25 * k.n)
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
