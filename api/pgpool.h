/* pgpool.h - a bounded per-thread pool of asynchronous PostgreSQL connections on the event loop.
 * The loop never blocks on PostgreSQL: connections are opened with PQconnectStart/PQconnectPoll and
 * queries run with PQsendQueryParams, both driven by socket readiness.
 *
 * Behaviour, in short:
 *   - Up to `size` connections, opened lazily when queries wait and none is idle.
 *   - Queries wait in a FIFO of at most `queue_max` (refused beyond: BP_ERR_QUEUE_FULL), each for at
 *     most timeout_ms (then BP_ERR_TIMEOUT). A follow-up statement (BP_PGPOOL_FOLLOW_UP) goes to the
 *     head and is not refused for a full queue: a requester is admitted once, with its first statement.
 *     Running queries are bounded by the session's statement_timeout (timeout_ms, BP_ERR_TIMEOUT) and
 *     by a client-side deadline a little longer.
 *   - A connection attempt that fails or takes longer than connect_timeout_ms is closed; the pool
 *     then refuses queries at once with BP_ERR_PG_DOWN for a backoff (100 ms doubling to 2 s) and
 *     tries again on demand after it. A lost connection is closed; the next query opens a new one.
 *   - Sessions run with statement_timeout = timeout_ms, jit = off and enable_seqscan = off (every
 *     statement of the API has an index path; a sequential scan of a large table is never wanted).
 *   - PQconnectStart resolves a host NAME with a blocking getaddrinfo: give BP_PG_DSN an IP address
 *     (host=127.0.0.1, or hostaddr=) or a Unix socket directory so that nothing blocks the loop.
 * Each pending query counts in *inflight (the thread's counter that shutdown waits for).
 * Everything here runs on the pool's loop thread only. The pool knows nothing of HTTP: statements on
 * behalf of a request, which database runs them and the answer to a failure are api/pgreq.h's. */
#ifndef BP_PGPOOL_H
#define BP_PGPOOL_H

#include <stddef.h>
#include <stdint.h>

#include <h2o.h>
#include <libpq-fe.h>

#include "bp_error.h"
#include "bp_metrics.h"

typedef struct bp_pgpool bp_pgpool_t;
typedef struct bp_pgquery bp_pgquery_t;

#define BP_PGPOOL_MAX_PARAMS 64 /* parameters of one statement */

typedef struct bp_pgpool_opts {
    const char *dsn;             /* libpq connection string; borrowed during bp_pgpool_new only */
    size_t size;                 /* connections, at least 1 */
    size_t queue_max;            /* queries waiting for a connection, at least 1 */
    uint64_t timeout_ms;         /* statement timeout, and the longest wait in the queue */
    uint64_t connect_timeout_ms; /* a connection attempt's bound; 0 means 2000 */
    size_t heap_warmup;          /* bytes a new session allocates and frees once before its first
                                  * statement (0: none): see pgpool.c, warm_heap */
    bp_metrics_t *metrics;       /* borrowed, may be NULL; must outlive the pool. The pool keeps the
                                  * gauges bp_pg_pool_{size,connected,in_use,waiting}{metric_labels}
                                  * current itself (from its loop thread, so /metrics never reads the
                                  * pool), and counts bp_pg_queries_total, bp_pg_queries_rejected_total,
                                  * bp_pg_query_failures_total and bp_pg_connect_failures_total */
    const char *metric_labels;   /* e.g. thread="0"; borrowed during bp_pgpool_new only */
} bp_pgpool_opts_t;

typedef struct bp_pgpool_stats {
    size_t size;               /* connection slots */
    size_t connected;          /* connections up: idle or in use */
    size_t connecting;         /* attempts under way */
    size_t in_use;             /* connections running a query */
    size_t waiting;            /* queries queued for a connection */
    uint64_t queries;          /* accepted since start */
    uint64_t rejected;         /* refused at once: queue full or PostgreSQL down */
    uint64_t failed;           /* accepted, then ended in an error (timeouts included) */
    uint64_t connect_failures; /* attempts that failed or timed out */
    int down;                  /* 1 while the last attempt failed and no connection is up */
} bp_pgpool_stats_t;

/* The result of a query, delivered once on the loop thread, never from inside bp_pgpool_query.
 * err: BP_OK (res is PGRES_TUPLES_OK or PGRES_COMMAND_OK); BP_ERR_PG_DOWN (no connection, or it was
 * lost: res NULL); BP_ERR_TIMEOUT (statement timeout, queue wait or client deadline); otherwise the
 * class of the server's error (bp_pg_statement_outcome): res is the error result, read its SQLSTATE
 * with PQresultErrorField. res is borrowed: valid only during the call. msg is a one-line reason
 * (borrowed; may be PostgreSQL's own message, which may name tables but never a password). */
typedef void (*bp_pgpool_cb)(void *ctx, bp_err_t err, const PGresult *res, const char *msg);

/* Create a pool on loop (borrowed; the pool must be freed on the same thread before the loop is).
 * inflight (borrowed, may be NULL) is incremented for each accepted query and decremented when its
 * callback has returned or it was abandoned. Nothing connects yet. Returns NULL with err when the DSN
 * cannot be parsed or memory runs out. Free with bp_pgpool_free. */
bp_pgpool_t *bp_pgpool_new(h2o_evloop_t *loop, const bp_pgpool_opts_t *opts, size_t *inflight, char *err,
                           size_t errlen);

/* Close every connection and drop queued and running queries without calling their callbacks (for
 * a thread whose loop no longer runs). Accepts NULL. */
void bp_pgpool_free(bp_pgpool_t *pool);

/* Run one statement (sql and params are copied; params are text, none NULL).
 * Returns BP_OK when accepted: cb(ctx, ...) will be called exactly once, later, unless the query is
 * abandoned first; *handle (if handle is not NULL) identifies it until then. Returns without ever
 * calling cb: BP_ERR_QUEUE_FULL (too many waiting), BP_ERR_PG_DOWN (connection attempts are failing:
 * try after bp_pgpool_retry_after_s), BP_ERR_NOMEM, BP_ERR_INVALID (more than BP_PGPOOL_MAX_PARAMS params).
 * Several statements that must be atomic go in ONE statement (data-modifying CTEs). */
bp_err_t bp_pgpool_query(bp_pgpool_t *pool, const char *sql, int nparams, const char *const *params,
                         bp_pgpool_cb cb, void *ctx, bp_pgquery_t **handle) BP_MUST_CHECK;

/* As bp_pgpool_query, for a statement whose text is fixed (a constant of the program) and whose best
 * plan does not depend on its parameters (lookups by key): each connection prepares it once, under a
 * name, and then only binds and executes it, so PostgreSQL parses and plans it once per session, not
 * per call. PostgreSQL may switch such a statement to a generic plan after five executions: never use
 * this for statements whose plan should follow the values (filters of varying selectivity). Up to 16
 * statements per connection are prepared; others run unprepared. */
bp_err_t bp_pgpool_query_prepared(bp_pgpool_t *pool, const char *sql, int nparams, const char *const *params,
                                  bp_pgpool_cb cb, void *ctx, bp_pgquery_t **handle) BP_MUST_CHECK;

/* Forget an accepted query whose callback has not run yet (its requester went away): the callback
 * will not be called. A query still waiting is dropped; one already sent runs to its end (bounded by
 * the statement timeout) and its result is discarded. The handle is invalid afterwards. */
void bp_pgpool_abandon(bp_pgquery_t *q);

/* Counters for metrics and readiness. */
void bp_pgpool_stats(const bp_pgpool_t *pool, bp_pgpool_stats_t *out);

/* Seconds a client should wait before retrying after BP_ERR_PG_DOWN / QUEUE_FULL / TIMEOUT (>= 1). */
unsigned bp_pgpool_retry_after_s(const bp_pgpool_t *pool);

/* Flags of bp_pgpool_query_ex; other bits are ignored. */
enum {
    BP_PGPOOL_PREPARED = 1,  /* as bp_pgpool_query_prepared */
    BP_PGPOOL_FOLLOW_UP = 2, /* the next statement of a requester whose first one ran: it was admitted
                              * then, so this one goes to the head of the queue and is never refused
                              * for a full queue (still for PostgreSQL down, or a queue wait past
                              * timeout_ms) */
};

/* bp_pgpool_query with flags (BP_PGPOOL_*); the same contract. */
bp_err_t bp_pgpool_query_ex(bp_pgpool_t *pool, unsigned flags, const char *sql, int nparams,
                            const char *const *params, bp_pgpool_cb cb, void *ctx,
                            bp_pgquery_t **handle) BP_MUST_CHECK;

/* The statement timeout (opts->timeout_ms): what a client is told a query may take. */
uint64_t bp_pgpool_timeout_ms(const bp_pgpool_t *pool);

#endif
