/* bp_kafka.h - librdkafka helpers both binaries use: a base configuration from bp_config_t with
 * librdkafka's log routed into bp_log, setting checks, and topic creation through the admin API. */
#ifndef BP_KAFKA_H
#define BP_KAFKA_H

#include <stddef.h>

#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "bp_config.h"
#include "bp_error.h"

/* Names of the Kafka message headers batchpipe writes and reads (docs/TOPIC.md). */
#define BP_HDR_REQUEST_ID "request-id"
#define BP_HDR_CONTENT_TYPE "content-type"
#define BP_HDR_DLQ_REASON "dlq-reason"
#define BP_HDR_DLQ_TOPIC "dlq-source-topic"
#define BP_HDR_DLQ_PARTITION "dlq-source-partition"
#define BP_HDR_DLQ_OFFSET "dlq-source-offset"
#define BP_HDR_DLQ_REPLAYED_FROM "dlq-replayed-from" /* set by batchpipe dlq replay; kept in new letters */
/* "TS_EFF:PARTITION:OFFSET": the version a worker computed for a message it dead-lettered; batchpipe dlq
 * replay copies it, and a message that has it is applied as of that version (docs/TOPIC.md) */
#define BP_HDR_ORIGIN "bp-origin"
/* W3C Trace Context of the POST (shared/bp_trace.h), when it sent a valid one; kept in dead letters */
#define BP_HDR_TRACEPARENT "traceparent"

/* A new configuration with bootstrap.servers, client.id and logging set. Returns NULL with err.
 * Ownership passes to rd_kafka_new on success; otherwise free with rd_kafka_conf_destroy. */
rd_kafka_conf_t *bp_kafka_conf_new(const bp_config_t *cfg, const char *client_id, char *err, size_t errlen);

/* rd_kafka_conf_set that writes "name=value: reason" into err. Returns 0 or -1. */
int bp_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *err,
                      size_t errlen) BP_MUST_CHECK;

/* Create topic with partitions (replication factor rf) and the nconfigs topic configs names[i]=values[i]
 * (names may be NULL when nconfigs is 0) unless it exists; blocks up to timeout_ms. rk is borrowed (any
 * client handle). Returns 1 when it created the topic, 0 when the topic existed already, or -1 with err. */
int bp_kafka_create_topic(rd_kafka_t *rk, const char *topic, int partitions, int rf, const char *const *names,
                          const char *const *values, size_t nconfigs, int timeout_ms, char *err,
                          size_t errlen) BP_MUST_CHECK;

/* The number of partitions of topic, from the brokers' metadata, within timeout_ms: > 0; 0 when the
 * topic does not exist; -1 when no metadata came (err: librdkafka's reason); -2 when the topic's own
 * error (a leader not yet elected, ...) lasted until the deadline (err: "topic NAME: reason"). Transient
 * topic errors are asked again every 200 ms. rk is borrowed (any client handle). */
int bp_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, char *err, size_t errlen);

/* The low and high watermarks of partitions 0..n-1 of topic into low[] and high[], asked of the brokers
 * (rd_kafka_query_watermark_offsets), all within timeout_ms. Returns 0, or -1 with err naming the
 * partition. */
int bp_kafka_watermarks(rd_kafka_t *rk, const char *topic, int n, int64_t *low, int64_t *high, int timeout_ms,
                        char *err, size_t errlen) BP_MUST_CHECK;

/* What the brokers say about one topic's durability (bp_kafka_topic_describe). */
typedef struct bp_kafka_topic_info {
    int brokers;          /* brokers the cluster's metadata lists (the live ones) */
    int partitions;       /* 0 when the topic does not exist (the other members are then 0 / "") */
    int replication;      /* the fewest replicas any partition has */
    int under_replicated; /* partitions with fewer in-sync replicas than replicas */
    int below_min_isr;    /* partitions with fewer in-sync replicas than min.insync.replicas */
    int min_isr;          /* the topic's min.insync.replicas (-1 when the broker did not say) */
    char timestamp_type[32]; /* the topic's message.timestamp.type ("" when the broker did not say) */
} bp_kafka_topic_info_t;

/* Metadata (brokers, partitions, replicas, in-sync replicas) and configuration (min.insync.replicas,
 * message.timestamp.type) of topic, within timeout_ms in all; a missing topic is not an error
 * (partitions 0). rk is borrowed: a handle that never creates topics by asking (a consumer with
 * allow.auto.create.topics=false). Blocks: never call it from an event loop. Returns 0, or -1 with err. */
int bp_kafka_topic_describe(rd_kafka_t *rk, const char *topic, int timeout_ms, bp_kafka_topic_info_t *out,
                            char *err, size_t errlen) BP_MUST_CHECK;

/* Set the n topic configs names[i]=values[i] on an existing topic, keeping every other config set on
 * it. librdkafka 2.0.2 has only the non-incremental AlterConfigs, which replaces the topic's whole set
 * of dynamic configs: the set is described first and sent back with the changes. rk is borrowed.
 * Returns 0, or -1 with err. */
int bp_kafka_topic_set_configs(rd_kafka_t *rk, const char *topic, const char *const *names,
                               const char *const *values, size_t n, int timeout_ms, char *err,
                               size_t errlen) BP_MUST_CHECK;

/* Map a librdkafka error to ours: fatal -> BP_ERR_FATAL, queue full -> BP_ERR_QUEUE_FULL,
 * timeouts -> BP_ERR_TIMEOUT, everything else transport-like -> BP_ERR_KAFKA_DOWN. */
bp_err_t bp_kafka_classify(rd_kafka_resp_err_t err);

/* The body of a client's error_cb: log librdkafka's error once, as a warning "who: NAME: reason"
 * (librdkafka recovers from those by itself), or for RD_KAFKA_RESP_ERR__FATAL as an error
 * "who: fatal error ORIGINAL: why" with the original error from rd_kafka_fatal_error. Returns 1 when
 * the error is fatal (the caller must stop using rk), else 0. */
int bp_kafka_log_error(rd_kafka_t *rk, int err, const char *reason, const char *who) BP_MUST_CHECK;

#endif
