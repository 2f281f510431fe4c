/* kafka_util.h - what the CLI's Kafka subcommands (lag, dlq) share: a client whose librdkafka log
 * stays quiet (the CLI reports failures itself, in one line), a topic's partitions and watermarks,
 * option values and "P:OFFSET" arguments. */
#ifndef BP_CLI_KAFKA_UTIL_H
#define BP_CLI_KAFKA_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "bp_config.h"
#include "bp_error.h"
#include "bp_kafka.h"
#include "cli.h"

/* Header a replayed dead letter carries: "DLQTOPIC/PARTITION@OFFSET" of the letter. */
#define CLI_HDR_REPLAYED_FROM BP_HDR_DLQ_REPLAYED_FROM

#define CLI_TIMEOUT_S_DEFAULT 10
#define CLI_TIMEOUT_S_MAX 600

/* A configuration for cfg's brokers: bp_kafka_conf_new plus the NULL-terminated name, value pairs of
 * extra (may be NULL), with librdkafka's own log lines only at BP_LOG_LEVEL=debug. Returns NULL with
 * err. Ownership passes to rd_kafka_new on success; otherwise free with rd_kafka_conf_destroy. */
rd_kafka_conf_t *cli_kafka_conf(const bp_config_t *cfg, const char *const *extra, char *err, size_t errlen);

/* rd_kafka_new of type with cli_kafka_conf. Returns NULL with err. Free with rd_kafka_destroy
 * (consumers: rd_kafka_consumer_close first). */
rd_kafka_t *cli_kafka_new(const bp_config_t *cfg, rd_kafka_type_t type, const char *const *extra, char *err,
                          size_t errlen);

/* The number of partitions of topic (> 0), or -1 with err: the topic does not exist, or the brokers
 * (named in err from brokers) did not answer within timeout_ms. */
int cli_kafka_partitions(rd_kafka_t *rk, const char *brokers, const char *topic, int timeout_ms, char *err,
                         size_t errlen) BP_MUST_CHECK;

/* Parse "PARTITION:OFFSET" (decimal, both >= 0). Returns 0, or -1. */
int cli_parse_letter_ref(const char *s, int32_t *partition, int64_t *offset) BP_MUST_CHECK;

#endif
