/* dlq.h - the dead-letter producer of the ingest worker: a copy of a message that cannot be applied,
 * with headers that say why and where it came from, acked by the broker before the offset moves on. */
#ifndef BP_DLQ_H
#define BP_DLQ_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "bp_config.h"
#include "bp_error.h"

typedef struct bp_dlq bp_dlq_t;

/* Where the broker put one letter (its delivery report); -1, -1 while unknown. */
typedef struct bp_dlq_where {
    int32_t partition;
    int64_t offset;
} bp_dlq_where_t;

/* An idempotent producer for cfg->dlq_topic. cfg is borrowed and must outlive the producer. Returns
 * NULL with err on failure. Free with bp_dlq_free. */
bp_dlq_t *bp_dlq_new(const bp_config_t *cfg, char *err, size_t errlen);

/* Enqueue a dead letter for rkm (borrowed): the same key and value, the original request-id and
 * traceparent headers if any, and the headers dlq-reason (reason, borrowed), dlq-source-topic, -partition and -offset, and
 * bp-origin (origin, borrowed: "TS_EFF:PARTITION:OFFSET", the version the worker computed for rkm).
 * Only enqueues: bp_dlq_wait is the proof of delivery. On BP_OK *letter is the letter's number in
 * the round (for bp_dlq_letter_where). Returns BP_OK, BP_ERR_QUEUE_FULL, BP_ERR_NOMEM or another
 * error from librdkafka (err filled). */
bp_err_t bp_dlq_send(bp_dlq_t *d, const rd_kafka_message_t *rkm, const char *reason, const char *origin,
                     size_t *letter, char *err, size_t errlen) BP_MUST_CHECK;

/* Where letter (from bp_dlq_send) of the current round went: valid after bp_dlq_wait returned BP_OK
 * and until bp_dlq_done or bp_dlq_forget. */
bp_dlq_where_t bp_dlq_letter_where(const bp_dlq_t *d, size_t letter);

/* Wait up to timeout_ms until every dead letter sent in this round (since the last bp_dlq_done or
 * bp_dlq_forget) has a delivery report. BP_OK when all were acked: the round stays open so that
 * bp_dlq_letter_where can read where they went, until bp_dlq_done (the transaction committed) or
 * bp_dlq_forget (it did not). Otherwise the class of the first failure (BP_ERR_TIMEOUT when some are
 * still unacknowledged, BP_ERR_FATAL after a fatal producer error) with err filled, and the next send
 * starts a new round. */
bp_err_t bp_dlq_wait(bp_dlq_t *d, int timeout_ms, char *err, size_t errlen) BP_MUST_CHECK;

/* The round's transaction committed: the next send starts a new round. */
void bp_dlq_done(bp_dlq_t *d);

/* Forget the current round (the transaction that sent them rolled back): unsent letters are purged,
 * and reports of letters already in flight are ignored (the retry sends them again). */
void bp_dlq_forget(bp_dlq_t *d);

/* Non-zero once the producer raised a fatal error (the worker must stop). */
int bp_dlq_fatal(const bp_dlq_t *d);

/* Flush what is still queued (up to timeout_ms), say how much was left, and free. Accepts NULL. */
void bp_dlq_free(bp_dlq_t *d, int timeout_ms);

#endif
