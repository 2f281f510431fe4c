/* dlq_read.h - the dead-letter reader (cli_dlqr_*) of batchpipe dlq: reads the dead-letter topic without
 * joining any consumer group and without committing: every letter up to the high watermarks seen at the
 * start, or single letters by partition and offset. Letters of the same source (at-least-once delivery)
 * are marked. */
#ifndef BP_CLI_DLQ_READ_H
#define BP_CLI_DLQ_READ_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "bp_config.h"
#include "bp_error.h"

/* One dead letter with its headers parsed (docs/INGEST.md "The dead-letter topic"). */
typedef struct cli_dlqr_letter {
    int32_t partition;
    int64_t offset;
    int64_t timestamp; /* milliseconds since the epoch, -1 when unknown */
    char *reason;      /* the headers' values as NUL-terminated copies, NULL when absent */
    char *request_id;
    char *src_topic;
    int64_t src_partition; /* -1 when absent or not a number */
    int64_t src_offset;    /* -1 when absent or not a number */
    int32_t dup_partition; /* the earlier letter of the same source in this scan, or -1 */
    int64_t dup_offset;
} cli_dlqr_letter_t;

/* Fill letter from rkm (borrowed). Returns 0, or -1 out of memory. Free with cli_dlqr_letter_clear. */
int cli_dlqr_letter_parse(const rd_kafka_message_t *rkm, cli_dlqr_letter_t *letter) BP_MUST_CHECK;

/* Free what the letter owns (accepts a zeroed letter). */
void cli_dlqr_letter_clear(cli_dlqr_letter_t *letter);

/* "topic/partition@offset" of the letter's source into buf, or "-" when unknown. */
void cli_dlqr_letter_source(const cli_dlqr_letter_t *letter, char *buf, size_t buflen);

typedef struct cli_dlqr cli_dlqr_t;

/* A reader of cfg->dlq_topic; learns its partitions and high watermarks now. Every wait for the
 * broker is bounded by timeout_ms. Returns NULL with err (brokers unreachable, topic missing).
 * Free with cli_dlqr_free. */
cli_dlqr_t *cli_dlqr_new(const bp_config_t *cfg, int timeout_ms, char *err, size_t errlen);

void cli_dlqr_free(cli_dlqr_t *r);

/* Called for every letter of a scan: letter and rkm are borrowed for the call. Non-zero stops the
 * scan. */
typedef int (*cli_dlqr_letter_fn)(void *opaque, const cli_dlqr_letter_t *letter,
                                  const rd_kafka_message_t *rkm);

/* Read every partition from its beginning up to the high watermark it had in cli_dlqr_new (letters
 * that arrive meanwhile are left out), at most per_partition letters of each (0: no limit); with
 * unique_only, a letter whose source was seen earlier in the scan is not passed on (otherwise it is,
 * with dup_partition/dup_offset set). Returns 0 when done, 1 when fn stopped it, -1 with err (no
 * progress within the timeout). *total counts every letter read, duplicates included. */
int cli_dlqr_scan(cli_dlqr_t *r, long long per_partition, int unique_only, cli_dlqr_letter_fn fn,
                  void *opaque, size_t *total, char *err, size_t errlen) BP_MUST_CHECK;

/* The letter at partition:offset, read now. Returns it (free with rd_kafka_message_destroy), or NULL
 * with err ("no letter at P:OFFSET in TOPIC: ..." when there is none). */
rd_kafka_message_t *cli_dlqr_fetch(cli_dlqr_t *r, int32_t partition, int64_t offset, char *err,
                                  size_t errlen);

/* The reader's client (borrowed): a consumer that never creates topics, for metadata requests. */
rd_kafka_t *cli_dlqr_handle(cli_dlqr_t *r);

/* Partitions and high watermarks learned by cli_dlqr_new. */
int cli_dlqr_partition_count(const cli_dlqr_t *r);
int64_t cli_dlqr_letter_estimate(const cli_dlqr_t *r); /* sum of high - low */

#endif
