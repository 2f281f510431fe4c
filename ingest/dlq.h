/* dlq.h - the dead-letter producer of the ingest worker: a copy of a message that cannot be applied,
 * with headers that say why and where it came from, acked by the broker before the offset moves on. */
#ifndef BP_DLQ_H
#define BP_DLQ_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "bp_config.h"
#include "bp_error.h"

typedef struct bp_dlq bp_dlq_t;

/* An idempotent producer for cfg->dlq_topic. cfg is borrowed and must outlive the producer. Returns
 * NULL with err on failure. Free with bp_dlq_free. */
bp_dlq_t *bp_dlq_new(const bp_config_t *cfg, char *err, size_t errlen);

/* Enqueue a dead letter for rkm (borrowed): the same key and value, the original request-id header if
 * any, and the headers dlq-reason (reason, borrowed), dlq-source-topic, -partition and -offset, and
 * bp-origin (origin, borrowed: "TS_EFF:PARTITION:OFFSET", the version the worker computed for rkm).
 * Only enqueues: bp_dlq_wait is the proof of delivery. Returns BP_OK, BP_ERR_QUEUE_FULL or another
 * error from librdkafka (err filled). */
bp_err_t bp_dlq_send(bp_dlq_t *d, const rd_kafka_message_t *rkm, const char *reason, const char *origin,
                     char *err, size_t errlen) BP_MUST_CHECK;

/* Wait up to timeout_ms until every dead letter sent since the last bp_dlq_wait or bp_dlq_forget has
 * a delivery report. BP_OK when all were acked; otherwise the class of the first failure
 * (BP_ERR_TIMEOUT when some are still unacknowledged, BP_ERR_FATAL after a fatal producer error) with
 * err filled. Either way the next call starts a new round. */
bp_err_t bp_dlq_wait(bp_dlq_t *d, int timeout_ms, char *err, size_t errlen) BP_MUST_CHECK;

/* Forget the current round (the transaction that sent them rolled back): unsent letters are purged,
 * and reports of letters already in flight are ignored (the retry sends them again). */
void bp_dlq_forget(bp_dlq_t *d);

/* Non-zero once the producer raised a fatal error (the worker must stop). */
int bp_dlq_fatal(const bp_dlq_t *d);

/* Flush what is still queued (up to timeout_ms), say how much was left, and free. Accepts NULL. */
void bp_dlq_free(bp_dlq_t *d, int timeout_ms);

#endif
