/* health.h - GET /readyz: whether this server can take writes and serve reads right now (PostgreSQL
 * answers, the Kafka producer is healthy and connected to a broker, no partition of the topic is below
 * min.insync.replicas). Liveness is /healthz (index.c). */
#ifndef BP_HEALTH_H
#define BP_HEALTH_H

#include <stddef.h>

#include <h2o.h>

#include "server.h"

/* The /readyz handler (route table in index.c). Never blocks the loop and stays cheap under a flood:
 * PostgreSQL is asked with "SELECT 1" through the thread's pool at most once per second per thread
 * (probes in between get the last answer; probes that find it stale share one check), the broker state
 * comes from the producer's statistics, the topic's replication from the watermarks thread.
 * 200 {"status": "ready", "checks": {...}}, or 503 with the same shape and Retry-After. */
int bp_health_readyz(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen);

#endif
