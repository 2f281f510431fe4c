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

/* A new configuration with bootstrap.servers, client.id and logging set. Returns NULL with err.
 * Ownership passes to rd_kafka_new on success; otherwise free with rd_kafka_conf_destroy. */
rd_kafka_conf_t *bp_kafka_conf_new(const bp_config_t *cfg, const char *client_id, char *err, size_t errlen);

/* rd_kafka_conf_set that writes "name=value: reason" into err. Returns 0 or -1. */
int bp_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *err,
                      size_t errlen) BP_MUST_CHECK;

/* Create topic with partitions (replication factor rf) unless it exists; blocks up to timeout_ms.
 * rk is borrowed (any client handle). Returns 0, or -1 with err. */
int bp_kafka_create_topic(rd_kafka_t *rk, const char *topic, int partitions, int rf, int timeout_ms, char *err,
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

/* Map a librdkafka error to ours: fatal -> BP_ERR_FATAL, queue full -> BP_ERR_QUEUE_FULL,
 * timeouts -> BP_ERR_TIMEOUT, everything else transport-like -> BP_ERR_KAFKA_DOWN. */
bp_err_t bp_kafka_classify(rd_kafka_resp_err_t err);

#endif
