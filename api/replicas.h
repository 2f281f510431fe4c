/* replicas.h - the hot standbys of BP_PG_READ_DSN: which of them may serve a read now. One background
 * thread of the process (not a loop thread: its libpq calls block) asks every standby once a second
 * how far its replay lags; the loop threads read the outcome from atomics, never waiting.
 *
 * Lag is measured the standard way, on the standby: 0 when it has replayed everything it received
 * from a streaming WAL receiver, else now() - pg_last_xact_replay_timestamp() (the age of the last
 * transaction it replayed: an upper bound of how stale its answers are). A standby is "usable" when
 * its last sample is younger than 3 s, it answered, and its lag is at most BP_MAX_REPLICA_LAG_MS.
 * Standbys are named standby-1, standby-2, ... in the order of BP_PG_READ_DSN (names, never addresses,
 * go into headers, /readyz and metrics; the log has the addresses). */
#ifndef BP_REPLICAS_H
#define BP_REPLICAS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "bp_config.h"
#include "bp_error.h"
#include "bp_metrics.h"

typedef struct bp_replicas bp_replicas_t;

/* Where a statement runs: the primary (BP_PG_DSN), or standby i (1..n) of BP_PG_READ_DSN. */
enum { BP_PG_PRIMARY = 0 };

/* A read's freshness requirement: the database must have replayed the ingest_offsets row that says
 * partition `partition` of the group is applied through `offset`. The read-your-writes step (issue
 * #14, tokens) fills it; today no standby's applied offsets are known here, so a read with a need is
 * sent to the primary (always exact). That step adds the per-standby check (a query of
 * ingest_offsets on the chosen standby, or offsets sampled with the lag) behind bp_replicas_pick. */
typedef struct bp_replica_need {
    int32_t partition;
    int64_t offset;
} bp_replica_need_t;

/* Parse cfg->pg_read_dsn (';'-separated libpq connection strings; empty entries are ignored) and start
 * the monitor thread (none when there is no standby). cfg is borrowed and must outlive the result;
 * metrics (borrowed, may be NULL) gets bp_pg_replica_up and bp_pg_replica_lag_seconds per standby.
 * Returns NULL with err when a connection string cannot be parsed or the thread cannot start. Free
 * with bp_replicas_free. */
bp_replicas_t *bp_replicas_new(const bp_config_t *cfg, bp_metrics_t *metrics, char *err,
                               size_t errlen) BP_MUST_CHECK;

/* Ask the monitor thread to stop without waiting for it. Accepts NULL. */
void bp_replicas_stop(bp_replicas_t *r);

/* Stop the thread (at most one bounded sample, ~2 s), free everything. Accepts NULL. */
void bp_replicas_free(bp_replicas_t *r);

/* Standbys configured (0 when r is NULL). */
size_t bp_replicas_count(const bp_replicas_t *r);

/* The connection string of standby i (1..n); borrowed from r. */
const char *bp_replicas_dsn(const bp_replicas_t *r, size_t i);

/* The name of target i: "primary" for 0, "standby-<i>" otherwise (static strings). */
const char *bp_replicas_name(size_t i);

/* Where a read should go now: a usable standby, round-robin on *rr (the caller's counter, e.g. one
 * per loop thread), or BP_PG_PRIMARY when none is usable or need is not NULL (see
 * bp_replica_need_t). Lock-free; safe from any thread. */
size_t bp_replicas_pick(const bp_replicas_t *r, unsigned *rr, const bp_replica_need_t *need);

/* Count a read that standby i (1..n) could not run and the primary answered instead
 * (bp_pg_replica_fallbacks_total). Lock-free; safe from any thread. */
void bp_replicas_note_fallback(bp_replicas_t *r, size_t i);

/* The standbys' state for /readyz: {"status": "up"|"degraded"|"none", "standbys": [{"name", "status":
 * "up"|"lagging"|"down"|"unknown", "lag_ms", "max_lag_ms", "serving"}]}. New reference. */
json_t *bp_replicas_json(const bp_replicas_t *r);

#endif
