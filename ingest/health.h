/* health.h - the ingest worker's small HTTP port: GET /healthz, /readyz and /metrics, served by an h2o
 * event loop on a thread of its own, so that the consumer loop stays single-threaded and blocking. */
#ifndef BP_INGEST_HEALTH_H
#define BP_INGEST_HEALTH_H

#include <stddef.h>

#include "bp_config.h"
#include "bp_metrics.h"
#include "stats.h"

typedef struct bp_health bp_health_t;

/* Listen on 0.0.0.0:cfg->health_port and start serving on a new thread (signals blocked there: they
 * stay the main thread's). cfg, metrics and stats are borrowed and must outlive bp_health_stop.
 * Returns NULL with err when the port cannot be opened (in use: no SO_REUSEPORT, so that two workers
 * never share a port silently) or the thread cannot start. Stop with bp_health_stop. */
bp_health_t *bp_health_start(const bp_config_t *cfg, bp_metrics_t *metrics, bp_ingest_stats_t *stats,
                             char *err, size_t errlen);

/* Close the port, let answers being written finish (up to a second), join the thread and free.
 * Accepts NULL. */
void bp_health_stop(bp_health_t *h);

#endif
