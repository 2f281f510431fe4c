-- 001_init.sql: batches, their objects, and the ingest workers' consumed offsets.
-- Objects keep their pairs as a JSON array in the original order; the GIN index serves every
-- data/key/value filter through containment (data @> '[{"key": "type", "value": "shoe"}]').

CREATE TABLE batches (
    batch_id    text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE objects (
    id            bigint GENERATED ALWAYS AS IDENTITY UNIQUE, -- insertion order, the keyset of pages
    object_id     text PRIMARY KEY,
    batch_id      text NOT NULL REFERENCES batches (batch_id),
    data          jsonb NOT NULL,                             -- [{"key": ..., "value": ...}, ...]
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- the message this version came from: a newer version wins by (src_ts, src_partition, src_offset)
    src_ts        bigint NOT NULL,
    src_partition integer NOT NULL,
    src_offset    bigint NOT NULL,
    CONSTRAINT objects_data_is_array CHECK (jsonb_typeof(data) = 'array')
);

CREATE INDEX objects_batch_id_idx ON objects (batch_id, id);
CREATE INDEX objects_data_idx ON objects USING gin (data jsonb_path_ops);

-- Exactly-once in effect: the next offset to apply per partition, written in the same transaction
-- as the data it covers. Workers resume from here, not from Kafka's committed offsets.
CREATE TABLE ingest_offsets (
    group_id    text NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
