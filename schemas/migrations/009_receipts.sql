-- 009_receipts.sql: what GET /api/v1/receipts/{token}/ needs beyond ingest_offsets: the dead letters
-- of each group, written by the worker in the transaction that moves ingest_offsets past them.
-- A message the group has passed (offset < next_offset) is dead-lettered if it has a row here, applied
-- otherwise - but only from receipt_horizons.recorded_from on: below it (messages passed before this
-- migration, or records purged after BP_RECEIPT_RETENTION_DAYS) the outcome is no longer known.

CREATE TABLE dead_letters (
    group_id      text NOT NULL,
    topic         text NOT NULL,
    partition     integer NOT NULL,
    "offset"      bigint NOT NULL,
    reason        text NOT NULL,          -- the dlq-reason header of the letter
    sqlstate      text,                   -- PostgreSQL's code when PostgreSQL refused the message
    dlq_topic     text NOT NULL,
    dlq_partition integer NOT NULL,       -- where the letter is (from its delivery report)
    dlq_offset    bigint NOT NULL,
    batch_id      text,                   -- the message's key when the message was a valid batch
    request_id    text,                   -- the request-id header, if any
    traceparent   text,                   -- the W3C traceparent header, if any
    dead_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition, "offset")
);

-- The purge deletes by age (docs/OPERATIONS.md#receipts).
CREATE INDEX dead_letters_dead_at_idx ON dead_letters (dead_at);

-- Per partition, the first offset whose outcome dead_letters records exactly. No row: from 0.
CREATE TABLE receipt_horizons (
    group_id      text NOT NULL,
    topic         text NOT NULL,
    partition     integer NOT NULL,
    recorded_from bigint NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
);

-- What the groups passed before dead letters were recorded is not known in detail.
INSERT INTO receipt_horizons (group_id, topic, partition, recorded_from)
SELECT group_id, topic, partition, next_offset FROM ingest_offsets WHERE next_offset > 0;

-- the workers record and purge; the API reads receipts
GRANT SELECT, INSERT, UPDATE, DELETE ON dead_letters, receipt_horizons TO batchpipe_ingest;
GRANT SELECT ON dead_letters, receipt_horizons TO batchpipe_api;
