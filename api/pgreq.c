/* pgreq.c - PostgreSQL on behalf of HTTP requests (see pgreq.h): the pools of each loop thread, which
 * database runs a request's statements, the guard tying a query to its request, and failure answers. */
#include "pgreq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "after.h"
#include "bp_log.h"
#include "bp_pg.h"
#include "http.h"
#include "replicas.h"

/* ---- which database runs a request's statements ---- */

/* A request's statements all run on one database (a list's estimate and page see the same data):
 * the first one's target is kept in the request's environment under this name, as "0" (primary)
 * or "1".."n" (standby i). */
#define TARGET_ENV "bp.pg.target"

static int req_is_read(const h2o_req_t *req)
{
    return h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
           h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
}

static int pinned_target(h2o_req_t *req, size_t *target)
{
    h2o_iovec_t *v = h2o_req_getenv(req, H2O_STRLIT(TARGET_ENV), 0);
    if (v == NULL || v->len == 0)
        return 0;
    size_t t = 0;
    for (size_t i = 0; i < v->len; i++)
        t = t * 10 + (size_t)(v->base[i] - '0');
    *target = t;
    return 1;
}

void bp_pgreq_pin(h2o_req_t *req, size_t target)
{
    bp_api_thread_t *t = bp_thread_of(req);
    if (target > t->nstandbys)
        target = BP_PG_PRIMARY;
    char *digits = h2o_mem_alloc_pool(&req->pool, 8);
    int n = snprintf(digits, 8, "%zu", target);
    *h2o_req_getenv(req, H2O_STRLIT(TARGET_ENV), 1) = h2o_iovec_init(digits, (size_t)n);
}

size_t bp_pgreq_target(h2o_req_t *req)
{
    size_t target = BP_PG_PRIMARY;
    (void)pinned_target(req, &target);
    return target;
}

/* The target of a request's next statement: the one it is pinned to, else the primary for writes
 * and BP_PGREQ_PRIMARY, else a usable standby (or the primary when none is). */
static size_t choose_target(h2o_req_t *req, unsigned flags)
{
    size_t target;
    if (pinned_target(req, &target))
        return target;
    bp_api_thread_t *t = bp_thread_of(req);
    if ((flags & BP_PGREQ_PRIMARY) || t->nstandbys == 0 || !req_is_read(req))
        return BP_PG_PRIMARY;
    return bp_replicas_pick(t->api->replicas, &t->standby_rr);
}

bp_pgpool_t *bp_pgreq_pool(bp_api_thread_t *t, size_t target)
{
    return target == BP_PG_PRIMARY || target > t->nstandbys ? t->pgpool : t->standbys[target - 1];
}

/* ---- the guard: a statement tied to its request ---- */

/* Lives in the request's pool: when the request goes first, its dispose abandons the query. */
typedef struct req_guard {
    h2o_req_t *req;
    bp_pgquery_t *q; /* NULL once answered */
    bp_pgreq_cb cb;
    void *ctx;
    size_t target;   /* where q runs */
    unsigned flags;
    /* for a statement on a standby, a copy (request pool) to run again on the primary if the
     * standby goes away under it */
    const char *sql;
    int nparams;
    const char **params;
} req_guard_t;

static void guard_dispose(void *p)
{
    req_guard_t *g = p;
    if (g->q != NULL) {
        bp_pgpool_abandon(g->q);
        g->q = NULL;
    }
}

/* Say which database answered (reads and writes alike; a fallback overwrites the standby's name), and
 * for reads how far it has applied the topic (api/after.h: cached, no statement). */
static void served_by(h2o_req_t *req, size_t target)
{
    const char *name = bp_replicas_name(target);
    h2o_set_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-served-by"), 0, name, strlen(name), 1);
    if (req_is_read(req))
        bp_after_note_applied(req, target);
}

static void guard_cb(void *ctx, bp_err_t err, const PGresult *res, const char *msg);

/* Errors after which the statement runs again on the primary: the standby went away, or cannot serve
 * it, or gave it up for reasons of its own (bp_pg_standby_gave_up: a recovery conflict, a shutdown). */
static int standby_gave_up(bp_err_t err, const PGresult *res)
{
    if (err == BP_ERR_PG_DOWN || err == BP_ERR_QUEUE_FULL || err == BP_ERR_PG_TRANSIENT)
        return 1;
    return res != NULL && bp_pg_standby_gave_up(PQresultErrorField(res, PG_DIAG_SQLSTATE));
}

static bp_err_t submit_on(req_guard_t *g, size_t target, unsigned flags)
{
    bp_pgpool_t *pool = bp_pgreq_pool(bp_thread_of(g->req), target);
    g->target = target;
    return bp_pgpool_query_ex(pool, flags, g->sql, g->nparams, g->params, guard_cb, g, &g->q);
}

static void guard_cb(void *ctx, bp_err_t err, const PGresult *res, const char *msg)
{
    req_guard_t *g = ctx;
    g->q = NULL;
    if (err != BP_OK && g->target != BP_PG_PRIMARY && standby_gave_up(err, res)) {
        const char *why = msg != NULL ? msg : bp_err_str(err);
        bp_log_info("%s failed a read (%s): running it on the primary (request %s)",
                    bp_replicas_name(g->target), why, bp_http_request_id(g->req));
        bp_replicas_note_fallback(bp_thread_of(g->req)->api->replicas, g->target);
        bp_pgreq_pin(g->req, BP_PG_PRIMARY);
        /* admitted once already: it goes to the head of the primary's queue */
        bp_err_t again = submit_on(g, BP_PG_PRIMARY, g->flags | BP_PGPOOL_FOLLOW_UP);
        if (again == BP_OK)
            return;
        err = again;
        res = NULL;
        msg = bp_err_str(again);
    }
    served_by(g->req, g->target);
    g->cb(g->req, g->ctx, err, res, msg);
}

/* Copy the statement into the request's pool: a statement sent to a standby may have to run again on
 * the primary after the caller's buffers are gone. */
static void keep_statement(req_guard_t *g, h2o_req_t *req, const char *sql, const char *const *params)
{
    size_t len = strlen(sql) + 1;
    g->sql = memcpy(h2o_mem_alloc_pool(&req->pool, len), sql, len);
    g->params = h2o_mem_alloc_pool(&req->pool, sizeof(char *) * (size_t)(g->nparams > 0 ? g->nparams : 1));
    for (int i = 0; i < g->nparams; i++) {
        len = strlen(params[i]) + 1;
        g->params[i] = memcpy(h2o_mem_alloc_pool(&req->pool, len), params[i], len);
    }
}

bp_err_t bp_pgreq_query_ex(h2o_req_t *req, unsigned flags, const char *sql, int nparams,
                           const char *const *params, bp_pgreq_cb cb, void *ctx)
{
    if (nparams < 0 || nparams > BP_PGPOOL_MAX_PARAMS)
        return BP_ERR_INVALID;
    req_guard_t *g = h2o_mem_alloc_shared(&req->pool, sizeof(*g), guard_dispose);
    memset(g, 0, sizeof(*g));
    g->req = req;
    g->cb = cb;
    g->ctx = ctx;
    g->flags = flags & ~(unsigned)BP_PGREQ_PRIMARY;
    g->sql = sql;
    g->nparams = nparams;
    g->params = (const char **)params;
    size_t target = choose_target(req, flags);
    if (target != BP_PG_PRIMARY)
        keep_statement(g, req, sql, params);
    bp_err_t err = submit_on(g, target, g->flags);
    if (err != BP_OK && target != BP_PG_PRIMARY && standby_gave_up(err, NULL)) {
        bp_replicas_note_fallback(bp_thread_of(req)->api->replicas, target);
        target = BP_PG_PRIMARY; /* the standby's pool refused at once (down, backing off, full) */
        err = submit_on(g, target, g->flags);
    }
    if (err == BP_OK)
        bp_pgreq_pin(req, target);
    /* the pool copied the statement: the caller's buffers are free again (ours live in the request pool) */
    if (target == BP_PG_PRIMARY) {
        g->sql = NULL;
        g->params = NULL;
    }
    return err;
}

bp_err_t bp_pgreq_query(h2o_req_t *req, const char *sql, int nparams, const char *const *params,
                        bp_pgreq_cb cb, void *ctx)
{
    return bp_pgreq_query_ex(req, 0, sql, nparams, params, cb, ctx);
}

bp_err_t bp_pgreq_query_prepared(h2o_req_t *req, const char *sql, int nparams, const char *const *params,
                                 bp_pgreq_cb cb, void *ctx)
{
    return bp_pgreq_query_ex(req, BP_PGPOOL_PREPARED, sql, nparams, params, cb, ctx);
}

/* ---- failures as answers ---- */

/* The problem detail of a failure the client may retry, or NULL for the rest (a 500). buf holds it
 * when it has to be built. */
static const char *retry_detail(h2o_req_t *req, bp_err_t err, const char *msg, char *buf, size_t buflen)
{
    switch (err) {
    case BP_ERR_PG_DOWN:
        return "the database is unavailable; retry later";
    case BP_ERR_QUEUE_FULL:
        return "too many database queries are waiting; retry later";
    case BP_ERR_TIMEOUT:
        snprintf(buf, buflen,
                 "the query did not finish within %llu ms (%s); narrow the filter, use count=estimate, or "
                 "retry later",
                 (unsigned long long)bp_pgpool_timeout_ms(bp_thread_of(req)->pgpool), msg != NULL ? msg : "");
        bp_log_info("query timed out (request %s): %s", bp_http_request_id(req), msg != NULL ? msg : "");
        return buf;
    case BP_ERR_PG_TRANSIENT:
        return "the database refused for now; retry";
    default:
        return NULL;
    }
}

int bp_pgreq_problem(h2o_req_t *req, bp_err_t err, const char *msg)
{
    char buf[384];
    const char *detail = retry_detail(req, err, msg, buf, sizeof(buf));
    if (detail == NULL) {
        bp_log_error("query failed (request %s): %s: %s", bp_http_request_id(req), bp_err_str(err),
                 msg != NULL ? msg : "");
        return bp_http_problem(req, 500, "Internal Server Error", "the query failed; see the server log",
                               NULL);
    }
    char retry[16];
    snprintf(retry, sizeof(retry), "%u", bp_pgpool_retry_after_s(bp_thread_of(req)->pgpool));
    bp_http_add_header(req, "retry-after", retry);
    return bp_http_problem(req, 503, "Service Unavailable", detail, NULL);
}

/* ---- the module: the pools of each loop thread ---- */

static int pools_thread_init(bp_api_thread_t *t, char *err, size_t errlen)
{
    const bp_config_t *cfg = t->api->cfg;
    char labels[64];
    snprintf(labels, sizeof(labels), "thread=\"%d\"", t->index);
    bp_pgpool_opts_t opts = {
        .dsn = cfg->pg_dsn,
        .size = (size_t)cfg->pg_pool_size,
        .queue_max = (size_t)cfg->pg_queue_max,
        .timeout_ms = (uint64_t)cfg->pg_timeout_ms,
        .heap_warmup = (size_t)cfg->pg_heap_warmup,
        .metrics = t->api->metrics,
        .metric_labels = labels,
    };
    t->pgpool = bp_pgpool_new(t->loop, &opts, &t->inflight, err, errlen);
    if (t->pgpool == NULL)
        return -1;
    size_t n = bp_replicas_count(t->api->replicas);
    if (n == 0)
        return 0;
    t->standbys = calloc(n, sizeof(*t->standbys));
    if (t->standbys == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    t->nstandbys = n;
    t->standby_rr = (unsigned)t->index; /* threads start on different standbys */
    for (size_t i = 1; i <= n; i++) {
        snprintf(labels, sizeof(labels), "thread=\"%d\",target=\"%s\"", t->index, bp_replicas_name(i));
        opts.dsn = bp_replicas_dsn(t->api->replicas, i);
        t->standbys[i - 1] = bp_pgpool_new(t->loop, &opts, &t->inflight, err, errlen);
        if (t->standbys[i - 1] == NULL)
            return -1;
    }
    return 0;
}

static void pools_thread_dispose(bp_api_thread_t *t)
{
    for (size_t i = 0; i < t->nstandbys; i++)
        bp_pgpool_free(t->standbys[i]);
    free(t->standbys);
    t->standbys = NULL;
    t->nstandbys = 0;
    bp_pgpool_free(t->pgpool);
    t->pgpool = NULL;
}

const bp_api_module_t bp_pgreq_module = {"pgpool", pools_thread_init, pools_thread_dispose};
