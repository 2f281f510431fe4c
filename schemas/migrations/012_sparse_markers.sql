-- 012_sparse_markers.sql: a marker row in count_terms for every sparse key, so that the API's count of
-- one filter term reads its counter and "is the key sparse?" in one index scan (api/query.c
-- count_source), instead of the counter plus an EXISTS on count_keys.
-- Measured (docs/BENCHMARKS.md, 2026-12-07 afternoon): the EXISTS was a third btree scan in the
-- headline statement; each scan allocates a 27 kB BTScanOpaque, and with three of them a backend's
-- heap grew past glibc's trim threshold and shrank again at every statement (two brk calls, TLB
-- shootdowns on both cores): 1,690-2,009 tps against 4,770-5,524 with the marker.
--
-- The markers: kind 's' (key = the sparse key) for a pair's count, kind 'S' (no key) while any key
-- is sparse, for a value's count. Both in slot 0 with n = 0, so every sum over a term is unchanged
-- and `batchpipe counts verify` / `rebuild` (bp_counts_diff: a row counting 0 that no object counts
-- either is no difference) see nothing. A trigger on count_keys keeps them: whoever makes a key
-- sparse (bp_count_make_sparse, the worker's bp_count_add_terms) or clears count_keys (the TRUNCATE
-- trigger) keeps the markers right in the same transaction.

CREATE FUNCTION bp_count_keys_marker_trigger() RETURNS trigger
LANGUAGE plpgsql AS
$$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO count_terms AS c (h, slot, kind, key, value, n)
        SELECT bp_count_hash('s', k.key, NULL), 0, 's', k.key, NULL::jsonb, 0 FROM bp_new k
        UNION ALL
        SELECT bp_count_hash('S', NULL, NULL), 0, 'S', NULL::text, NULL::jsonb, 0
        ORDER BY 1
        ON CONFLICT (h, slot) DO NOTHING;
    ELSE
        DELETE FROM count_terms c USING bp_old k
        WHERE c.h = bp_count_hash('s', k.key, NULL) AND c.kind = 's';
        IF NOT EXISTS (SELECT 1 FROM count_keys) THEN
            DELETE FROM count_terms c WHERE c.h = bp_count_hash('S', NULL, NULL) AND c.kind = 'S';
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER count_keys_marker_insert AFTER INSERT ON count_keys
    REFERENCING NEW TABLE AS bp_new FOR EACH STATEMENT EXECUTE FUNCTION bp_count_keys_marker_trigger();
CREATE TRIGGER count_keys_marker_delete AFTER DELETE ON count_keys
    REFERENCING OLD TABLE AS bp_old FOR EACH STATEMENT EXECUTE FUNCTION bp_count_keys_marker_trigger();

-- The keys already sparse.
INSERT INTO count_terms (h, slot, kind, key, value, n)
SELECT bp_count_hash('s', k.key, NULL), 0, 's', k.key, NULL::jsonb, 0 FROM count_keys k
UNION ALL
SELECT bp_count_hash('S', NULL, NULL), 0, 'S', NULL::text, NULL::jsonb, 0 WHERE EXISTS (SELECT 1 FROM count_keys)
ON CONFLICT (h, slot) DO NOTHING;

-- Compacting folds the slots and drops the rows that count nothing: not the markers.
CREATE OR REPLACE FUNCTION bp_counts_compact() RETURNS bigint
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
    DELETE FROM count_terms WHERE slot = 0 AND n = 0 AND kind NOT IN ('s', 'S');
    RETURN moved;
END
$$;
