-- 003_read_indexes.sql: what the read path needs beyond 001_init.sql.
-- GET /api/v1/batches/ lists batches in creation order (created_at, then batch_id as the tie-break)
-- and its cursors are keyset positions on that pair: this index serves both without a sort.
CREATE INDEX batches_created_at_idx ON batches (created_at, batch_id);
