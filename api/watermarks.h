/* watermarks.h - the broker's low and high watermarks of BP_TOPIC and BP_DLQ_TOPIC, kept fresh by one
 * background thread of the process (not an event-loop thread: its librdkafka calls block), so that
 * GET /api/v1/stats/ reads them from a cache without ever waiting for the broker.
 *
 * Every WATERMARKS_INTERVAL_MS (2 s) the thread asks the broker for both topics' partitions (metadata)
 * and each partition's watermarks, every call bounded by a timeout. A round that reaches the broker
 * replaces the cache; one that does not keeps the last values, marks the cache down and says why, so
 * the age of the values tells how stale they are. Each round also describes both topics' replication
 * (replicas, in-sync replicas, min.insync.replicas) for /readyz and /metrics. */
#ifndef BP_WATERMARKS_H
#define BP_WATERMARKS_H

#include <stddef.h>
#include <stdint.h>

#include "bp_config.h"
#include "bp_error.h"
#include "bp_kafka.h"
#include "bp_metrics.h"

typedef struct bp_watermarks bp_watermarks_t;

typedef struct bp_watermark {
    int32_t partition;
    int64_t low;  /* -1 when this partition did not answer */
    int64_t high; /* -1 when this partition did not answer */
} bp_watermark_t;

typedef struct bp_watermarks_topic {
    size_t n;              /* partitions of the topic (0 when unknown) */
    bp_watermark_t *parts; /* n entries in partition order; owned by the snapshot */
    char error[192];       /* "" when every partition answered */
} bp_watermarks_topic_t;

typedef enum bp_watermarks_state {
    BP_WM_STARTING, /* no round has finished yet */
    BP_WM_UP,       /* the last round reached the broker */
    BP_WM_DOWN      /* the last round did not: the values (if any) are from an earlier one */
} bp_watermarks_state_t;

/* A copy of the cache; free with bp_watermarks_snapshot_free. */
typedef struct bp_watermarks_snapshot {
    bp_watermarks_state_t state;
    int64_t age_ms;  /* since the round the values come from; -1 when there are none */
    char error[256]; /* why the last round failed (state DOWN), else "" */
    bp_watermarks_topic_t topic, dlq;
} bp_watermarks_snapshot_t;

/* The topics' replication as the last round found it (bp_watermarks_replication). */
typedef struct bp_watermarks_replication {
    int known;                  /* 0 until a round described both topics (and after one that could not) */
    int64_t age_ms;             /* since that round; -1 when never */
    bp_kafka_topic_info_t topic, dlq; /* partitions, replicas, under-replicated, below min ISR */
} bp_watermarks_replication_t;

/* Start the thread with its own librdkafka client (a consumer handle that joins no group and never
 * creates topics), configured from cfg (borrowed: must outlive the watermarks). Returns NULL with err
 * when the client or the thread cannot be created. Free with bp_watermarks_free. */
bp_watermarks_t *bp_watermarks_new(const bp_config_t *cfg, char *err, size_t errlen) BP_MUST_CHECK;

/* Ask the thread to stop without waiting for it (from the signal path: it then stops while the loops
 * drain). Accepts NULL. */
void bp_watermarks_stop(bp_watermarks_t *w);

/* Stop the thread, wait for it (at most one bounded broker call, ~1-2 s when the broker is away) and
 * free everything. Accepts NULL. */
void bp_watermarks_free(bp_watermarks_t *w);

/* Copy the cache into out (takes the lock briefly; safe from any thread). Returns 0, or -1 when out
 * of memory (out is then empty and needs no free). */
int bp_watermarks_snapshot(bp_watermarks_t *w, bp_watermarks_snapshot_t *out) BP_MUST_CHECK;

/* Free what a snapshot owns. Accepts a zeroed snapshot. */
void bp_watermarks_snapshot_free(bp_watermarks_snapshot_t *s);

/* Copy what the last round found about the topics' replication into out (no allocation; takes the
 * lock briefly; safe from any thread, cheap enough for every /readyz). */
void bp_watermarks_replication(bp_watermarks_t *w, bp_watermarks_replication_t *out);

/* Ask the thread for a round now rather than at its next interval (a receipt whose offset is beyond
 * the cached end may be newer than the cache). Returns the number of the first round that starts
 * after this call: once bp_watermarks_partition's *round reaches it, the cache holds what the broker
 * said after the kick. Safe from any thread; never waits. Accepts NULL (returns UINT64_MAX). */
uint64_t bp_watermarks_kick(bp_watermarks_t *w);

/* BP_TOPIC's partition as the last round found it, without allocating (takes the lock briefly).
 * *round is the number of the round the values come from (0: none; compare with bp_watermarks_kick's).
 * Returns 1 with *low and *high, 0 when the last round found the topic without this partition, -1
 * when unknown (no round yet, the broker is away, the partition did not answer). Accepts NULL (-1). */
int bp_watermarks_partition(bp_watermarks_t *w, int32_t partition, int64_t *low, int64_t *high,
                            uint64_t *round);

/* Register the gauges bp_kafka_partitions_under_replicated and bp_kafka_partitions_below_min_isr
 * (label topic, both topics) in metrics; they read the cache at render time (-1 while unknown).
 * w must outlive metrics' last render. */
void bp_watermarks_register_metrics(bp_watermarks_t *w, bp_metrics_t *metrics);

#endif
