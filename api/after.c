/* after.c - `after=` / BP-After on reads (see after.h): check ingest_offsets on a standby, then on the
 * primary, with a growing backoff, pin the read to the first that has applied the tokens, else 503. */
#include "after.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bp_log.h"
#include "bp_token.h"
#include "http.h"
#include "pgreq.h"
#include "read.h"
#include "replicas.h"
#include "watermarks.h"
#include "write.h"

#define HEADER_IN "bp-after"
#define HEADER_OUT "bp-applied-through"

/* The checks' backoff: the first comes at once, then these waits, the last repeated. A standby
 * replays a commit within milliseconds when it keeps up; a worker applies within BP_TXN_MAX_MS. */
static const uint64_t backoff_ms[] = {5, 10, 25, 50, 100};
#define N_BACKOFF (sizeof(backoff_ms) / sizeof(backoff_ms[0]))

/* Where the workers' group stands on each partition (the same statement as ?wait='s poll): one index
 * range of ingest_offsets' primary key, a row per partition. */
static const char check_sql[] = "SELECT partition, next_offset FROM ingest_offsets WHERE group_id = $1"
                                " AND topic = $2 ORDER BY partition";

typedef enum { OUT_STANDBY, OUT_PRIMARY, OUT_TIMED_OUT, OUT_FAILED, OUT_BAD, OUT__COUNT } after_outcome_t;
static const char *const outcome_labels[OUT__COUNT] = {"standby", "primary", "timed_out", "failed", "bad_token"};

typedef struct bp_after {
    bp_api_thread_t *t;
    h2o_timeout_t backoff[N_BACKOFF];
    h2o_linklist_t waiting; /* after_req_t.link: reads with a check or a backoff under way */
    size_t nwaiting;
    bp_metric_t *m_waiting, *m_outcomes[OUT__COUNT];
} bp_after_t;

/* One read with tokens. Lives in the request's pool; its dispose stops what is under way. */
typedef struct after_req {
    h2o_linklist_t link;
    bp_after_t *after; /* NULL once the module is disposed */
    bp_api_thread_t *t;
    h2o_req_t *req;
    bp_route_fn handler;
    const char *id;
    size_t idlen;
    bp_token_t need[BP_TOKEN_LIST_MAX];
    size_t n;
    size_t target;           /* the database asked now */
    uint64_t grace_end;      /* h2o_now() ms: until when a standby is waited for */
    uint64_t deadline;       /* h2o_now() ms: BP_WAIT_MAX_S after the start */
    unsigned step;           /* index into backoff_ms */
    bp_pgquery_t *q;         /* the check under way */
    h2o_timeout_entry_t timer; /* the next check */
    int again;               /* the primary committed one of the needed partitions during the check */
    int64_t *next;           /* next_offset per need[] from the last check (-1: no row) */
    int done;
} after_req_t;

static void check(after_req_t *a);

static void forget(after_req_t *a)
{
    if (h2o_timeout_is_linked(&a->timer))
        h2o_timeout_unlink(&a->timer);
    if (a->q != NULL) {
        bp_pgpool_abandon(a->q);
        a->q = NULL;
    }
    if (a->after != NULL && h2o_linklist_is_linked(&a->link)) {
        h2o_linklist_unlink(&a->link);
        a->after->nwaiting--;
        a->t->inflight--;
        bp_gauge_set(a->after->m_waiting, (double)a->after->nwaiting);
    }
    a->done = 1;
}

static void on_dispose(void *mem)
{
    forget(mem);
}

static void note(after_req_t *a, after_outcome_t o)
{
    if (a->after != NULL)
        bp_counter_add(a->after->m_outcomes[o], 1);
}

/* None of the databases applied every token by the deadline (or the server stops). */
static void answer_unavailable(after_req_t *a, const char *detail)
{
    h2o_req_t *req = a->req;
    forget(a);
    note(a, OUT_TIMED_OUT);
    bp_watermarks_snapshot_t wm = {0};
    int have_wm = a->t->api->watermarks != NULL && bp_watermarks_snapshot(a->t->api->watermarks, &wm) == 0;
    json_t *extra = json_object(), *list = json_array();
    for (size_t k = 0; k < a->n; k++) {
        if (a->next[k] > a->need[k].offset)
            continue; /* this one is applied: only the others hold the read */
        /* the client's own token (of either version), as it was passed */
        const char *token = h2o_strdup(&req->pool, a->need[k].text, a->need[k].text_len).base;
        const char *state = "unknown";
        for (size_t p = 0; have_wm && p < wm.topic.n; p++)
            if (wm.topic.parts[p].partition == a->need[k].partition && wm.topic.parts[p].high > a->need[k].offset)
                state = "accepted";
        json_t *one = json_pack("{s:s, s:i, s:I, s:s, s:b}", "token", token, "partition", (int)a->need[k].partition,
                                "offset", (json_int_t)a->need[k].offset, "state", state, "applied", 0);
        json_object_set_new(one, "applied_through",
                            a->next[k] > 0 ? json_integer((json_int_t)(a->next[k] - 1)) : json_null());
        /* the receipt says more: dead-lettered (and why), or how far behind its partition is */
        json_object_set_new(one, "receipt_url",
                            json_sprintf("%s/api/v1/receipts/%s/",
                                         bp_http_base_url(req, a->t->api->cfg->public_url), token));
        json_array_append_new(list, one);
    }
    if (have_wm)
        bp_watermarks_snapshot_free(&wm);
    json_object_set_new(extra, "tokens", list);
    json_object_set_new(extra, "database", json_string(bp_replicas_name(a->target)));
    bp_http_add_header(req, "retry-after", "1");
    bp_http_problem(req, 503, "Service Unavailable", detail, extra);
}

static void schedule(after_req_t *a)
{
    bp_after_t *after = a->after;
    unsigned i = a->step < N_BACKOFF ? a->step : N_BACKOFF - 1;
    a->step++;
    h2o_timeout_link(a->t->loop, &after->backoff[i], &a->timer);
}

/* Move from a standby to the primary: the checks start again at once, with the short waits; the
 * primary's commits (its NOTIFY, heard by write_ack.c's LISTEN connection) wake them besides. */
static void to_primary(after_req_t *a)
{
    a->target = BP_PG_PRIMARY;
    a->step = 0;
    bp_write_wait_listen(a->t);
    check(a);
}

static void on_check(void *ctx, bp_err_t err, const PGresult *res, const char *msg)
{
    after_req_t *a = ctx;
    a->q = NULL;
    if (a->done)
        return;
    h2o_req_t *req = a->req;
    if (err != BP_OK) {
        if (a->target != BP_PG_PRIMARY) {
            bp_log_info("%s could not check after= (%s): asking the primary (request %s)",
                        bp_replicas_name(a->target), msg != NULL ? msg : bp_err_str(err),
                        bp_http_request_id(req));
            bp_replicas_note_fallback(a->t->api->replicas, a->target);
            to_primary(a);
            return;
        }
        forget(a);
        note(a, OUT_FAILED);
        bp_pgreq_problem(req, err, msg);
        return;
    }
    size_t applied = 0;
    for (size_t k = 0; k < a->n; k++) {
        a->next[k] = -1;
        for (int row = 0; row < PQntuples(res); row++)
            if (strtol(PQgetvalue(res, row, 0), NULL, 10) == a->need[k].partition)
                a->next[k] = strtoll(PQgetvalue(res, row, 1), NULL, 10);
        applied += a->next[k] > a->need[k].offset;
    }
    if (applied == a->n) {
        size_t target = a->target;
        bp_route_fn handler = a->handler;
        forget(a);
        note(a, target == BP_PG_PRIMARY ? OUT_PRIMARY : OUT_STANDBY);
        /* the exact figure of the check: bp_after_note_applied keeps it */
        char text[BP_APPLIED_MAX];
        if (bp_replicas_format_applied(res, text, sizeof(text)) > 0)
            bp_http_add_header(req, HEADER_OUT, text);
        bp_pgreq_pin(req, target);
        handler(a->t, req, a->id, a->idlen);
        return;
    }
    uint64_t now = h2o_now(a->t->loop);
    if (a->target != BP_PG_PRIMARY && (now >= a->grace_end || !bp_replicas_usable(a->t->api->replicas, a->target))) {
        to_primary(a);
        return;
    }
    if (a->again && a->target == BP_PG_PRIMARY && now < a->deadline) {
        a->again = 0;
        check(a); /* a commit came while this check ran: it may have missed it */
        return;
    }
    if (now >= a->deadline) {
        char detail[256];
        snprintf(detail, sizeof(detail),
                 "the database has not applied the writes of these receipt tokens within %lld s (BP_WAIT_MAX_S); "
                 "retry later", a->t->api->cfg->wait_max_s);
        answer_unavailable(a, detail);
        return;
    }
    schedule(a);
}

static void check(after_req_t *a)
{
    a->again = 0;
    const char *params[] = {a->t->api->cfg->group_id, a->t->api->cfg->topic};
    bp_pgpool_t *pool = bp_pgreq_pool(a->t, a->target);
    bp_err_t err = bp_pgpool_query_prepared(pool, check_sql, 2, params, on_check, a, &a->q);
    if (err == BP_OK)
        return;
    if (a->target != BP_PG_PRIMARY) { /* the standby's pool refused at once (down, backing off, full) */
        bp_replicas_note_fallback(a->t->api->replicas, a->target);
        to_primary(a);
        return;
    }
    h2o_req_t *req = a->req;
    forget(a);
    note(a, OUT_FAILED);
    bp_pgreq_problem(req, err, bp_err_str(err));
}

static void on_timer(h2o_timeout_entry_t *entry)
{
    after_req_t *a = H2O_STRUCT_FROM_MEMBER(after_req_t, timer, entry);
    if (*a->t->api->stop) {
        answer_unavailable(a, "the server is shutting down; retry");
        return;
    }
    check(a);
}

/* The primary committed (partition, next_offset), or (-1, -1): anything may have moved. Reads waiting
 * on the primary for that partition are checked now rather than at their next backoff. */
static void on_commit(void *ctx, int32_t partition, int64_t next)
{
    bp_after_t *after = ctx;
    h2o_linklist_t *l = after->waiting.next;
    while (l != &after->waiting) {
        after_req_t *a = H2O_STRUCT_FROM_MEMBER(after_req_t, link, l);
        l = l->next; /* check() may answer a at once (the pool refuses), which unlinks it */
        if (a->target != BP_PG_PRIMARY)
            continue;
        int wanted = partition < 0;
        for (size_t k = 0; k < a->n && !wanted; k++)
            wanted = a->need[k].partition == partition && a->need[k].offset < next;
        if (!wanted)
            continue;
        if (a->q != NULL) {
            a->again = 1;
        } else if (h2o_timeout_is_linked(&a->timer)) {
            h2o_timeout_unlink(&a->timer);
            check(a);
        }
    }
}

/* The token list of req: the `after` query parameter, else the BP-After header. Returns 1 found, 0
 * absent, -1 after answering 400 (broken percent-encoding). */
static int token_text(h2o_req_t *req, const char **out, size_t *outlen)
{
    char *v;
    int rc = bp_read_param(req, "after", &v, outlen);
    if (rc != 0) {
        *out = v;
        return rc;
    }
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT(HEADER_IN), -1);
    if (i < 0)
        return 0;
    *out = req->headers.entries[i].value.base;
    *outlen = req->headers.entries[i].value.len;
    return 1;
}

int bp_after_read(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen, bp_route_fn handler)
{
    const char *text;
    size_t len;
    int found = token_text(req, &text, &len);
    if (found < 0)
        return 0;
    if (found == 0 || t->after == NULL)
        return handler(t, req, id, idlen);
    after_req_t *a = h2o_mem_alloc_shared(&req->pool, sizeof(*a), on_dispose);
    memset(a, 0, sizeof(*a));
    a->after = t->after;
    a->t = t;
    a->req = req;
    const char *why = NULL;
    if (bp_token_parse_list(text, len, t->api->cfg->topic, a->need, BP_TOKEN_LIST_MAX, &a->n, &why) != 0) {
        bp_counter_add(t->after->m_outcomes[OUT_BAD], 1);
        bp_query_error_t e = {.param = "after"};
        snprintf(e.message, sizeof(e.message), "after: %s", why);
        a->done = 1;
        return bp_read_bad_param(req, &e);
    }
    a->handler = handler;
    a->id = id;
    a->idlen = idlen;
    a->next = h2o_mem_alloc_pool(&req->pool, sizeof(*a->next) * a->n);
    for (size_t k = 0; k < a->n; k++)
        a->next[k] = -1; /* not asked yet */
    a->timer.cb = on_timer;
    uint64_t now = h2o_now(t->loop);
    const bp_config_t *cfg = t->api->cfg;
    a->deadline = now + (uint64_t)cfg->wait_max_s * 1000;
    uint64_t grace = (uint64_t)cfg->max_replica_lag_ms;
    a->grace_end = now + (grace < (uint64_t)cfg->wait_max_s * 1000 ? grace : (uint64_t)cfg->wait_max_s * 1000);
    a->target = t->nstandbys > 0 ? bp_replicas_pick(t->api->replicas, &t->standby_rr) : BP_PG_PRIMARY;
    if (a->target == BP_PG_PRIMARY)
        bp_write_wait_listen(t);
    h2o_linklist_insert(&t->after->waiting, &a->link);
    t->after->nwaiting++;
    t->inflight++;
    bp_gauge_set(t->after->m_waiting, (double)t->after->nwaiting);
    check(a);
    return 0;
}

void bp_after_note_applied(h2o_req_t *req, size_t target)
{
    if (h2o_find_header_by_str(&req->res.headers, H2O_STRLIT(HEADER_OUT), -1) >= 0)
        return; /* a token check's exact figure */
    char text[BP_APPLIED_MAX];
    size_t n = bp_replicas_applied(bp_thread_of(req)->api->replicas, target, text, sizeof(text));
    if (n > 0)
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT(HEADER_OUT), 0, NULL,
                              h2o_strdup(&req->pool, text, n).base, n);
}

/* ---- the module ---- */

static int after_init(bp_api_thread_t *t, char *err, size_t errlen)
{
    bp_after_t *after = calloc(1, sizeof(*after));
    if (after == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    after->t = t;
    h2o_linklist_init_anchor(&after->waiting);
    for (size_t i = 0; i < N_BACKOFF; i++)
        h2o_timeout_init(t->loop, &after->backoff[i], backoff_ms[i]);
    char labels[48];
    snprintf(labels, sizeof(labels), "thread=\"%d\"", t->index);
    after->m_waiting = bp_metrics_gauge(t->api->metrics, "bp_read_after_waiting",
                                        "Reads with after= tokens of this thread waiting for a database to "
                                        "apply them.", labels);
    bp_gauge_set(after->m_waiting, 0);
    for (int i = 0; i < OUT__COUNT; i++) {
        snprintf(labels, sizeof(labels), "outcome=\"%s\"", outcome_labels[i]);
        after->m_outcomes[i] = bp_metrics_counter(t->api->metrics, "bp_read_after_total",
                                                  "Reads with after= tokens by how they ended: served by a "
                                                  "standby or the primary, timed out (503), failed, bad token.",
                                                  labels);
    }
    t->after = after;
    bp_write_wait_subscribe(t, on_commit, after);
    return 0;
}

static void after_dispose(bp_api_thread_t *t)
{
    bp_after_t *after = t->after;
    if (after == NULL)
        return;
    bp_write_wait_subscribe(t, NULL, NULL);
    /* the loop no longer runs: reads still listed cannot be answered; detach them */
    while (!h2o_linklist_is_empty(&after->waiting)) {
        after_req_t *a = H2O_STRUCT_FROM_MEMBER(after_req_t, link, after->waiting.next);
        forget(a);
        a->after = NULL;
    }
    for (size_t i = 0; i < N_BACKOFF; i++)
        h2o_timeout_dispose(t->loop, &after->backoff[i]);
    free(after);
    t->after = NULL;
}

const bp_api_module_t bp_after_module = {"after", after_init, after_dispose};
