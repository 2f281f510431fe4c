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
#include <libpq-fe.h>

#include "bp_config.h"
#include "bp_error.h"
#include "bp_metrics.h"

typedef struct bp_replicas bp_replicas_t;

/* Where a statement runs: the primary (BP_PG_DSN), or standby i (1..n) of BP_PG_READ_DSN. */
enum { BP_PG_PRIMARY = 0 };

/* Longest applied-through text kept per database (bp_replicas_applied), with its NUL. */
#define BP_APPLIED_MAX 1024

/* Parse cfg->pg_read_dsn (';'-separated libpq connection strings; empty entries are ignored) and start
 * the monitor thread. Besides the standbys' lag, it samples once a second, on every standby and on the
 * primary (cfg->pg_dsn, when set), how far the ingest workers' group (BP_GROUP_ID, BP_TOPIC) has been
 * applied there (ingest_offsets), for the applied-through header of reads (bp_replicas_applied). No
 * thread when there is neither a standby nor a primary DSN. cfg is borrowed and must outlive the result;
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
 * per loop thread), or BP_PG_PRIMARY when none is usable. A read that must see given writes (`after=`,
 * api/after.c) checks the chosen standby's ingest_offsets itself before it is pinned there.
 * Lock-free; safe from any thread. */
size_t bp_replicas_pick(const bp_replicas_t *r, unsigned *rr);

/* 1 when standby i (1..n) is usable for reads now (as bp_replicas_pick decides), else 0; the primary
 * (0) always is. Lock-free. */
int bp_replicas_usable(const bp_replicas_t *r, size_t i);

/* The applied-through text of database i (0 primary, 1..n standby) as the monitor last sampled it:
 * "P:O,P:O,..." with, per partition of BP_TOPIC that the group has applied anything of, the offset of
 * the last message applied there (ingest_offsets.next_offset - 1), partitions in order. Replay only
 * moves forward, so an old sample is a lower bound, never a claim beyond the truth. Copies it into
 * buf (BP_APPLIED_MAX bytes) and returns its length; 0 when nothing is known: no sample younger than
 * 3 s, nothing applied yet, or the list was longer than BP_APPLIED_MAX. Takes a mutex for the copy
 * (the monitor holds it only to replace the text). Safe from any thread. */
size_t bp_replicas_applied(bp_replicas_t *r, size_t i, char *buf, size_t len);

/* Write rows (partition, next_offset) of ingest_offsets, in partition order, as applied-through text
 * into buf (see bp_replicas_applied). Returns the length; 0 when no row has next_offset > 0, or buf
 * is too small (nothing half-written). */
size_t bp_replicas_format_applied(const PGresult *res, char *buf, size_t len);

/* Count a read that standby i (1..n) could not run and the primary answered instead
 * (bp_pg_replica_fallbacks_total). Lock-free; safe from any thread. */
void bp_replicas_note_fallback(bp_replicas_t *r, size_t i);

/* The standbys' state for /readyz: {"status": "up"|"degraded"|"none", "standbys": [{"name", "status":
 * "up"|"lagging"|"down"|"unknown", "lag_ms", "max_lag_ms", "serving"}]}. New reference. */
json_t *bp_replicas_json(const bp_replicas_t *r);

#endif
