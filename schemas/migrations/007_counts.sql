-- 007_counts.sql: exact counts kept by the transactions that change the data (docs/QUERIES.md#counting).
-- One table of counters, count_terms, one row per (term, slot). A term is what a list filter counts:
--   't' every object            'b' the objects of one batch (key = batch_id)
--   'k' objects with a key      'v' objects with a value     'p' objects with a (key, value) pair
--   'B' every batch            'x' / 'y' objects with both "42" and 42 (the typed rule of value=)
-- An object counts once per term however often it repeats a pair. Values are compared as containment
-- compares them (42 = 42.0, "42" <> 42): numbers are kept in a canonical form (trim_scale).
-- Statement-level AFTER triggers with transition tables on objects and batches keep the counters, so
-- every writer (the workers' upsert, the API's deletes, any SQL function or psql session) is covered,
-- in its own transaction. A writer adds to the rows of its slot (its backend pid modulo 64): two
-- writers rarely touch the same counter row, so hot terms (type=shoe) do not serialize the workers.
-- A count is the sum over the slots. Rows are written in hash order within a statement.

CREATE TABLE count_terms (
    h     uuid     NOT NULL,  -- bp_count_hash(kind, key, value): values may be 64 KiB, too big for a btree key
    slot  smallint NOT NULL,
    kind  "char"   NOT NULL,
    key   text,               -- the key ('k', 'p') or the batch_id ('b')
    value jsonb,              -- the canonical value ('v', 'p')
    n     bigint   NOT NULL,  -- may be negative in one slot (added in one, removed in another)
    PRIMARY KEY (h, slot)
);

-- A value as containment compares it: numbers by value (1.50 and 1.5 are one term).
CREATE FUNCTION bp_count_canon(v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT CASE WHEN jsonb_typeof(v) = 'number' THEN to_jsonb(trim_scale(v::numeric)) ELSE v END $$;

-- The term's identity; value must be canonical already (bp_count_canon). Lengths make it unambiguous.
CREATE FUNCTION bp_count_hash(kind "char", key text, value jsonb) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT md5(kind::text || coalesce(length(key)::text || ':' || key, '-') || coalesce(value::text, '-'))::uuid $$;

-- A string that the typed rule of value= also reads as JSON (a number, true, false, null): the
-- canonical typed value, else NULL. value=42 matches "42" or 42: the count of the objects holding
-- both is a term of its own ('x'; 'y' for key=K&value=42, both under K) so that the union is exact.
CREATE FUNCTION bp_count_typed(v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT CASE WHEN jsonb_typeof(v) = 'string'
                AND (v #>> '{}') ~ '^(-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?|true|false|null)$'
               THEN bp_count_canon((v #>> '{}')::jsonb) END $$;

-- The hash of one filter term ({"key"}, {"value"} or {"key", "value"}): the API's page statement
-- reads a single term's counter with it (inlined and folded when the statement is planned).
CREATE FUNCTION bp_count_term_hash(t jsonb) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT CASE WHEN jsonb_typeof(t -> 'key') = 'string' AND t ? 'value'
                   THEN bp_count_hash('p', t ->> 'key', bp_count_canon(t -> 'value'))
               WHEN jsonb_typeof(t -> 'key') = 'string' THEN bp_count_hash('k', t ->> 'key', NULL)
               WHEN t ? 'value' THEN bp_count_hash('v', NULL, bp_count_canon(t -> 'value')) END $$;

-- The count of one term (value canonical): at most 64 rows read through the primary key.
CREATE FUNCTION bp_count_term(kind "char", key text, value jsonb) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE AS
$$ SELECT coalesce(sum(c.n), 0)::bigint FROM count_terms c WHERE c.h = bp_count_hash($1, $2, $3) $$;

-- Sparse keys (count_keys): a key seen with nearly as many distinct values as objects (a `sku`, a
-- price with cents) would add a counter row for almost every object it is in. Its pairs are rare, so
-- they are counted exactly through the GIN index instead (bp_count_sparse_extra): for the elements of
-- a sparse key no 'p' / 'y' term is kept and no 'v' / 'x' term either (a value counter counts the
-- objects holding the value under a dense key, or with no key); its 'k' term stays. A key becomes
-- sparse when one INSERT statement brings at least 200 objects with it holding at least 0.75 distinct
-- values of it per object (750 values among 1,000 objects: a value then holds 1/1,000 to 1/1,600 of
-- them, whatever the statement's size from 200 objects up); then
-- bp_count_make_sparse moves its counts over, under a lock that waits for the writers in flight.
-- Once sparse, a key stays sparse.
CREATE TABLE count_keys (
    key   text        PRIMARY KEY,
    since timestamptz NOT NULL DEFAULT now()
);

-- The terms of the rows of src (a query of rows (s, id, batch_id, data): s = +1 counted in, -1
-- counted out; (s, id) unique), summed per term: rows (kind, key, value, n), n <> 0. With totals, the
-- 't' and 'b' terms too. $2 is the sparse keys (text[]). Set-based over the whole statement, with as
-- little work per element as PostgreSQL allows (measured in docs/BENCHMARKS.md#counters):
-- * the objects are grouped by their elements of dense keys (and the sparse keys they hold), one
--   jsonpath call and one hash per object: objects alike (the usual data: a few keys of a few values)
--   are expanded once per group, weighted by the group's size;
-- * the elements of every group are flattened once, by jsonb_to_recordset (an object with an
--   element that is not an object, a key that is not a string or a null value, which it would not
--   tell apart, takes the slower general path instead, one object at a time);
-- * an object that repeats no key and no value (nearly all) has each of its terms once per element,
--   so its elements are summed per (key, value) in one hash aggregate and the 'k', 'v' and 'p' terms
--   read from these sums; the objects that repeat a key or a value (checked per object) go through a
--   per-object deduplication;
-- * values are compared as jsonb compares them (1.5 = 1.50, also in hashing) and put in canonical
--   form (bp_count_canon) only once per term, at the end;
-- * the typed rule's strings are found by their first character before the regex.
CREATE FUNCTION bp_count_terms_sql(src text, totals boolean) RETURNS text
LANGUAGE sql IMMUTABLE AS
$f$ SELECT format($q$
    WITH d AS MATERIALIZED (
        SELECT r.s, r.id, r.batch_id, r.data,
               NOT jsonb_path_exists(r.data, '$[*] ? (@.type() != "object" || @.key.type() != "string" || @.value == null)') AS plain
        FROM (%s) AS r),
    grp AS MATERIALIZED (
        SELECT -row_number() OVER () AS id, q.s * q.m AS s, q.dense, q.sk FROM (
            SELECT d.s, jsonb_path_query_array(d.data, '$[*] ? (!(@.key == $s[*]))', sp.v) AS dense,
                   jsonb_path_query_array(d.data, '$[*].key ? (@ == $s[*])', sp.v) AS sk, count(*) AS m
            FROM d CROSS JOIN (SELECT jsonb_build_object('s', to_jsonb($2::text[])) AS v) AS sp
            WHERE d.plain GROUP BY 1, 2, 3) AS q),
    el AS MATERIALIZED (
        SELECT g.s, g.id, f.dup, e.key AS k, e.value AS v
        FROM grp g
        CROSS JOIN LATERAL (SELECT count(DISTINCT r.key) < count(r.key) OR count(DISTINCT r.value) < count(r.value) AS dup
                            FROM jsonb_to_recordset(g.dense) AS r(key text, value jsonb)) AS f
        CROSS JOIN LATERAL jsonb_to_recordset(g.dense) AS e(key text, value jsonb)
        UNION ALL
        SELECT d.s, d.id, true, x.k, CASE WHEN x.k IS NULL OR x.k <> ALL ($2::text[]) THEN x.v END
        FROM d CROSS JOIN LATERAL jsonb_array_elements(d.data) AS e
        CROSS JOIN LATERAL (SELECT CASE WHEN jsonb_typeof(e -> 'key') = 'string' THEN e ->> 'key' END AS k,
                                   CASE WHEN jsonb_typeof(e) = 'object' THEN e -> 'value' END AS v) AS x
        WHERE NOT d.plain),
    g AS MATERIALIZED (
        SELECT el.k, el.v, sum(el.s) AS n FROM el WHERE NOT el.dup GROUP BY el.k, el.v),
    eld AS MATERIALIZED (SELECT * FROM el WHERE el.dup),
    ty AS MATERIALIZED (
        SELECT el.s, el.id, el.k, el.v, bp_count_typed(el.v) AS t FROM el
        WHERE jsonb_typeof(el.v) = 'string'
          AND substr(el.v #>> '{}', 1, 1) IN ('-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 't', 'f', 'n')),
    per_obj AS (
        SELECT DISTINCT a.s, a.id, a.kind, a.key, a.value FROM (
            SELECT eld.s, eld.id, 'k'::"char" AS kind, eld.k AS key, NULL::jsonb AS value FROM eld WHERE eld.k IS NOT NULL
            UNION ALL
            SELECT eld.s, eld.id, 'v', NULL, eld.v FROM eld WHERE eld.v IS NOT NULL
            UNION ALL
            SELECT eld.s, eld.id, 'p', eld.k, eld.v FROM eld WHERE eld.k IS NOT NULL AND eld.v IS NOT NULL
            UNION ALL
            SELECT ty.s, ty.id, 'x', NULL, jsonb_build_array(ty.v, ty.t) FROM ty
            JOIN el e2 ON e2.id = ty.id AND e2.s = ty.s AND e2.v = ty.t
            UNION ALL
            SELECT ty.s, ty.id, 'y', ty.k, jsonb_build_array(ty.v, ty.t) FROM ty
            JOIN el e2 ON e2.id = ty.id AND e2.s = ty.s AND e2.k = ty.k AND e2.v = ty.t
            WHERE ty.k IS NOT NULL) AS a)
    SELECT z.kind, z.key, bp_count_canon(z.value) AS value, sum(z.n)::bigint AS n FROM (
        SELECT 't'::"char" AS kind, NULL::text AS key, NULL::jsonb AS value, sum(d.s) AS n FROM d WHERE %s
        UNION ALL
        SELECT 'b', d.batch_id, NULL, sum(d.s) FROM d WHERE %s GROUP BY d.batch_id
        UNION ALL
        SELECT 'k', g.k, NULL, sum(g.n) FROM g WHERE g.k IS NOT NULL GROUP BY g.k
        UNION ALL
        SELECT 'k', x.k, NULL, sum(a.n) FROM (SELECT grp.sk, sum(grp.s) AS n FROM grp GROUP BY grp.sk) AS a
        CROSS JOIN LATERAL (SELECT DISTINCT y #>> '{}' AS k FROM jsonb_array_elements(a.sk) AS y) AS x GROUP BY x.k
        UNION ALL
        SELECT 'v', NULL, g.v, sum(g.n) FROM g WHERE g.v IS NOT NULL GROUP BY g.v
        UNION ALL
        SELECT 'p', g.k, g.v, g.n FROM g WHERE g.k IS NOT NULL AND g.v IS NOT NULL
        UNION ALL
        SELECT p.kind, p.key, p.value, p.s FROM per_obj p) AS z
    GROUP BY z.kind, z.key, z.value HAVING sum(z.n) <> 0 $q$, src, totals::text, totals::text) $f$;

-- The statement that adds the terms of src to the writer's slot ($1), rows written in hash order:
-- it returns the rows left at 0 in the slot (to delete) and, when $3, the keys that this change
-- shows to be sparse (above). $2: the sparse keys.
CREATE FUNCTION bp_count_upsert_sql(src text, totals boolean) RETURNS text
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
            WHERE $3 AND k.kind = 'k' AND k.n >= 200 AND pv.nv >= 0.75 * k.n) $q$,
    bp_count_terms_sql(src, totals)) $f$;

-- Make key sparse (above): under a lock that waits for the transactions writing objects and holds
-- new ones back until this one commits, take the key's objects out of the counters as they were
-- counted and back in with the key sparse. Only under READ COMMITTED (each statement here must see
-- every writer that committed before the lock). Returns whether it did.
CREATE FUNCTION bp_count_make_sparse(k text) RETURNS boolean
LANGUAGE plpgsql
SET work_mem = '64MB'
SET jit = off
AS
$$
DECLARE
    my_slot smallint := (pg_backend_pid() % 64)::smallint;
    old text[];
    pat jsonb := jsonb_build_array(jsonb_build_object('key', k));
    src text := 'SELECT %s AS s, o.id, o.batch_id, o.data FROM objects o WHERE o.data @> %L::jsonb';
    r record;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RETURN false;
    END IF;
    LOCK TABLE objects IN SHARE ROW EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM count_keys c WHERE c.key = k) THEN
        RETURN false;
    END IF;
    old := ARRAY(SELECT c.key FROM count_keys c);
    EXECUTE bp_count_upsert_sql(format(src, -1, pat), false) INTO r USING my_slot, old, false;
    INSERT INTO count_keys (key) VALUES (k);
    EXECUTE bp_count_upsert_sql(format(src, 1, pat), false) INTO r USING my_slot, old || k, false;
    DELETE FROM count_terms c WHERE c.slot = my_slot AND c.n = 0 AND c.kind IN ('p', 'v', 'x', 'y');
    RETURN true;
END
$$;

-- Add the statement's changes to the writer's slot: +1 for the rows counted in, -1 for the rows
-- counted out, read from the transition tables (only the trigger function itself sees them, so the
-- statement is built here). Rows that reach 0 in this slot are removed (rows left at 0 in other slots
-- stay until `batchpipe counts rebuild` folds them).
CREATE FUNCTION bp_count_objects_trigger() RETURNS trigger
LANGUAGE plpgsql
SET work_mem = '64MB' -- a statement's terms hashed in memory (a 1,000-object batch: a few MB)
SET jit = off         -- the planner's estimate for a few thousand rows reaches jit_above_cost, and
                      -- compiling costs far more than the statement (measured: BENCHMARKS.md#counters)
AS
$$
DECLARE
    my_slot smallint := (pg_backend_pid() % 64)::smallint;
    src text;
    sparse text[] := ARRAY(SELECT c.key FROM count_keys c);
    zeros uuid[];
    hot text[];
    k text;
BEGIN
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

-- Separate triggers: PostgreSQL refuses transition tables on a trigger for several events. An
-- INSERT ... ON CONFLICT DO UPDATE fires both: inserted rows in one, updated rows in the other.
CREATE TRIGGER objects_count_insert AFTER INSERT ON objects
    REFERENCING NEW TABLE AS bp_new FOR EACH STATEMENT EXECUTE FUNCTION bp_count_objects_trigger();
CREATE TRIGGER objects_count_update AFTER UPDATE ON objects
    REFERENCING OLD TABLE AS bp_old NEW TABLE AS bp_new FOR EACH STATEMENT EXECUTE FUNCTION bp_count_objects_trigger();
CREATE TRIGGER objects_count_delete AFTER DELETE ON objects
    REFERENCING OLD TABLE AS bp_old FOR EACH STATEMENT EXECUTE FUNCTION bp_count_objects_trigger();

CREATE FUNCTION bp_count_batches_trigger() RETURNS trigger
LANGUAGE plpgsql AS
$$
DECLARE
    delta bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO delta FROM bp_new;
    ELSE
        SELECT -count(*) INTO delta FROM bp_old;
    END IF;
    IF delta <> 0 THEN
        INSERT INTO count_terms AS c (h, slot, kind, n)
        VALUES (bp_count_hash('B', NULL, NULL), (pg_backend_pid() % 64)::smallint, 'B', delta)
        ON CONFLICT (h, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER batches_count_insert AFTER INSERT ON batches
    REFERENCING NEW TABLE AS bp_new FOR EACH STATEMENT EXECUTE FUNCTION bp_count_batches_trigger();
CREATE TRIGGER batches_count_delete AFTER DELETE ON batches
    REFERENCING OLD TABLE AS bp_old FOR EACH STATEMENT EXECUTE FUNCTION bp_count_batches_trigger();

-- TRUNCATE fires no row-set triggers: forget what the truncated table counted.
CREATE FUNCTION bp_count_truncate_trigger() RETURNS trigger
LANGUAGE plpgsql AS
$$
BEGIN
    IF TG_TABLE_NAME = 'objects' THEN
        DELETE FROM count_terms WHERE kind <> 'B';
        DELETE FROM count_keys; -- nothing left to count through the index either
    ELSE
        DELETE FROM count_terms WHERE kind = 'B';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER objects_count_truncate AFTER TRUNCATE ON objects
    FOR EACH STATEMENT EXECUTE FUNCTION bp_count_truncate_trigger();
CREATE TRIGGER batches_count_truncate AFTER TRUNCATE ON batches
    FOR EACH STATEMENT EXECUTE FUNCTION bp_count_truncate_trigger();

-- Every term whose maintained count differs from a real count in this snapshot (none: all is right).
-- `batchpipe counts verify` prints them; `batchpipe counts rebuild` adds (actual - counted).
CREATE FUNCTION bp_counts_diff()
RETURNS TABLE (h uuid, kind "char", key text, value jsonb, counted bigint, actual bigint)
LANGUAGE plpgsql STABLE AS
$$
BEGIN
    RETURN QUERY EXECUTE format($q$
    WITH truth AS (
        SELECT bp_count_hash(a.kind, a.key, a.value) AS h, a.kind, a.key, a.value, a.n
        FROM (%s
              UNION ALL SELECT 'B', NULL, NULL, count(*) FROM batches) AS a),
    counted AS (
        SELECT c.h, (array_agg(c.kind))[1] AS kind, min(c.key) AS key, (array_agg(c.value))[1] AS value,
               sum(c.n)::bigint AS n
        FROM count_terms c GROUP BY c.h)
    SELECT coalesce(t.h, c.h), coalesce(t.kind, c.kind), coalesce(t.key, c.key), coalesce(t.value, c.value),
           coalesce(c.n, 0), coalesce(t.n, 0)::bigint
    FROM truth t FULL JOIN counted c ON c.h = t.h
    WHERE coalesce(c.n, 0) <> coalesce(t.n, 0) $q$,
        bp_count_terms_sql('SELECT 1 AS s, id, batch_id, data FROM objects', true))
    USING 0, ARRAY(SELECT k.key FROM count_keys k);
END
$$;

-- Fold every term's slots into slot 0 and drop the terms that count nothing. Online: it locks the
-- rows it moves, so a writer that needs one of them waits until this commits.
CREATE FUNCTION bp_counts_compact() RETURNS bigint
LANGUAGE plpgsql AS
$$
DECLARE
    moved bigint;
BEGIN
    WITH m AS (DELETE FROM count_terms WHERE slot <> 0 RETURNING *),
    agg AS (SELECT m.h, (array_agg(m.kind))[1] AS kind, min(m.key) AS key, (array_agg(m.value))[1] AS value,
                   sum(m.n)::bigint AS n FROM m GROUP BY m.h),
    ins AS (INSERT INTO count_terms AS c (h, slot, kind, key, value, n)
            SELECT agg.h, 0, agg.kind, agg.key, agg.value, agg.n FROM agg ORDER BY agg.h
            ON CONFLICT (h, slot) DO UPDATE SET n = c.n + EXCLUDED.n RETURNING 1)
    SELECT count(*) INTO moved FROM ins;
    DELETE FROM count_terms WHERE slot = 0 AND n = 0;
    RETURN moved;
END
$$;

-- ---- reading ----

-- Whether data holds v (canonical) as the value of an element whose key is not sparse (or that has
-- no key): what a 'v' counter counts.
CREATE FUNCTION bp_count_dense_has(data jsonb, v jsonb, sparse text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE AS
$$ SELECT EXISTS (SELECT 1 FROM jsonb_array_elements(data) AS e
                  WHERE jsonb_typeof(e) = 'object' AND e -> 'value' = v
                    AND (jsonb_typeof(e -> 'key') <> 'string' OR NOT (e ->> 'key') = ANY (sparse)
                         OR NOT e ? 'key')) $$;

-- What the counters leave out of the count of one filter term t ({"key", "value"} or {"value"}),
-- counted through the GIN index: for a pair of a sparse key, its objects; for a value, the objects
-- holding it under a sparse key only (a value counter counts those holding it under a dense key).
-- Both are rare by the rule that makes a key sparse, so this reads few index entries. 0 when no key
-- is sparse.
CREATE FUNCTION bp_count_sparse_extra(t jsonb) RETURNS bigint
LANGUAGE plpgsql STABLE AS
$$
DECLARE
    sparse text[] := ARRAY(SELECT c.key FROM count_keys c);
    v jsonb := bp_count_canon(t -> 'value');
    n bigint;
BEGIN
    IF cardinality(sparse) = 0 OR NOT t ? 'value' THEN
        RETURN 0;
    END IF;
    IF t ? 'key' THEN
        IF jsonb_typeof(t -> 'key') = 'string' AND (t ->> 'key') = ANY (sparse) THEN
            SELECT count(*) INTO n FROM objects o
            WHERE o.data @> jsonb_build_array(jsonb_build_object('key', t -> 'key', 'value', v));
            RETURN n;
        END IF;
        RETURN 0;
    END IF;
    SELECT count(*) INTO n FROM objects o
    WHERE o.data @> ANY (ARRAY(SELECT jsonb_build_array(jsonb_build_object('key', k, 'value', v)) FROM unnest(sparse) AS k))
      AND NOT bp_count_dense_has(o.data, v, sparse);
    RETURN n;
END
$$;

-- The exact count of one filter term ({"key"}, {"value"} or {"key", "value"}): its counter plus
-- what sparse keys leave to the index.
CREATE FUNCTION bp_count_filter_term(t jsonb) RETURNS bigint
LANGUAGE sql STABLE AS
$$ SELECT (SELECT coalesce(sum(c.n), 0) FROM count_terms c WHERE c.h = bp_count_term_hash(t))::bigint
          + bp_count_sparse_extra(t) $$;

-- The objects holding both the string s and its typed value typed (canonical), under the same key
-- when key is not NULL: the 'x' / 'y' counter plus, when sparse keys are involved, the objects the
-- counter leaves out (one of the two held under a sparse key only), read through the index.
CREATE FUNCTION bp_count_typed_both(key text, s jsonb, typed jsonb) RETURNS bigint
LANGUAGE plpgsql STABLE AS
$$
DECLARE
    sparse text[] := ARRAY(SELECT c.key FROM count_keys c);
    n bigint;
BEGIN
    IF key IS NOT NULL THEN
        IF key = ANY (sparse) THEN
            SELECT count(*) INTO n FROM objects o
            WHERE o.data @> jsonb_build_array(jsonb_build_object('key', key, 'value', s),
                                              jsonb_build_object('key', key, 'value', typed));
            RETURN n;
        END IF;
        RETURN bp_count_term('y', key, jsonb_build_array(s, typed));
    END IF;
    n := bp_count_term('x', NULL, jsonb_build_array(s, typed));
    IF cardinality(sparse) > 0 THEN
        n := n + (SELECT count(*) FROM objects o
                  WHERE o.data @> ANY (ARRAY(SELECT jsonb_build_array(jsonb_build_object('key', k, 'value', x))
                                             FROM unnest(sparse) AS k, (VALUES (s), (typed)) AS w(x)))
                    AND o.data @> jsonb_build_array(jsonb_build_object('value', s), jsonb_build_object('value', typed))
                    AND NOT (bp_count_dense_has(o.data, s, sparse) AND bp_count_dense_has(o.data, typed, sparse)));
    END IF;
    RETURN n;
END
$$;

-- The 'x' / 'y' counter when a is {"value": S} (or {"key": K, "value": S}), S a string the typed
-- rule reads as b's value (with the same K): NULL when the two terms are not such a pair.
CREATE FUNCTION bp_count_typed_pair(a jsonb, b jsonb) RETURNS bigint
LANGUAGE plpgsql STABLE AS
$$
DECLARE
    typed jsonb := bp_count_typed(a -> 'value');
BEGIN
    IF typed IS NULL OR NOT b ? 'value' OR bp_count_canon(b -> 'value') <> typed THEN
        RETURN NULL;
    END IF;
    IF NOT a ? 'key' AND NOT b ? 'key' AND (SELECT count(*) FROM jsonb_object_keys(a)) = 1
       AND (SELECT count(*) FROM jsonb_object_keys(b)) = 1 THEN
        RETURN bp_count_typed_both(NULL, a -> 'value', typed);
    END IF;
    IF jsonb_typeof(a -> 'key') = 'string' AND a -> 'key' = b -> 'key'
       AND (SELECT count(*) FROM jsonb_object_keys(a)) = 2 AND (SELECT count(*) FROM jsonb_object_keys(b)) = 2 THEN
        RETURN bp_count_typed_both(a ->> 'key', a -> 'value', typed);
    END IF;
    RETURN NULL;
END
$$;

-- The count of objects matching every term of terms (a JSON array of {"key"}, {"value"} or
-- {"key", "value"} objects, as in a containment filter) and, when batch_id is not NULL, in that batch.
-- A single term, or a batch alone, is read from its counter. Otherwise the bound is the rarest
-- counter: within lim, the matches of the rarest are read and checked (exact, cost bounded by lim);
-- beyond it, an estimate from the counters assuming the terms independent (exact = false).
CREATE FUNCTION bp_count_and(terms jsonb, batch_id text, lim bigint, OUT n bigint, OUT exact boolean)
LANGUAGE plpgsql STABLE AS
$$
DECLARE
    total bigint := bp_count_term('t', NULL, NULL);
    t jsonb;
    c bigint;
    rarest jsonb;
    ub bigint;
    by_batch boolean := false;
    est float8;
    nterms int := 0;
    unknown boolean := false;
    seen jsonb[] := '{}';
BEGIN
    IF batch_id IS NOT NULL THEN
        ub := bp_count_term('b', batch_id, NULL);
        by_batch := true;
        est := ub;
    ELSE
        est := total;
    END IF;
    FOR t IN SELECT DISTINCT e FROM jsonb_array_elements(terms) AS e LOOP
        nterms := nterms + 1;
        seen := seen || t;
        IF jsonb_typeof(t) = 'object' AND t ? 'key' AND t ? 'value' AND jsonb_typeof(t -> 'key') = 'string' THEN
            c := bp_count_filter_term(jsonb_build_object('key', t -> 'key', 'value', t -> 'value'));
        ELSIF jsonb_typeof(t) = 'object' AND t ? 'key' AND jsonb_typeof(t -> 'key') = 'string' THEN
            c := bp_count_term('k', t ->> 'key', NULL);
        ELSIF jsonb_typeof(t) = 'object' AND t ? 'value' THEN
            c := bp_count_filter_term(jsonb_build_object('value', t -> 'value'));
        ELSE
            c := total; -- not a term the counters know: bound by everything
            unknown := true;
        END IF;
        IF total > 0 THEN
            est := est * c / total;
        END IF;
        IF ub IS NULL OR c < ub THEN
            ub := c;
            rarest := t;
            by_batch := false;
        END IF;
    END LOOP;
    IF nterms = 2 AND batch_id IS NULL AND NOT unknown THEN
        -- "42" and 42 (the typed rule's two alternatives) in one object: a counter of its own
        n := bp_count_typed_pair(seen[1], seen[2]);
        IF n IS NULL THEN
            n := bp_count_typed_pair(seen[2], seen[1]);
        END IF;
        IF n IS NOT NULL THEN
            exact := true;
            RETURN;
        END IF;
    END IF;
    IF nterms = 0 THEN
        n := coalesce(ub, total);
        exact := true;
    ELSIF nterms = 1 AND batch_id IS NULL AND NOT unknown THEN
        n := ub;
        exact := true;
    ELSIF ub = 0 THEN
        n := 0;
        exact := true;
    ELSIF ub <= lim THEN
        -- IS TRUE keeps a condition out of the index: only the rarest one drives the scan
        IF by_batch THEN
            SELECT count(*) INTO n FROM objects o WHERE o.batch_id = bp_count_and.batch_id AND (o.data @> terms) IS TRUE;
        ELSE
            SELECT count(*) INTO n FROM objects o
            WHERE o.data @> jsonb_build_array(rarest) AND (o.data @> terms) IS TRUE
              AND (bp_count_and.batch_id IS NULL OR (o.batch_id = bp_count_and.batch_id) IS TRUE);
        END IF;
        exact := true;
    ELSE
        n := least(ub, greatest(1, round(est)))::bigint;
        exact := false;
    END IF;
END
$$;

-- The count of GET /api/v1/objects/: objects matching any of alts (a JSON array of containment
-- arrays, as the API builds them) and in batch_id when not NULL. Inclusion-exclusion over the
-- alternatives (at most 4), each intersection counted by bp_count_and. mode: 'auto' (exact within
-- lim, counters beyond), 'exact' (exact within exact_max), 'estimate' (counters only; exact when a
-- counter answers alone).
CREATE FUNCTION bp_count_objects(alts jsonb, batch_id text, lim bigint, mode text, exact_max bigint,
                                 OUT n bigint, OUT exact boolean)
LANGUAGE plpgsql STABLE AS
$$
DECLARE
    nalts int := CASE WHEN jsonb_typeof(alts) = 'array' THEN jsonb_array_length(alts) ELSE 0 END;
    bound bigint := CASE mode WHEN 'exact' THEN exact_max WHEN 'estimate' THEN -1 ELSE lim END;
    mask int;
    terms jsonb;
    sub record;
    total numeric := 0;
BEGIN
    exact := true;
    IF nalts = 0 THEN
        SELECT a.n, a.exact INTO n, exact FROM bp_count_and('[]', batch_id, bound) a;
        RETURN;
    END IF;
    IF nalts > 4 THEN
        RAISE EXCEPTION 'bp_count_objects: at most 4 alternatives';
    END IF;
    FOR mask IN 1 .. (1 << nalts) - 1 LOOP
        terms := '[]';
        FOR i IN 0 .. nalts - 1 LOOP
            IF mask & (1 << i) <> 0 THEN
                terms := terms || (alts -> i);
            END IF;
        END LOOP;
        SELECT a.n, a.exact INTO sub FROM bp_count_and(terms, batch_id, bound) a;
        IF length(replace(mask::bit(4)::text, '0', '')) % 2 = 1 THEN
            total := total + sub.n;
        ELSE
            total := total - sub.n;
        END IF;
        exact := exact AND sub.exact;
    END LOOP;
    n := greatest(total, 0)::bigint;
END
$$;

-- The count of GET /api/v1/batches/: batches with at least one object matching any of alts. Without
-- a filter, the batches' counter. With one, exact when the matching objects are within the bound
-- (their distinct batches are counted); beyond it, an estimate assuming the matches spread evenly
-- over batches of the average size (exact = false).
CREATE FUNCTION bp_count_batches(alts jsonb, lim bigint, mode text, exact_max bigint,
                                 OUT n bigint, OUT exact boolean)
LANGUAGE plpgsql STABLE AS
$$
DECLARE
    nalts int := CASE WHEN jsonb_typeof(alts) = 'array' THEN jsonb_array_length(alts) ELSE 0 END;
    bound bigint := CASE mode WHEN 'exact' THEN exact_max WHEN 'estimate' THEN -1 ELSE lim END;
    nb bigint := bp_count_term('B', NULL, NULL);
    total bigint := bp_count_term('t', NULL, NULL);
    m record;
    cond text;
BEGIN
    IF nalts = 0 THEN
        n := nb;
        exact := true;
        RETURN;
    END IF;
    SELECT c.n, c.exact INTO m FROM bp_count_objects(alts, NULL, lim, 'estimate', exact_max) c;
    IF m.n = 0 AND m.exact THEN
        n := 0;
        exact := true;
    ELSIF m.exact AND m.n <= bound THEN
        SELECT string_agg(format('o.data @> ($1 -> %s)', i), ' OR ') INTO cond FROM generate_series(0, nalts - 1) AS i;
        EXECUTE 'SELECT count(DISTINCT o.batch_id) FROM objects o WHERE ' || cond INTO n USING alts;
        exact := true;
    ELSE
        n := least(nb, m.n, greatest(1, round(nb * (1 - power(1 - least(m.n::float8 / greatest(total, 1), 1),
                                                               total::float8 / greatest(nb, 1))))))::bigint;
        exact := false;
    END IF;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON count_terms TO batchpipe_api, batchpipe_ingest;
GRANT SELECT ON count_keys TO batchpipe_api;
GRANT SELECT, INSERT ON count_keys TO batchpipe_ingest; -- a worker's insert may make a key sparse
