/* router.h - the route table: method + path pattern -> handler, with batchpipe's own 404 and 405.
 * Trailing slashes are optional; "{}" in a pattern matches one path segment (the id). */
#ifndef BP_ROUTER_H
#define BP_ROUTER_H

#include <h2o.h>

#include "server.h"

/* A handler answers now or later and returns 0. id is the "{}" segment, percent-decoded and
 * NUL-terminated in the request pool (NULL for patterns without one). */
typedef int (*bp_route_fn)(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen);

typedef struct bp_route {
    const char *method;  /* "GET", "POST", "DELETE" */
    const char *pattern; /* "/api/v1/objects/{}" */
    bp_route_fn fn;
} bp_route_t;

/* Route tables of the modules (each ends with a {NULL} entry). */
extern const bp_route_t bp_index_routes[];
extern const bp_route_t bp_write_routes[];
extern const bp_route_t bp_read_routes[];
extern const bp_route_t bp_stats_routes[];   /* stats.c */
extern const bp_route_t bp_console_routes[]; /* console.c */

/* Register the dispatching handler on "/" of hostconf, and a logger that records every finished
 * request in metrics (borrowed; must outlive the server): count by route, method and status, latency
 * by route, bytes received. */
void bp_router_register(h2o_hostconf_t *hostconf, bp_metrics_t *metrics);

/* Every (method, pattern) the API answers, for GET /api/v1/ and the OpenAPI check; NULL-terminated. */
const bp_route_t *const *bp_router_tables(void);

#endif
