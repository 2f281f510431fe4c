/* worker.h - the ingest worker: a consumer-group member that applies batches to PostgreSQL
 * (docs/INGEST.md). One thread; it blocks on the broker and the database, which is its whole job
 * (the health port, health.h, runs beside it and only reads what the worker reports to stats.h). */
#ifndef BP_WORKER_H
#define BP_WORKER_H

#include <signal.h>
#include <stddef.h>

#include "bp_config.h"
#include "bp_error.h"
#include "stats.h"

typedef struct bp_worker bp_worker_t;

/* Create the consumer (not yet subscribed). cfg, stats and stop are borrowed and must outlive the
 * worker; stats (may be NULL) receives the worker's counters, readiness and committed positions (the
 * health port reads them). The worker returns from bp_worker_run soon after *stop becomes non-zero.
 * NULL with err on failure. Free with bp_worker_free. */
bp_worker_t *bp_worker_new(const bp_config_t *cfg, bp_ingest_stats_t *stats, volatile sig_atomic_t *stop,
                           char *err, size_t errlen);

/* Subscribe and consume until *stop: returns 0 after a clean shutdown (the transaction in hand
 * committed - or, if it could not be within half of shutdown_timeout_ms, left for the next owner of
 * its partitions - and the group left), -1 after a fatal error (logged; the group is not left). */
int bp_worker_run(bp_worker_t *w) BP_MUST_CHECK;

/* Close the consumer and free everything. Accepts NULL. */
void bp_worker_free(bp_worker_t *w);

#endif
