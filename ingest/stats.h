/* stats.h - what the ingest worker reports about itself: its Prometheus series (messages, objects,
 * transactions, retries, dead letters, partitions) and the state behind /readyz and the lag gauges.
 * The consumer thread writes; the health port's thread reads (docs/OPERATIONS.md, "Ingest worker"). */
#ifndef BP_INGEST_STATS_H
#define BP_INGEST_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <librdkafka/rdkafka.h>

#include "apply.h"
#include "bp_error.h"
#include "bp_metrics.h"
#include "message.h"

typedef struct bp_ingest_stats bp_ingest_stats_t;

/* Why the worker is or is not ready, as of now. */
typedef struct bp_ingest_readiness {
    int assigned;       /* partitions assigned now */
    int pg;             /* the last PostgreSQL interaction: 1 succeeded, 0 failed, -1 none yet */
    bp_err_t pg_err;    /* when pg == 0: how it failed */
    int retrying;       /* a transaction failed and waits for its retry */
    bp_err_t retry_err; /* when retrying: how the last attempt failed */
    int stopping;       /* a stop was asked for */
    int fatal;          /* a fatal error was seen: the process is about to exit 1 */
} bp_ingest_readiness_t;

/* The series live in metrics (borrowed; must outlive the stats), topic is copied (the lag labels).
 * NULL without memory. Free with bp_ingest_stats_free. Every function below accepts a NULL s and does nothing
 * (readiness then says "not ready", the lag renders nothing). */
bp_ingest_stats_t *bp_ingest_stats_new(bp_metrics_t *metrics, const char *topic);

/* Free. Accepts NULL. The registry keeps the series, and one of them (bp_ingest_ready) calls back
 * into s: do not render the registry after this. */
void bp_ingest_stats_free(bp_ingest_stats_t *s);

/* --- written by the consumer thread ----------------------------------------------------------- */

/* The consumer whose cached high watermarks the lag is computed from (borrowed); set it to NULL
 * before destroying the consumer: the lag then renders nothing. */
void bp_ingest_stats_set_consumer(bp_ingest_stats_t *s, rd_kafka_t *rk);

/* Partitions were assigned (the incremental assignment succeeded). Each element's offset is where
 * PostgreSQL says it stands: next_offset, RD_KAFKA_OFFSET_BEGINNING (no row yet: 0), or
 * RD_KAFKA_OFFSET_INVALID when it could not be read (the lag of that partition is not reported until
 * bp_ingest_stats_positions or a commit tells it). */
void bp_ingest_stats_assigned(bp_ingest_stats_t *s, const rd_kafka_topic_partition_list_t *parts);

/* Partitions were taken away; event is "revoked" or "lost". Their lag series disappear. */
void bp_ingest_stats_revoked(bp_ingest_stats_t *s, const rd_kafka_topic_partition_list_t *parts,
                             const char *event);

/* Committed positions read again from PostgreSQL (same offsets convention as bp_ingest_stats_assigned). */
void bp_ingest_stats_positions(bp_ingest_stats_t *s, const rd_kafka_topic_partition_list_t *parts);

/* A transaction committed: msgs[0..n) with their final outcomes, the partitions' new next offsets
 * done[0..ndone), and how long the attempt took. Counts messages, objects, skips, dead letters and the
 * transaction's size and time; PostgreSQL is known to answer and no retry is pending any more. */
void bp_ingest_stats_txn_committed(bp_ingest_stats_t *s, const bp_ingest_msg_t *msgs, size_t n,
                                   const bp_part_offset_t *done, size_t ndone, double seconds);

/* A transaction attempt failed with e and will be retried: counts a retry by e's class; the worker is
 * not ready until a transaction commits (or the retry ends by bp_ingest_stats_txn_settled). */
void bp_ingest_stats_txn_retry(bp_ingest_stats_t *s, bp_err_t e);

/* The transaction in hand is settled one way or another (committed, or its messages all revoked, or
 * given up at shutdown): no retry is pending. */
void bp_ingest_stats_txn_settled(bp_ingest_stats_t *s);

/* The outcome of a PostgreSQL interaction outside a transaction (offsets read at assignment, the
 * idle check): BP_OK, or the error. */
void bp_ingest_stats_pg(bp_ingest_stats_t *s, bp_err_t e);

void bp_ingest_stats_stopping(bp_ingest_stats_t *s);
void bp_ingest_stats_fatal(bp_ingest_stats_t *s);

/* --- read from any thread --------------------------------------------------------------------- */

/* The readiness state now. */
void bp_ingest_stats_readiness(bp_ingest_stats_t *s, bp_ingest_readiness_t *out);

/* Whether r means ready: partitions assigned, PostgreSQL answered last time, no retry pending, not
 * stopping, no fatal error. */
int bp_ingest_stats_ready(const bp_ingest_readiness_t *r);

/* Print the per-partition gauges of the partitions assigned now, in the Prometheus text format (with
 * their HELP and TYPE lines): bp_ingest_consumer_lag{topic,partition} = the broker's high watermark as
 * the consumer last saw it, minus the next offset committed to PostgreSQL. A partition whose high
 * watermark (no fetch answered yet) or committed position is unknown is left out. Never blocks on the
 * network: the watermarks are librdkafka's cached ones. */
void bp_ingest_stats_render_lag(bp_ingest_stats_t *s, FILE *out);

#endif
