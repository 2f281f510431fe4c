/* message.h - one consumed Kafka message as the ingest worker sees it: where it came from, whether its
 * payload is a valid batch (checked once, when it is buffered), and what became of it. */
#ifndef BP_INGEST_MESSAGE_H
#define BP_INGEST_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "bp_error.h"
#include "bp_payload.h"

#define BP_REQUEST_ID_MAX 128 /* bytes of the request-id header kept for logs (longer ones are cut) */
#define BP_TRACEPARENT_MAX 128 /* a longer traceparent (a future version's extra fields) is not kept */
#define BP_REASON_MAX 4096    /* bytes of a dead-letter reason (a long violation list is cut) */

typedef enum bp_msg_outcome {
    BP_MSG_PENDING = 0, /* not yet decided in this transaction attempt */
    BP_MSG_APPLIED,     /* written to batches/objects */
    BP_MSG_SKIPPED,     /* offset below the partition's next_offset: applied before */
    BP_MSG_DEAD,        /* sent to the dead-letter topic */
} bp_msg_outcome_t;

typedef enum bp_msg_kind {
    BP_MSG_BATCH = 0, /* a batch to upsert */
    BP_MSG_DELETE,    /* {"op": "delete", ...}: an object, or a batch */
} bp_msg_kind_t;

typedef struct bp_ingest_msg {
    rd_kafka_message_t *rkm;       /* owned: destroyed by bp_ingest_msg_clear */
    bp_msg_kind_t kind;            /* meaningful for valid messages only */
    char *del_batch_id;            /* BP_MSG_DELETE: the batch (owned) */
    char *del_object_id;           /* BP_MSG_DELETE of one object: its id (owned); NULL for a batch */
    int del_cascade;               /* BP_MSG_DELETE of a batch: with its objects */
    int32_t partition;
    int64_t offset;
    int64_t ts_ms;                 /* the message timestamp; 0 when the message has none */
    /* the version the message is applied with, compared as (ts, partition, offset): set by
     * bp_apply_txn at each attempt (ts_eff: the greatest timestamp on the partition up to here) */
    int64_t v_ts;
    int32_t v_partition;
    int64_t v_offset;
    /* a bp-origin header (a replayed dead letter): the version to apply the message with instead */
    int has_origin;
    int64_t origin_ts;
    int32_t origin_partition;
    int64_t origin_offset;
    char request_id[BP_REQUEST_ID_MAX + 1]; /* "" when the header is absent */
    char traceparent[BP_TRACEPARENT_MAX + 1]; /* "" when absent or not a valid W3C traceparent */
    char sqlstate[6];              /* PostgreSQL's code when it refused the message (BP_MSG_DEAD), else "" */
    char *invalid;                 /* NULL if the payload is a valid batch, else why not (owned) */
    char *pg_reason;               /* why PostgreSQL refused it in the last attempt (owned), or NULL */
    size_t objects;                /* objects in the batch, for logs (valid batch messages only) */
    bp_msg_outcome_t outcome;
} bp_ingest_msg_t;

/* Take ownership of rkm (a message without error) and check its payload: parse, validate the batch
 * (or the delete message, when it has an "op" member: m->kind and m->del_*) against lim (borrowed), and accept a batch whose only fault is an object_id repeated inside it
 * (other producers may send one: the last occurrence wins when it is written). A valid batch whose
 * Kafka key is not byte-equal to its batch_id (or that has no key) is refused too: per-batch order
 * depends on every message of a batch being on one partition. On return m->invalid says why a
 * message must be dead-lettered (not JSON, not a batch, empty, wrong key). Returns BP_OK, or
 * BP_ERR_NOMEM (m is then cleared and rkm destroyed). */
bp_err_t bp_ingest_msg_init(bp_ingest_msg_t *m, rd_kafka_message_t *rkm, const bp_payload_limits_t *lim)
    BP_MUST_CHECK;

/* Destroy the Kafka message and free the reasons. Accepts a zeroed m. */
void bp_ingest_msg_clear(bp_ingest_msg_t *m);

/* What a transaction did to its messages, by outcome: the worker's counters (stats.c) and its log line
 * (apply.c) both read this one count. */
typedef struct bp_ingest_msg_tally {
    size_t applied;      /* BP_MSG_APPLIED */
    size_t objects;      /* the objects of the applied messages */
    size_t skipped;      /* BP_MSG_SKIPPED */
    size_t dead_invalid; /* BP_MSG_DEAD because the payload is not a valid message (m->invalid set) */
    size_t dead_refused; /* BP_MSG_DEAD because PostgreSQL refused it */
} bp_ingest_msg_tally_t;

/* Count msgs[0..n) (borrowed) by outcome; pending messages are not counted. */
bp_ingest_msg_tally_t bp_ingest_msg_tally(const bp_ingest_msg_t *msgs, size_t n);

/* Log fields {"topic", "partition", "offset", "request_id", "traceparent"} for bp_log_fields
 * (request_id and traceparent only when the message has them). topic is borrowed. Returns a new reference, or NULL without memory. */
json_t *bp_ingest_msg_fields(const bp_ingest_msg_t *m, const char *topic);

/* The violations as one readable line: "schema violation: /objects/2: required property ...; ...",
 * at most BP_REASON_MAX bytes, with "(and N more)" when some were left out. prefix is borrowed.
 * Returns a malloc'd string, or NULL without memory. */
char *bp_violations_reason(const char *prefix, const bp_violations_t *v);

#endif
