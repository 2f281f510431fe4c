/* pgreq.h - PostgreSQL on behalf of HTTP requests: each loop thread's pools (the primary's and one per
 * standby), the guard that ties a statement to its request's lifetime, and the answer to a failure.
 *
 * Which database runs a request's statements (BP_PG_READ_DSN, api/replicas.h). The first statement
 * of a request chooses and pins it, the rest follow (so one answer never mixes two databases):
 *   - GET and HEAD requests go to a usable standby (round-robin), or the primary when none is;
 *   - every other method (DELETE, POST ?wait=) and BP_PGREQ_PRIMARY go to the primary.
 * A statement that a standby cannot run (its pool refuses at once, the connection is lost, or the
 * standby cancels it for a recovery conflict) runs again on the primary and the request is pinned
 * there: the client sees no error. The answer carries `X-Served-By: primary` or `standby-<i>`: the
 * database of the request's last statement. Statements sent straight to a pool (bp_pgpool_query:
 * ?wait= offset polls, /readyz) run where that pool points: the thread's t->pgpool is the primary.
 * The module bp_pgreq_module (listed in api/server.c) gives each loop thread its pools: t->pgpool
 * (BP_PG_DSN) and t->standbys (one per standby of BP_PG_READ_DSN). Everything here runs on the
 * request's loop thread. */
#ifndef BP_PGREQ_H
#define BP_PGREQ_H

#include <stddef.h>

#include <h2o.h>
#include <libpq-fe.h>

#include "bp_error.h"
#include "pgpool.h"
#include "server.h"

/* The result of a request's query: like bp_pgpool_cb, plus the request, which is still alive. */
typedef void (*bp_pgreq_cb)(h2o_req_t *req, void *ctx, bp_err_t err, const PGresult *res, const char *msg);

/* Run a statement for req (sql and params are borrowed during the call only). The query is tied to
 * the request: if the request is disposed first (client gone, HTTP/2 cancel), the query is abandoned
 * and cb never runs, so cb may use req and ctx (request-pool memory) freely. Returns BP_OK, or an
 * error as bp_pgpool_query (cb is then not called: answer with bp_pgreq_problem). This is the entry
 * point for every handler that reads PostgreSQL (reads, deletes, ?wait= of the write path, stats). */
bp_err_t bp_pgreq_query(h2o_req_t *req, const char *sql, int nparams, const char *const *params,
                        bp_pgreq_cb cb, void *ctx) BP_MUST_CHECK;

/* bp_pgreq_query with a prepared statement (see bp_pgpool_query_prepared for when that fits). */
bp_err_t bp_pgreq_query_prepared(h2o_req_t *req, const char *sql, int nparams, const char *const *params,
                                 bp_pgreq_cb cb, void *ctx) BP_MUST_CHECK;

/* A flag of bp_pgreq_query_ex beside the pool's (BP_PGPOOL_PREPARED, BP_PGPOOL_FOLLOW_UP). */
enum {
    BP_PGREQ_PRIMARY = 4, /* run on the primary even for a GET (e.g. a check that must see the latest
                           * commit); only for the request's first statement, as a pin */
};

/* bp_pgreq_query with flags: BP_PGPOOL_PREPARED, BP_PGPOOL_FOLLOW_UP (the request's next statement
 * after one that ran), BP_PGREQ_PRIMARY. */
bp_err_t bp_pgreq_query_ex(h2o_req_t *req, unsigned flags, const char *sql, int nparams,
                           const char *const *params, bp_pgreq_cb cb, void *ctx) BP_MUST_CHECK;

/* Pin req's next statements to target (BP_PG_PRIMARY, or standby 1..n; out of range means primary).
 * For the read-your-writes step: a token check that has found a standby (or only the primary) that
 * has replayed the needed offsets pins the request there before its first statement. */
void bp_pgreq_pin(h2o_req_t *req, size_t target);

/* The target req is pinned to (BP_PG_PRIMARY before its first statement). */
size_t bp_pgreq_target(h2o_req_t *req);

/* Answer req with the problem+json for a failed query: 503 with Retry-After for PG_DOWN, QUEUE_FULL,
 * TIMEOUT and PG_TRANSIENT; 500 otherwise (logged with msg and the request id). Returns 0. */
int bp_pgreq_problem(h2o_req_t *req, bp_err_t err, const char *msg);

/* The pool of database target (BP_PG_PRIMARY, or standby 1..n; out of range means primary) on thread t
 * (borrowed, owned by t), for statements that are not the request's own: api/after.c's checks of
 * ingest_offsets. */
bp_pgpool_t *bp_pgreq_pool(bp_api_thread_t *t, size_t target);

#endif
