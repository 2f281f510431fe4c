/* producer.h - the per-thread Kafka producer of the API (write path): one idempotent librdkafka producer
 * per event-loop thread, whose delivery reports are served from that loop without ever blocking it.
 *
 * Life of a message: bp_producer_send hands it to librdkafka and arms a deadline; exactly one verdict
 * then reaches the caller's callback, on the loop thread: the broker's ack or error (delivery report),
 * the deadline (BP_PRODUCE_TIMEOUT_MS), a fatal producer error, or the shutdown bound - whichever comes
 * first. Later events for the same message only update the counters. Nothing here knows about HTTP. */
#ifndef BP_PRODUCER_H
#define BP_PRODUCER_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "bp_error.h"
#include "server.h"

typedef struct bp_producer bp_producer_t;

/* The module whose thread_init creates t->producer and whose thread_dispose flushes (bounded by
 * BP_SHUTDOWN_TIMEOUT_MS), logs what is still queued and destroys it. Listed in server.c. */
extern const bp_api_module_t bp_producer_module;

/* The verdict on one message. */
typedef struct bp_produce_result {
    bp_err_t err;                  /* BP_OK: the broker acked it (partition, offset, timestamp are set) */
    rd_kafka_resp_err_t kafka_err; /* librdkafka's code; NO_ERROR when the verdict is ours (deadline,
                                    * shutdown) */
    const char *reason;            /* one line for people; valid only during the callback */
    int32_t partition;             /* -1 unless acked */
    int64_t offset;                /* -1 unless acked */
    int64_t timestamp;             /* message timestamp, ms since the epoch; -1 unless acked */
} bp_produce_result_t;

/* Called once per successful bp_producer_send, on the loop thread, from the loop's events (never from
 * within the bp_producer_send of the same message; a fatal error found by one send may settle the
 * others' at once). opaque is the caller's; res is valid only during the call. */
typedef void (*bp_produce_cb)(void *opaque, const bp_produce_result_t *res);

/* Counters of one thread's producer. They are relaxed atomics: another thread may read them while the
 * loop thread updates them. The same events also update the /metrics registry (api->metrics), which
 * the producer writes itself from its loop thread - bp_produce_latency_seconds, bp_produce_accepted_total,
 * bp_produce_rejected_total, bp_produce_failures_total{reason}, and per thread bp_produce_pending,
 * bp_kafka_brokers_up and bp_producer_healthy - so that rendering never reads a producer (which may be
 * freed at shutdown). */
typedef struct bp_producer_stats {
    unsigned long long accepted; /* messages the broker acked (also late acks, after a 503) */
    unsigned long long rejected; /* requests refused before producing (bp_producer_note_rejected) */
    unsigned long long failures; /* messages that got no ack in time: refused locally, broker error,
                                  * deadline, fatal error, shutdown */
    unsigned long long pending;  /* messages handed to librdkafka and waiting for their report now */
} bp_producer_stats_t;

/* Publish value under key to BP_TOPIC with the headers request-id (request_id, copied; may be NULL),
 * content-type: application/json, and traceparent (copied; NULL: none; the caller validated it).
 * value is transferred: it must come from malloc (json_dumps does) and is freed here in every case.
 * key, request_id and traceparent are borrowed (copied by librdkafka).
 * Returns BP_OK when the message is queued: cb(opaque, ...) will then be called exactly once.
 * Otherwise nothing was queued, cb is never called, and err (one line) says why:
 *   BP_ERR_QUEUE_FULL  - BP_PRODUCE_QUEUE_MAX messages wait already, or librdkafka's queue is full
 *   BP_ERR_FATAL       - the producer hit a fatal error earlier (see bp_producer_healthy)
 *   BP_ERR_KAFKA_DOWN  - the server is shutting down
 *   BP_ERR_INVALID     - the message is larger than the producer's message.max.bytes
 *   BP_ERR_NOMEM       - out of memory */
bp_err_t bp_producer_send(bp_producer_t *p, const char *key, size_t keylen, char *value, size_t valuelen,
                          const char *request_id, const char *traceparent, bp_produce_cb cb, void *opaque,
                          char *err, size_t errlen) BP_MUST_CHECK;

/* 1 while the producer can publish, 0 after a fatal error (RD_KAFKA_RESP_ERR__FATAL): the process
 * should then be restarted; /readyz reports it. Safe from any thread. Accepts NULL (returns 0). */
int bp_producer_healthy(const bp_producer_t *p);

/* How many brokers this producer has a connection up to, from librdkafka's statistics (every second,
 * served on the loop thread): the internal and coordinator pseudo-brokers do not count, and a broker
 * seen up within the last 3 s counts as 1 (an idle connection the broker closed is reopened at once).
 * 0 when none is up, -1 before the first statistics arrived (about 1 s after start). Safe from any
 * thread. Accepts NULL (returns 0). /readyz needs it above 0. */
int bp_producer_brokers_up(const bp_producer_t *p);

/* Count one request refused before producing (validation, size, media type). */
void bp_producer_note_rejected(bp_producer_t *p);

/* A snapshot of the counters. Safe from any thread. Accepts NULL (all zero). */
bp_producer_stats_t bp_producer_stats(const bp_producer_t *p);

#endif
