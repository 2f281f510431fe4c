/* dlq_read.h - reading the dead-letter topic for batchpipe dlq without joining any consumer group
 * and without committing: every letter up to the high watermarks seen at the start, or single
 * letters by partition and offset. Letters of the same source (at-least-once delivery) are marked. */
#ifndef BP_CLI_DLQ_READ_H
#define BP_CLI_DLQ_READ_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "bp_config.h"
#include "bp_error.h"

/* One dead letter with its headers parsed (docs/INGEST.md "The dead-letter topic"). */
typedef struct dlq_letter {
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
} dlq_letter_t;

/* Fill letter from rkm (borrowed). Returns 0, or -1 out of memory. Free with dlq_letter_clear. */
int dlq_letter_parse(const rd_kafka_message_t *rkm, dlq_letter_t *letter) BP_MUST_CHECK;

/* Free what the letter owns (accepts a zeroed letter). */
void dlq_letter_clear(dlq_letter_t *letter);

/* "topic/partition@offset" of the letter's source into buf, or "-" when unknown. */
void dlq_letter_source(const dlq_letter_t *letter, char *buf, size_t buflen);

typedef struct dlq_reader dlq_reader_t;

/* A reader of cfg->dlq_topic; learns its partitions and high watermarks now. Every wait for the
 * broker is bounded by timeout_ms. Returns NULL with err (brokers unreachable, topic missing).
 * Free with dlq_reader_free. */
dlq_reader_t *dlq_reader_new(const bp_config_t *cfg, int timeout_ms, char *err, size_t errlen);

void dlq_reader_free(dlq_reader_t *r);

/* Called for every letter of a scan: letter and rkm are borrowed for the call. Non-zero stops the
 * scan. */
typedef int (*dlq_letter_fn)(void *opaque, const dlq_letter_t *letter, const rd_kafka_message_t *rkm);

/* Read every partition from its beginning up to the high watermark it had in dlq_reader_new (letters
 * that arrive meanwhile are left out), at most per_partition letters of each (0: no limit); with
 * unique_only, a letter whose source was seen earlier in the scan is not passed on (otherwise it is,
 * with dup_partition/dup_offset set). Returns 0 when done, 1 when fn stopped it, -1 with err (no
 * progress within the timeout). *total counts every letter read, duplicates included. */
int dlq_reader_scan(dlq_reader_t *r, long long per_partition, int unique_only, dlq_letter_fn fn, void *opaque,
                    size_t *total, char *err, size_t errlen) BP_MUST_CHECK;

/* The letter at partition:offset, read now. Returns it (free with rd_kafka_message_destroy), or NULL
 * with err ("no letter at P:OFFSET in TOPIC: ..." when there is none). */
rd_kafka_message_t *dlq_reader_fetch(dlq_reader_t *r, int32_t partition, int64_t offset, char *err,
                                     size_t errlen);

/* The reader's client (borrowed): a consumer that never creates topics, for metadata requests. */
rd_kafka_t *dlq_reader_handle(dlq_reader_t *r);

/* Partitions and high watermarks learned by dlq_reader_new. */
int dlq_reader_partition_count(const dlq_reader_t *r);
int64_t dlq_reader_letter_estimate(const dlq_reader_t *r); /* sum of high - low */

#endif
