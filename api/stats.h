/* stats.h - GET /api/v1/stats/: a small JSON snapshot of ingestion for the console's live view and for
 * scripts - what this process accepted, what the workers applied (PostgreSQL), the broker's
 * watermarks (watermarks.h), lag per partition and dead letters - answered without blocking the loop. */
#ifndef BP_STATS_H
#define BP_STATS_H

#include "router.h"

/* The route table (GET /api/v1/stats/), listed in router.c. */
extern const bp_route_t bp_stats_routes[];

/* The counter of objects in batches the broker acknowledged, in the /metrics registry
 * (bp_write_objects_accepted_total): the write path adds to it, the stats read it. */
bp_metric_t *bp_stats_objects_accepted(bp_metrics_t *metrics);

#endif
