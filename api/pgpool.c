/* pgpool.c - asynchronous PostgreSQL connections joined to the event loop: non-blocking connects,
 * one statement at a time per connection, a bounded FIFO of waiting queries, deadlines and backoff.
 * libpq's socket is wrapped (as a dup) in an h2o socket with DONT_READ: h2o only reports readiness. */
#include "pgpool.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bp_clock.h"
#include "bp_log.h"
#include "bp_pg.h"

#define MAX_CONN_KEYWORDS 64
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define MAX_PREPARED 32 /* named statements per connection; beyond, statements go unprepared */
#define CONNECT_TIMEOUT_DEFAULT_MS 2000
#define DEADLINE_MARGIN_MS 2000 /* client-side bound beyond the statement timeout */

typedef enum { CONN_CLOSED = 0, CONN_CONNECTING, CONN_IDLE, CONN_BUSY } conn_state_t;
typedef enum { Q_WAITING = 0, Q_RUNNING, Q_DONE } query_state_t;

/* A statement this connection has prepared: its text (owned), its length and its server-side name. */
typedef struct prepared {
    char *sql;
    size_t len;
    char name[16];
} prepared_t;

typedef struct pgconn {
    bp_pgpool_t *pool;
    conn_state_t state;
    PGconn *pg;
    h2o_socket_t *sock; /* wraps fd, a dup of PQsocket(pg) */
    int fd;
    int write_armed;           /* h2o_socket_notify_write is one-shot: armed until it fires */
    h2o_timeout_entry_t timer; /* connect deadline, or the running query's deadline */
    bp_pgquery_t *query;       /* running */
    PGresult *result;          /* of the running query, collected until PQgetResult gives NULL */
    int preparing;             /* the running step is the PQsendPrepare of query's statement */
    int warming;               /* connected, running warm_heap's statement (still CONN_CONNECTING;
                                * busy_read collects its result) */
    prepared_t prepared[MAX_PREPARED];
    size_t nprepared;
} pgconn_t;

struct bp_pgquery {
    h2o_linklist_t link;       /* in pool->waiting while Q_WAITING */
    h2o_timeout_entry_t timer; /* queue wait */
    bp_pgpool_t *pool;
    query_state_t state;
    int abandoned;
    int prepare; /* run as a named prepared statement (planned once per connection) */
    bp_pgpool_cb cb;
    void *ctx;
    char *sql;
    size_t sql_len; /* strlen(sql): finding it among the prepared statements compares lengths first */
    int nparams;
    const char **params; /* sql and params live in the same allocation, after the struct */
    uint64_t queued_us, sent_us; /* bp_clock_us() when accepted, and when sent to a connection */
};

struct bp_pgpool {
    h2o_evloop_t *loop;
    const char *keywords[MAX_CONN_KEYWORDS + 1]; /* NULL-terminated, owned */
    const char *values[MAX_CONN_KEYWORDS + 1];
    size_t size, queue_max;
    uint64_t timeout_ms, connect_timeout_ms;
    size_t heap_warmup;
    size_t *inflight;
    pgconn_t *conns;
    h2o_linklist_t waiting;
    size_t nwaiting;
    h2o_timeout_t connect_to, query_to, queue_to, defer_to;
    h2o_timeout_entry_t defer; /* runs pump() on the next turn when a failure must be reported */
    uint64_t backoff_ms, retry_at;
    int down; /* the last connection attempt failed (logged once per outage) */
    char last_error[256];
    uint64_t queries, rejected, failed, connect_failures;
    /* registry series (NULL without opts->metrics), written by the loop thread only */
    bp_metric_t *m_in_use, *m_waiting, *m_connected, *m_size;
    bp_metric_t *m_queries, *m_rejected, *m_failed, *m_connect_failures;
    bp_metric_t *m_wait_s, *m_query_s; /* histograms: waiting for a connection, then in PostgreSQL */
};

static void pump(bp_pgpool_t *pool, int may_notify);
static void on_readable(h2o_socket_t *sock, const char *err);
static void on_writable(h2o_socket_t *sock, const char *err);

static size_t count_state(const bp_pgpool_t *pool, conn_state_t st)
{
    size_t n = 0;
    for (size_t i = 0; i < pool->size; i++)
        n += pool->conns[i].state == st;
    return n;
}

/* Copy the gauges into the registry: /metrics renders on any thread and must never read the pool. */
static void publish(bp_pgpool_t *pool)
{
    if (pool->m_in_use == NULL)
        return;
    size_t busy = count_state(pool, CONN_BUSY);
    bp_gauge_set(pool->m_in_use, (double)busy);
    bp_gauge_set(pool->m_connected, (double)(busy + count_state(pool, CONN_IDLE)));
    bp_gauge_set(pool->m_waiting, (double)pool->nwaiting);
}

static void arm_defer(bp_pgpool_t *pool)
{
    if (!h2o_timeout_is_linked(&pool->defer))
        h2o_timeout_link(pool->loop, &pool->defer_to, &pool->defer);
}

/* ---- delivering results ---- */

/* Hand the outcome to the requester (unless abandoned) and free the query. */
static void deliver(bp_pgquery_t *q, bp_err_t err, const PGresult *res, const char *msg)
{
    bp_pgpool_t *pool = q->pool;
    q->state = Q_DONE;
    if (err != BP_OK) {
        pool->failed++;
        bp_counter_add(pool->m_failed, 1);
    }
    if (!q->abandoned) {
        q->cb(q->ctx, err, res, msg);
        if (pool->inflight != NULL)
            (*pool->inflight)--;
    }
    free(q);
}

static void unlink_waiting(bp_pgquery_t *q)
{
    h2o_linklist_unlink(&q->link);
    if (h2o_timeout_is_linked(&q->timer))
        h2o_timeout_unlink(&q->timer);
    q->pool->nwaiting--;
}

/* Fail every waiting query (they are detached first: callbacks may submit new ones). */
static void fail_waiting(bp_pgpool_t *pool, bp_err_t err, const char *msg)
{
    h2o_linklist_t doomed;
    h2o_linklist_init_anchor(&doomed);
    while (!h2o_linklist_is_empty(&pool->waiting)) {
        bp_pgquery_t *q = H2O_STRUCT_FROM_MEMBER(bp_pgquery_t, link, pool->waiting.next);
        unlink_waiting(q);
        h2o_linklist_insert(&doomed, &q->link);
    }
    while (!h2o_linklist_is_empty(&doomed)) {
        bp_pgquery_t *q = H2O_STRUCT_FROM_MEMBER(bp_pgquery_t, link, doomed.next);
        h2o_linklist_unlink(&q->link);
        deliver(q, err, NULL, msg);
    }
}

/* ---- connections ---- */

/* Close the connection; its running query (if any) is left to the caller. */
static void close_conn(pgconn_t *c)
{
    if (h2o_timeout_is_linked(&c->timer))
        h2o_timeout_unlink(&c->timer);
    if (c->sock != NULL) {
        h2o_socket_close(c->sock); /* closes our dup; the loop stops watching it at once */
        c->sock = NULL;
    }
    c->fd = -1;
    c->write_armed = 0;
    if (c->result != NULL) {
        PQclear(c->result);
        c->result = NULL;
    }
    if (c->pg != NULL) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    for (size_t i = 0; i < c->nprepared; i++)
        free(c->prepared[i].sql); /* the server forgot them with the session */
    c->nprepared = 0;
    c->preparing = 0;
    c->warming = 0;
    c->state = CONN_CLOSED;
}

static void note_connect_failure(bp_pgpool_t *pool, const char *msg)
{
    uint64_t now = h2o_now(pool->loop);
    pool->connect_failures++;
    bp_counter_add(pool->m_connect_failures, 1);
    pool->backoff_ms = pool->backoff_ms == 0 ? BACKOFF_MIN_MS : pool->backoff_ms * 2;
    if (pool->backoff_ms > BACKOFF_MAX_MS)
        pool->backoff_ms = BACKOFF_MAX_MS;
    pool->retry_at = now + pool->backoff_ms;
    bp_pg_error_line(pool->last_error, sizeof(pool->last_error), NULL, msg, BP_PG_LINE_FIRST);
    if (!pool->down)
        bp_log_warn("PostgreSQL unreachable: %s (retrying on demand, backoff up to %d ms)", pool->last_error,
                BACKOFF_MAX_MS);
    pool->down = 1;
}

/* A connection that was up is gone (server restart, network): close it; the next query reconnects. */
static void teardown(pgconn_t *c, bp_err_t err, const char *why)
{
    bp_pgpool_t *pool = c->pool;
    char msg[256];
    bp_pg_error_line(msg, sizeof(msg), NULL, why, BP_PG_LINE_FIRST);
    bp_pgquery_t *q = c->query;
    c->query = NULL;
    if (c->state == CONN_CONNECTING)
        note_connect_failure(pool, msg);
    else if (err == BP_ERR_PG_DOWN && !pool->down)
        bp_log_warn("PostgreSQL connection lost: %s", msg);
    close_conn(c);
    if (q != NULL)
        deliver(q, err, NULL, msg);
}

static int wrap_socket(pgconn_t *c)
{
    int fd = PQsocket(c->pg);
    if (fd < 0)
        return -1;
    /* libpq closes its own descriptor and h2o closes the one it watches: give h2o a duplicate */
    int dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dupfd < 0)
        return -1;
    c->sock = h2o_evloop_socket_create(c->pool->loop, dupfd, H2O_SOCKET_FLAG_DONT_READ);
    c->sock->data = c;
    c->fd = dupfd;
    c->write_armed = 0;
    return 0;
}

/* libpq may switch sockets while connecting (another address, SSL retry); the number can even be
 * reused, so compare the open files, not the descriptors. */
static int same_socket(pgconn_t *c)
{
    struct stat a, b;
    int fd = PQsocket(c->pg);
    if (fd < 0 || fstat(fd, &a) != 0 || fstat(c->fd, &b) != 0)
        return 0;
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static void want_read(pgconn_t *c)
{
    if (!h2o_socket_is_reading(c->sock))
        h2o_socket_read_start(c->sock, on_readable);
}

static void want_write(pgconn_t *c)
{
    if (!c->write_armed) {
        c->write_armed = 1;
        h2o_socket_notify_write(c->sock, on_writable);
    }
}

static void on_connect_deadline(h2o_timeout_entry_t *entry)
{
    pgconn_t *c = H2O_STRUCT_FROM_MEMBER(pgconn_t, timer, entry);
    bp_pgpool_t *pool = c->pool;
    char msg[128];
    snprintf(msg, sizeof(msg), "connection attempt took longer than %llu ms",
             (unsigned long long)pool->connect_timeout_ms);
    teardown(c, BP_ERR_PG_DOWN, msg);
    pump(pool, 1);
}

static void on_query_deadline(h2o_timeout_entry_t *entry)
{
    pgconn_t *c = H2O_STRUCT_FROM_MEMBER(pgconn_t, timer, entry);
    bp_pgpool_t *pool = c->pool;
    char msg[128];
    snprintf(msg, sizeof(msg), "no answer from PostgreSQL within %llu ms",
             (unsigned long long)(pool->timeout_ms + DEADLINE_MARGIN_MS));
    bp_log_warn("%s: closing the connection", msg);
    teardown(c, BP_ERR_TIMEOUT, msg);
    pump(pool, 1);
}

static void busy_read(pgconn_t *c);

/* The session is ready: the connection joins the idle ones. */
static void ready(pgconn_t *c)
{
    bp_pgpool_t *pool = c->pool;
    if (h2o_timeout_is_linked(&c->timer))
        h2o_timeout_unlink(&c->timer);
    c->state = CONN_IDLE;
    want_read(c); /* an idle connection is watched too: a server shutdown shows up as readable */
    if (pool->down)
        bp_log_info("PostgreSQL reachable again");
    pool->down = 0;
    pool->backoff_ms = 0;
    pool->retry_at = 0;
    pump(pool, 1);
}

/* The server's glibc gives a backend's freed heap back to the kernel once more than its trim
 * threshold (128 kB) is free at the top, and a statement that allocates and frees a little more than
 * that (each b-tree scan takes a 27 kB chunk of its own) then grows and shrinks the heap every time:
 * two brk calls per statement and TLB shootdowns on every core, measured at 2-4 times the CPU of the
 * statement during ingest (docs/BENCHMARKS.md). glibc raises both thresholds when a chunk it had to
 * mmap (over 128 kB) is freed: one allocation of heap_warmup bytes at the session's start (repeat()'s
 * result, freed with the statement) keeps up to twice that of the heap from then on. Nothing else
 * changes; a server without glibc, or whose thresholds an operator set (MALLOC_TRIM_THRESHOLD_),
 * just runs one cheap statement. Its failure is not the connection's. */
static void warm_heap(pgconn_t *c)
{
    char sql[64];
    snprintf(sql, sizeof(sql), "SELECT length(repeat('x', %zu))", c->pool->heap_warmup);
    int flushed = PQsendQuery(c->pg, sql) ? PQflush(c->pg) : -1;
    if (flushed < 0) {
        teardown(c, BP_ERR_PG_DOWN, PQerrorMessage(c->pg));
        pump(c->pool, 1);
        return;
    }
    c->warming = 1;
    want_read(c);
    if (flushed == 1)
        want_write(c);
}

/* warm_heap's statement is over (busy_read collected its result): the connection is ready. */
static void warm_done(pgconn_t *c)
{
    if (c->result != NULL && PQresultStatus(c->result) != PGRES_TUPLES_OK)
        bp_log_debug("session heap warm-up: %s", PQresultErrorMessage(c->result));
    PQclear(c->result);
    c->result = NULL;
    c->warming = 0;
    ready(c);
}

static void connected(pgconn_t *c)
{
    bp_pgpool_t *pool = c->pool;
    if (PQsetnonblocking(c->pg, 1) != 0) {
        teardown(c, BP_ERR_PG_DOWN, PQerrorMessage(c->pg));
        pump(pool, 1);
        return;
    }
    if (pool->heap_warmup > 0)
        warm_heap(c); /* still connecting, under the connect deadline, until it is over */
    else
        ready(c);
}

/* One step of PQconnectPoll, on readiness of the socket it asked for. */
static void connect_step(pgconn_t *c)
{
    bp_pgpool_t *pool = c->pool;
    if (c->warming) { /* busy_read also flushes what is still unsent */
        busy_read(c);
        return;
    }
    PostgresPollingStatusType st = PQconnectPoll(c->pg);
    if (st == PGRES_POLLING_FAILED) {
        teardown(c, BP_ERR_PG_DOWN, PQerrorMessage(c->pg));
        pump(pool, 1);
        return;
    }
    if (!same_socket(c)) {
        h2o_socket_close(c->sock);
        c->sock = NULL;
        if (wrap_socket(c) != 0) {
            teardown(c, BP_ERR_PG_DOWN, "cannot watch the PostgreSQL socket");
            pump(pool, 1);
            return;
        }
    }
    if (st == PGRES_POLLING_OK) {
        connected(c);
    } else if (st == PGRES_POLLING_READING) {
        want_read(c);
    } else {
        if (h2o_socket_is_reading(c->sock))
            h2o_socket_read_stop(c->sock);
        want_write(c);
    }
}

/* Start a non-blocking connection attempt. Returns 0, or -1 (failure noted, slot closed). */
static int conn_start(pgconn_t *c)
{
    bp_pgpool_t *pool = c->pool;
    c->pg = PQconnectStartParams(pool->keywords, pool->values, 0);
    if (c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD || wrap_socket(c) != 0) {
        note_connect_failure(pool, c->pg != NULL ? PQerrorMessage(c->pg) : "out of memory");
        close_conn(c);
        return -1;
    }
    c->state = CONN_CONNECTING;
    c->timer.cb = on_connect_deadline;
    h2o_timeout_link(pool->loop, &pool->connect_to, &c->timer);
    want_write(c); /* "behave as if PQconnectPoll last returned PGRES_POLLING_WRITING" */
    return 0;
}

/* ---- queries on a connection ---- */

static void log_query(const bp_pgquery_t *q)
{
    if (!bp_log_enabled(BP_LOG_DEBUG))
        return;
    json_t *fields = json_object(), *params = json_array();
    json_object_set_new(fields, "sql", json_string(q->sql));
    for (int i = 0; i < q->nparams; i++) {
        json_t *p = json_string(q->params[i]);
        json_array_append_new(params, p != NULL ? p : json_string("(not UTF-8)"));
    }
    json_object_set_new(fields, "params", params);
    json_object_set_new(fields, "prepared", json_boolean(q->prepare));
    bp_log_fields(BP_LOG_DEBUG, fields, "pg query");
    json_decref(fields);
}

/* The lists' statements share their first few hundred bytes: the length tells most of them apart. */
static const prepared_t *find_prepared(const pgconn_t *c, const char *sql, size_t len)
{
    for (size_t i = 0; i < c->nprepared; i++) {
        const prepared_t *ps = &c->prepared[i];
        if (ps->sql != NULL && ps->len == len && memcmp(ps->sql, sql, len) == 0)
            return ps;
    }
    return NULL;
}

/* Send the next protocol step of c's query: the statement itself (by name when it is prepared on c,
 * else unnamed), or first its PQsendPrepare when it asks to be prepared and a slot is free. Returns 0,
 * or -1 when the connection turned out broken (it is then closed; the caller still owns c->query). */
static int send_step(pgconn_t *c)
{
    bp_pgpool_t *pool = c->pool;
    const bp_pgquery_t *q = c->query;
    const prepared_t *ps = q->prepare ? find_prepared(c, q->sql, q->sql_len) : NULL;
    int sent;
    c->preparing = 0;
    if (ps != NULL) {
        sent = PQsendQueryPrepared(c->pg, ps->name, q->nparams, q->params, NULL, NULL, 0);
    } else if (q->prepare && c->nprepared < MAX_PREPARED) {
        char name[16];
        snprintf(name, sizeof(name), "bp_%zu", c->nprepared + 1);
        sent = PQsendPrepare(c->pg, name, q->sql, q->nparams, NULL);
        c->preparing = 1;
    } else {
        sent = PQsendQueryParams(c->pg, q->sql, q->nparams, NULL, q->params, NULL, NULL, 0);
    }
    int flushed = sent ? PQflush(c->pg) : -1;
    if (flushed < 0) {
        if (!pool->down)
            bp_log_warn("PostgreSQL connection unusable: %s", PQerrorMessage(c->pg));
        close_conn(c);
        return -1;
    }
    want_read(c);
    if (flushed == 1)
        want_write(c);
    return 0;
}

/* Send q on the idle connection c. Returns 0, or -1 when the connection turned out broken (it is
 * then closed and q is untouched, still the caller's). */
static int start_query(pgconn_t *c, bp_pgquery_t *q)
{
    bp_pgpool_t *pool = c->pool;
    log_query(q);
    c->query = q;
    if (send_step(c) != 0) {
        c->query = NULL;
        return -1;
    }
    c->state = CONN_BUSY;
    q->state = Q_RUNNING;
    q->sent_us = bp_clock_us();
    bp_histogram_observe(pool->m_wait_s, (double)(q->sent_us - q->queued_us) / 1e6);
    c->timer.cb = on_query_deadline;
    h2o_timeout_link(pool->loop, &pool->query_to, &c->timer);
    return 0;
}

/* The PQsendPrepare step of c's query is over: remember the name and send the statement, or, when the
 * server refused to prepare it, let the query end with that error. Returns 1 when the statement was
 * sent (the query goes on), 0 when the query is to finish now. */
static int prepared_step_done(pgconn_t *c)
{
    c->preparing = 0;
    if (c->result == NULL || PQresultStatus(c->result) != PGRES_COMMAND_OK)
        return 0;
    /* the server now holds the statement under the slot's name: the slot is taken even when its text
     * cannot be remembered (it is then never found, and the query runs unnamed this time) */
    prepared_t *ps = &c->prepared[c->nprepared];
    ps->sql = strdup(c->query->sql);
    ps->len = c->query->sql_len;
    snprintf(ps->name, sizeof(ps->name), "bp_%zu", ++c->nprepared);
    if (ps->sql == NULL)
        c->query->prepare = 0;
    PQclear(c->result);
    c->result = NULL;
    if (send_step(c) != 0) {
        bp_pgquery_t *q = c->query;
        c->query = NULL;
        deliver(q, BP_ERR_PG_DOWN, NULL, "PostgreSQL connection unusable");
        pump(c->pool, 1);
        return 1;
    }
    return 1;
}

static void finish_query(pgconn_t *c)
{
    bp_pgpool_t *pool = c->pool;
    bp_pgquery_t *q = c->query;
    PGresult *res = c->result;
    c->query = NULL;
    c->result = NULL;
    if (h2o_timeout_is_linked(&c->timer))
        h2o_timeout_unlink(&c->timer);
    bp_histogram_observe(pool->m_query_s, (double)(bp_clock_us() - q->sent_us) / 1e6);
    char msg[256];
    bp_err_t err = bp_pg_statement_outcome(c->pg, res, msg, sizeof(msg));
    if (PQstatus(c->pg) != CONNECTION_OK) {
        if (!pool->down)
            bp_log_warn("PostgreSQL connection lost: %s", msg);
        close_conn(c);
    } else {
        c->state = CONN_IDLE; /* before the callback: it may submit the next statement */
    }
    deliver(q, err, res, msg);
    PQclear(res);
    pump(pool, 1);
}

/* Read what arrived and collect results until libpq says the statement is over. */
static void busy_read(pgconn_t *c)
{
    if (!PQconsumeInput(c->pg)) {
        teardown(c, BP_ERR_PG_DOWN, PQerrorMessage(c->pg));
        pump(c->pool, 1);
        return;
    }
    while (!PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (r == NULL) {
            if (c->warming)
                warm_done(c);
            else if (!c->preparing || !prepared_step_done(c))
                finish_query(c);
            return;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            PQclear(r); /* the pool runs no COPY: give the connection up */
            teardown(c, BP_ERR_PG_DATA, "COPY is not supported by the pool");
            pump(c->pool, 1);
            return;
        }
        /* one statement gives one result; keep the first error, else the last result */
        if (c->result == NULL) {
            c->result = r;
        } else if (PQresultStatus(c->result) == PGRES_FATAL_ERROR) {
            PQclear(r);
        } else {
            PQclear(c->result);
            c->result = r;
        }
    }
    /* libpq asks to flush again after reading when output was pending */
    if (PQflush(c->pg) == 1)
        want_write(c);
}

static void on_readable(h2o_socket_t *sock, const char *err)
{
    pgconn_t *c = sock->data;
    switch (c->state) {
    case CONN_CONNECTING:
        connect_step(c);
        break;
    case CONN_BUSY:
        busy_read(c);
        break;
    case CONN_IDLE:
        /* notices or the server going away; a dead socket must not stay in the (level-triggered) set */
        if (!PQconsumeInput(c->pg) || PQstatus(c->pg) != CONNECTION_OK) {
            teardown(c, BP_ERR_PG_DOWN, PQerrorMessage(c->pg));
            pump(c->pool, 1);
            break;
        }
        while (!PQisBusy(c->pg)) {
            PGresult *r = PQgetResult(c->pg);
            if (r == NULL)
                break;
            PQclear(r);
        }
        break;
    case CONN_CLOSED:
        h2o_socket_read_stop(sock);
        break;
    }
}

static void on_writable(h2o_socket_t *sock, const char *err)
{
    pgconn_t *c = sock->data;
    c->write_armed = 0;
    if (c->state == CONN_CONNECTING) {
        connect_step(c);
    } else if (c->state == CONN_BUSY) {
        int r = PQflush(c->pg);
        if (r < 0) {
            teardown(c, BP_ERR_PG_DOWN, PQerrorMessage(c->pg));
            pump(c->pool, 1);
        } else if (r == 1) {
            want_write(c);
        }
    }
}

/* ---- the queue ---- */

static void on_queue_deadline(h2o_timeout_entry_t *entry)
{
    bp_pgquery_t *q = H2O_STRUCT_FROM_MEMBER(bp_pgquery_t, timer, entry);
    bp_pgpool_t *pool = q->pool;
    h2o_linklist_unlink(&q->link);
    pool->nwaiting--;
    char msg[128];
    snprintf(msg, sizeof(msg), "waited %llu ms for a database connection", (unsigned long long)pool->timeout_ms);
    deliver(q, BP_ERR_TIMEOUT, NULL, msg);
    publish(pool);
}

static void on_defer(h2o_timeout_entry_t *entry)
{
    bp_pgpool_t *pool = H2O_STRUCT_FROM_MEMBER(bp_pgpool_t, defer, entry);
    pump(pool, 1);
}

static pgconn_t *find_conn(bp_pgpool_t *pool, conn_state_t st)
{
    for (size_t i = 0; i < pool->size; i++) {
        if (pool->conns[i].state == st)
            return &pool->conns[i];
    }
    return NULL;
}

/* Give waiting queries to idle connections, open connections for the rest (unless backing off),
 * and fail them when nothing could ever serve them. Callbacks run only when may_notify; otherwise
 * that is deferred to the next loop turn (bp_pgpool_query never calls back). */
static void pump(bp_pgpool_t *pool, int may_notify)
{
    while (pool->nwaiting > 0) {
        pgconn_t *c = find_conn(pool, CONN_IDLE);
        if (c == NULL)
            break;
        bp_pgquery_t *q = H2O_STRUCT_FROM_MEMBER(bp_pgquery_t, link, pool->waiting.next);
        h2o_linklist_unlink(&q->link);
        pool->nwaiting--;
        if (start_query(c, q) == 0) {
            h2o_timeout_unlink(&q->timer);
        } else { /* that connection was dead: back to the head of the line */
            h2o_linklist_insert(pool->waiting.next, &q->link);
            pool->nwaiting++;
        }
    }
    size_t connecting = count_state(pool, CONN_CONNECTING);
    while (pool->nwaiting > connecting && h2o_now(pool->loop) >= pool->retry_at) {
        pgconn_t *c = find_conn(pool, CONN_CLOSED);
        if (c == NULL || conn_start(c) != 0)
            break;
        connecting++;
    }
    if (pool->nwaiting > 0 && count_state(pool, CONN_CLOSED) == pool->size) {
        if (may_notify)
            fail_waiting(pool, BP_ERR_PG_DOWN, pool->last_error);
        else
            arm_defer(pool);
    }
    publish(pool);
}

/* ---- public API ---- */

static int add_keyword(bp_pgpool_t *pool, size_t *n, const char *k, const char *v)
{
    if (*n >= MAX_CONN_KEYWORDS)
        return -1;
    pool->keywords[*n] = strdup(k);
    pool->values[*n] = strdup(v);
    (*n)++;
    return pool->keywords[*n - 1] != NULL && pool->values[*n - 1] != NULL ? 0 : -1;
}

/* Connection parameters: the DSN's, plus the session settings the API relies on. */
static int build_conninfo(bp_pgpool_t *pool, const char *dsn, char *err, size_t errlen)
{
    char *pqerr = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &pqerr);
    if (opts == NULL) {
        char line[256];
        bp_pg_error_line(line, sizeof(line), NULL, pqerr != NULL ? pqerr : "out of memory",
                         BP_PG_LINE_FIRST);
        snprintf(err, errlen, "BP_PG_DSN: %s", line);
        PQfreemem(pqerr);
        return -1;
    }
    char ours[160];
    snprintf(ours, sizeof(ours), "-c statement_timeout=%llu -c jit=off -c enable_seqscan=off",
             (unsigned long long)pool->timeout_ms);
    const char *theirs = NULL;
    size_t n = 0;
    int rc = 0;
    for (PQconninfoOption *o = opts; o->keyword != NULL && rc == 0; o++) {
        if (o->val == NULL)
            continue;
        if (strcmp(o->keyword, "options") == 0)
            theirs = o->val; /* kept, ours appended: later -c settings win */
        else
            rc = add_keyword(pool, &n, o->keyword, o->val);
    }
    if (rc == 0) {
        size_t len = (theirs != NULL ? strlen(theirs) + 1 : 0) + strlen(ours) + 1;
        char *options = malloc(len);
        if (options == NULL) {
            rc = -1;
        } else {
            snprintf(options, len, "%s%s%s", theirs != NULL ? theirs : "", theirs != NULL ? " " : "", ours);
            rc = add_keyword(pool, &n, "options", options);
            free(options);
        }
    }
    PQconninfoFree(opts);
    if (rc == 0)
        rc = add_keyword(pool, &n, "fallback_application_name", "batchpipe-api");
    if (rc != 0)
        snprintf(err, errlen, "BP_PG_DSN: too many parameters, or out of memory");
    return rc;
}

static void metrics_init(bp_pgpool_t *pool, bp_metrics_t *reg, const char *labels)
{
    if (reg == NULL)
        return;
    pool->m_size = bp_metrics_gauge(reg, "bp_pg_pool_size", "Connection slots of this thread's pool.",
                                    labels);
    pool->m_connected = bp_metrics_gauge(reg, "bp_pg_pool_connected",
                                         "Connections of this thread's pool that are up (idle or in use).",
                                         labels);
    pool->m_in_use = bp_metrics_gauge(reg, "bp_pg_pool_in_use",
                                      "Connections of this thread's pool running a query.", labels);
    pool->m_waiting = bp_metrics_gauge(reg, "bp_pg_pool_waiting",
                                       "Queries of this thread waiting for a free connection.", labels);
    pool->m_queries = bp_metrics_counter(reg, "bp_pg_queries_total", "Queries accepted by the pools.", NULL);
    pool->m_rejected = bp_metrics_counter(reg, "bp_pg_queries_rejected_total",
                                          "Queries refused at once: queue full, or PostgreSQL down.",
                                          NULL);
    pool->m_failed = bp_metrics_counter(reg, "bp_pg_query_failures_total",
                                        "Accepted queries that ended in an error or timed out.",
                                        NULL);
    pool->m_connect_failures = bp_metrics_counter(reg, "bp_pg_connect_failures_total",
                                                  "Connection attempts that failed or timed out.", NULL);
    pool->m_wait_s = bp_metrics_histogram(reg, "bp_pg_query_wait_seconds",
                                          "Time a query waited for a free connection of its thread's pool.",
                                          NULL, bp_metrics_latency_buckets, bp_metrics_latency_nbuckets);
    pool->m_query_s = bp_metrics_histogram(reg, "bp_pg_query_seconds",
                                           "Time from sending a query to its last result: PostgreSQL's work "
                                           "and the round trips (a first PREPARE included).",
                                           NULL, bp_metrics_latency_buckets, bp_metrics_latency_nbuckets);
    bp_gauge_set(pool->m_size, (double)pool->size);
    bp_gauge_set(pool->m_connected, 0);
    bp_gauge_set(pool->m_in_use, 0);
    bp_gauge_set(pool->m_waiting, 0);
}

bp_pgpool_t *bp_pgpool_new(h2o_evloop_t *loop, const bp_pgpool_opts_t *opts, size_t *inflight, char *err,
                           size_t errlen)
{
    bp_pgpool_t *pool = calloc(1, sizeof(*pool));
    if (pool == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pool->loop = loop;
    pool->size = opts->size > 0 ? opts->size : 1;
    pool->queue_max = opts->queue_max > 0 ? opts->queue_max : 1;
    pool->timeout_ms = opts->timeout_ms;
    pool->heap_warmup = opts->heap_warmup;
    pool->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : CONNECT_TIMEOUT_DEFAULT_MS;
    pool->inflight = inflight;
    h2o_linklist_init_anchor(&pool->waiting);
    h2o_timeout_init(loop, &pool->connect_to, pool->connect_timeout_ms);
    h2o_timeout_init(loop, &pool->query_to, pool->timeout_ms + DEADLINE_MARGIN_MS);
    h2o_timeout_init(loop, &pool->queue_to, pool->timeout_ms);
    h2o_timeout_init(loop, &pool->defer_to, 0);
    pool->defer.cb = on_defer;
    snprintf(pool->last_error, sizeof(pool->last_error), "not connected yet");
    pool->conns = calloc(pool->size, sizeof(*pool->conns));
    if (pool->conns == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < pool->size; i++) {
        pool->conns[i].pool = pool;
        pool->conns[i].fd = -1;
    }
    if (build_conninfo(pool, opts->dsn, err, errlen) != 0)
        goto fail;
    metrics_init(pool, opts->metrics, opts->metric_labels);
    return pool;
fail:
    bp_pgpool_free(pool);
    return NULL;
}

void bp_pgpool_free(bp_pgpool_t *pool)
{
    if (pool == NULL)
        return;
    while (!h2o_linklist_is_empty(&pool->waiting)) {
        bp_pgquery_t *q = H2O_STRUCT_FROM_MEMBER(bp_pgquery_t, link, pool->waiting.next);
        unlink_waiting(q);
        if (!q->abandoned && pool->inflight != NULL)
            (*pool->inflight)--;
        free(q);
    }
    for (size_t i = 0; pool->conns != NULL && i < pool->size; i++) {
        pgconn_t *c = &pool->conns[i];
        if (c->query != NULL) {
            if (!c->query->abandoned && pool->inflight != NULL)
                (*pool->inflight)--;
            free(c->query);
            c->query = NULL;
        }
        close_conn(c);
    }
    if (h2o_timeout_is_linked(&pool->defer))
        h2o_timeout_unlink(&pool->defer);
    publish(pool); /* every connection is closed now */
    h2o_timeout_dispose(pool->loop, &pool->connect_to);
    h2o_timeout_dispose(pool->loop, &pool->query_to);
    h2o_timeout_dispose(pool->loop, &pool->queue_to);
    h2o_timeout_dispose(pool->loop, &pool->defer_to);
    for (size_t i = 0; i < MAX_CONN_KEYWORDS; i++) {
        free((char *)pool->keywords[i]);
        free((char *)pool->values[i]);
    }
    free(pool->conns);
    free(pool);
}

/* A query in one allocation: the struct, then the parameter pointers, the parameters and the text. */
static bp_pgquery_t *query_new(bp_pgpool_t *pool, const char *sql, int nparams, const char *const *params)
{
    size_t sql_len = strlen(sql);
    size_t size = sizeof(bp_pgquery_t) + (size_t)nparams * sizeof(char *) + sql_len + 1;
    for (int i = 0; i < nparams; i++)
        size += strlen(params[i]) + 1;
    bp_pgquery_t *q = malloc(size);
    if (q == NULL)
        return NULL;
    memset(q, 0, sizeof(*q));
    q->pool = pool;
    q->nparams = nparams;
    q->params = (const char **)(q + 1);
    char *p = (char *)(q->params + nparams);
    for (int i = 0; i < nparams; i++) {
        size_t n = strlen(params[i]) + 1;
        memcpy(p, params[i], n);
        q->params[i] = p;
        p += n;
    }
    q->sql = p;
    q->sql_len = sql_len;
    memcpy(p, sql, sql_len + 1);
    return q;
}

/* Whether a new query must be refused at once (counted as rejected): BP_OK when it may wait. */
static bp_err_t admit(bp_pgpool_t *pool, int follow_up)
{
    bp_err_t err = BP_OK;
    if (pool->nwaiting >= pool->queue_max && !follow_up)
        err = BP_ERR_QUEUE_FULL;
    else if (count_state(pool, CONN_CLOSED) == pool->size && h2o_now(pool->loop) < pool->retry_at)
        err = BP_ERR_PG_DOWN; /* backing off after failed attempts: answer now rather than wait */
    if (err != BP_OK) {
        pool->rejected++;
        bp_counter_add(pool->m_rejected, 1);
    }
    return err;
}

bp_err_t bp_pgpool_query_ex(bp_pgpool_t *pool, unsigned flags, const char *sql, int nparams,
                            const char *const *params, bp_pgpool_cb cb, void *ctx, bp_pgquery_t **handle)
{
    if (handle != NULL)
        *handle = NULL;
    if (nparams < 0 || nparams > BP_PGPOOL_MAX_PARAMS || cb == NULL)
        return BP_ERR_INVALID;
    int follow_up = (flags & BP_PGPOOL_FOLLOW_UP) != 0;
    bp_err_t err = admit(pool, follow_up);
    if (err != BP_OK)
        return err;
    bp_pgquery_t *q = query_new(pool, sql, nparams, params);
    if (q == NULL)
        return BP_ERR_NOMEM;
    q->prepare = (flags & BP_PGPOOL_PREPARED) != 0;
    q->cb = cb;
    q->ctx = ctx;
    q->state = Q_WAITING;
    q->queued_us = bp_clock_us();
    /* a follow-up goes first: its requester was admitted with its first statement */
    h2o_linklist_insert(follow_up ? pool->waiting.next : &pool->waiting, &q->link);
    pool->nwaiting++;
    q->timer.cb = on_queue_deadline;
    h2o_timeout_link(pool->loop, &pool->queue_to, &q->timer);
    pool->queries++;
    bp_counter_add(pool->m_queries, 1);
    if (pool->inflight != NULL)
        (*pool->inflight)++;
    if (handle != NULL)
        *handle = q;
    pump(pool, 0);
    return BP_OK;
}

bp_err_t bp_pgpool_query(bp_pgpool_t *pool, const char *sql, int nparams, const char *const *params,
                         bp_pgpool_cb cb, void *ctx, bp_pgquery_t **handle)
{
    return bp_pgpool_query_ex(pool, 0, sql, nparams, params, cb, ctx, handle);
}

bp_err_t bp_pgpool_query_prepared(bp_pgpool_t *pool, const char *sql, int nparams, const char *const *params,
                                  bp_pgpool_cb cb, void *ctx, bp_pgquery_t **handle)
{
    return bp_pgpool_query_ex(pool, BP_PGPOOL_PREPARED, sql, nparams, params, cb, ctx, handle);
}

void bp_pgpool_abandon(bp_pgquery_t *q)
{
    if (q == NULL || q->abandoned || q->state == Q_DONE)
        return;
    bp_pgpool_t *pool = q->pool;
    if (pool->inflight != NULL)
        (*pool->inflight)--;
    if (q->state == Q_WAITING) {
        bp_log_debug("pg query abandoned: dropped from the queue");
        unlink_waiting(q);
        free(q);
        publish(pool);
        return;
    }
    bp_log_debug("pg query abandoned: running, its result will be dropped");
    q->abandoned = 1;
}

void bp_pgpool_stats(const bp_pgpool_t *pool, bp_pgpool_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->size = pool->size;
    out->connecting = count_state(pool, CONN_CONNECTING);
    out->in_use = count_state(pool, CONN_BUSY);
    out->connected = out->in_use + count_state(pool, CONN_IDLE);
    out->waiting = pool->nwaiting;
    out->queries = pool->queries;
    out->rejected = pool->rejected;
    out->failed = pool->failed;
    out->connect_failures = pool->connect_failures;
    out->down = pool->down && out->connected == 0;
}

unsigned bp_pgpool_retry_after_s(const bp_pgpool_t *pool)
{
    uint64_t now = h2o_now(pool->loop);
    if (pool->retry_at <= now)
        return 1;
    return (unsigned)((pool->retry_at - now + 999) / 1000);
}

uint64_t bp_pgpool_timeout_ms(const bp_pgpool_t *pool)
{
    return pool->timeout_ms;
}
