-- 006_log_order.sql: latest wins by log order, not by clocks; deletes that survive late messages and
-- replays (docs/INGEST.md, "The upsert rule").
--
-- The version of a message is (ts_eff, partition, offset), compared as a row, where ts_eff is the
-- greatest of the message's own timestamp and every timestamp before it on its partition. So within a
-- partition a later offset always wins, whatever the publishers' clocks; across partitions the time
-- decides (the broker's LogAppendTime on topics batchpipe creates). objects.src_* hold the version of
-- the stored row.

-- the greatest message timestamp applied on the partition by this group (the clamp of ts_eff); it
-- moves in the same transaction as next_offset, under the same row lock
ALTER TABLE ingest_offsets ADD COLUMN last_ts bigint NOT NULL DEFAULT 0;

-- Deletes go through the topic ({"op": "delete", ...}, docs/TOPIC.md) and leave a tombstone with
-- their version: an older message applied later (a lagging worker, a replay by a new group, a dead
-- letter replayed) changes nothing, a newer write wins over the delete and removes the tombstone.
-- Each keeps the greatest version of the deletes of its id.
CREATE TABLE object_tombstones (
    object_id     text PRIMARY KEY,
    src_ts        bigint NOT NULL,
    src_partition integer NOT NULL,
    src_offset    bigint NOT NULL,
    deleted_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE batch_tombstones (
    batch_id      text PRIMARY KEY,
    src_ts        bigint NOT NULL,
    src_partition integer NOT NULL,
    src_offset    bigint NOT NULL,
    deleted_at    timestamptz NOT NULL DEFAULT now()
);

-- Delete object p_object_id as of version (p_ts, p_part, p_off): the row goes only if its version
-- is older; the tombstone keeps the greatest version. Returns the batch_id of the deleted row, NULL
-- when nothing was deleted (absent, or a newer version is stored). The one home of the rule: the
-- worker applies delete messages with it, the API's DELETE runs it once the broker acked its message.
CREATE FUNCTION bp_delete_object(p_object_id text, p_ts bigint, p_part integer, p_off bigint)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    deleted_from text;
BEGIN
    DELETE FROM objects
     WHERE object_id = p_object_id AND (src_ts, src_partition, src_offset) < (p_ts, p_part, p_off)
    RETURNING batch_id INTO deleted_from;
    INSERT INTO object_tombstones AS t (object_id, src_ts, src_partition, src_offset)
    VALUES (p_object_id, p_ts, p_part, p_off)
    ON CONFLICT (object_id) DO UPDATE
       SET src_ts = EXCLUDED.src_ts, src_partition = EXCLUDED.src_partition, src_offset = EXCLUDED.src_offset,
           deleted_at = now()
     WHERE (t.src_ts, t.src_partition, t.src_offset) < (EXCLUDED.src_ts, EXCLUDED.src_partition, EXCLUDED.src_offset);
    RETURN deleted_from;
END
$$;

-- Delete batch p_batch_id as of version (p_ts, p_part, p_off). With p_cascade its objects older than
-- the version go too (each leaving an object tombstone); without, nothing happens while it has
-- objects. The batch row goes when no object is left in it (one newer than the delete keeps it).
-- The batch tombstone makes older messages of the batch change nothing. Returns
--   'deleted'   the batch row was deleted
--   'absent'    there was no batch row (the tombstone is recorded all the same)
--   'not empty' without p_cascade, the batch has objects: nothing was done
--   'kept'      with p_cascade, objects newer than the delete remain: the row stays
-- The batch row is locked first: a worker writing into the batch meanwhile is waited for, and each
-- later statement here sees what it committed (READ COMMITTED: a snapshot per statement).
CREATE FUNCTION bp_delete_batch(p_batch_id text, p_cascade boolean, p_ts bigint, p_part integer, p_off bigint)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    existed boolean;
BEGIN
    PERFORM 1 FROM batches WHERE batch_id = p_batch_id FOR UPDATE;
    existed := FOUND;
    IF NOT p_cascade AND EXISTS (SELECT 1 FROM objects WHERE batch_id = p_batch_id) THEN
        RETURN 'not empty';
    END IF;
    IF p_cascade THEN
        WITH gone AS (
            DELETE FROM objects
             WHERE batch_id = p_batch_id AND (src_ts, src_partition, src_offset) < (p_ts, p_part, p_off)
            RETURNING object_id)
        INSERT INTO object_tombstones AS t (object_id, src_ts, src_partition, src_offset)
        SELECT object_id, p_ts, p_part, p_off FROM gone ORDER BY object_id
        ON CONFLICT (object_id) DO UPDATE
           SET src_ts = EXCLUDED.src_ts, src_partition = EXCLUDED.src_partition, src_offset = EXCLUDED.src_offset,
               deleted_at = now()
         WHERE (t.src_ts, t.src_partition, t.src_offset) < (EXCLUDED.src_ts, EXCLUDED.src_partition, EXCLUDED.src_offset);
    END IF;
    INSERT INTO batch_tombstones AS t (batch_id, src_ts, src_partition, src_offset)
    VALUES (p_batch_id, p_ts, p_part, p_off)
    ON CONFLICT (batch_id) DO UPDATE
       SET src_ts = EXCLUDED.src_ts, src_partition = EXCLUDED.src_partition, src_offset = EXCLUDED.src_offset,
           deleted_at = now()
     WHERE (t.src_ts, t.src_partition, t.src_offset) < (EXCLUDED.src_ts, EXCLUDED.src_partition, EXCLUDED.src_offset);
    IF NOT existed THEN
        RETURN 'absent';
    END IF;
    DELETE FROM batches b
     WHERE b.batch_id = p_batch_id AND NOT EXISTS (SELECT 1 FROM objects o WHERE o.batch_id = p_batch_id);
    RETURN CASE WHEN FOUND THEN 'deleted' ELSE 'kept' END;
END
$$;

-- the functions run with the caller's rights (SECURITY INVOKER): both roles need the tables
REVOKE ALL ON FUNCTION bp_delete_object(text, bigint, integer, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION bp_delete_batch(text, boolean, bigint, integer, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bp_delete_object(text, bigint, integer, bigint) TO batchpipe_api, batchpipe_ingest;
GRANT EXECUTE ON FUNCTION bp_delete_batch(text, boolean, bigint, integer, bigint) TO batchpipe_api, batchpipe_ingest;
GRANT SELECT, INSERT, UPDATE ON object_tombstones, batch_tombstones TO batchpipe_api, batchpipe_ingest;
-- bp_delete_batch locks the batch row (SELECT ... FOR UPDATE), which needs UPDATE on one column
GRANT UPDATE (updated_at) ON batches TO batchpipe_api;
-- the workers now delete too (delete messages, and tombstones a newer write makes obsolete)
GRANT DELETE ON batches, objects, object_tombstones, batch_tombstones TO batchpipe_ingest;
