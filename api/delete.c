/* delete.c - DELETE through the topic: publish the delete message, wait for the broker's ack without
 * blocking the loop (the producer's verdict callback), then apply it with bp_delete_object or
 * bp_delete_batch as of the ack's (timestamp, partition, offset). */
#include "delete.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bp_log.h"
#include "http.h"
#include "pgreq.h"
#include "producer.h"

/* The message's version as the workers compute it, or lower (never higher: a later message of the
 * partition must keep winning): its timestamp, raised to the greatest timestamp before it on the
 * partition, as far as any group that has not gone past it knows (ingest_offsets.last_ts). */
#define SQL_VERSION_TS                                                                                    \
    "greatest($2::bigint, coalesce((SELECT max(g.last_ts) FROM ingest_offsets g WHERE g.topic = $5"       \
    " AND g.partition = $3::int AND g.next_offset <= $4::bigint + 1), 0))"

static const char object_sql[] = "SELECT bp_delete_object($1, " SQL_VERSION_TS ", $3::int, $4::bigint)";
static const char batch_sql[] =
    "SELECT bp_delete_batch($1, $6::boolean, " SQL_VERSION_TS ", $3::int, $4::bigint)";

struct delete_pending;

/* In the request's pool: tells the pending delete when the request goes away before the verdict. */
typedef struct delete_guard {
    struct delete_pending *pending; /* NULL once the verdict came */
} delete_guard_t;

/* One DELETE waiting for the broker. malloc'd; freed by on_verdict. */
typedef struct delete_pending {
    bp_api_thread_t *t;
    h2o_req_t *req;        /* NULL once the request is gone */
    delete_guard_t *guard; /* NULL once detached */
    int counted;           /* holds one t->inflight */
    const char *batch_id;  /* req's pool: read only while req != NULL */
    const char *object_id;
    int cascade;
    bp_delete_done_cb done;
    void *ctx;
} delete_pending_t;

/* What the SQL step needs after the ack, in the request's pool. */
typedef struct delete_applied {
    bp_delete_done_cb done;
    void *ctx;
    int32_t partition;
    int64_t offset;
} delete_applied_t;

static int problem_503(h2o_req_t *req, const char *detail, int retry_after_s)
{
    char ra[16];
    snprintf(ra, sizeof(ra), "%d", retry_after_s);
    bp_http_add_header(req, "retry-after", ra);
    json_t *fields = json_pack("{s:s, s:i}", "request_id", bp_http_request_id(req), "status", 503);
    bp_log_fields(BP_LOG_WARN, fields, "DELETE answered 503: %s", detail);
    json_decref(fields);
    return bp_http_problem(req, 503, bp_http_reason(503), detail, NULL);
}

static void on_applied(h2o_req_t *req, void *p, bp_err_t err, const PGresult *res, const char *msg)
{
    delete_applied_t *a = p;
    if (err != BP_OK) {
        char detail[768];
        snprintf(detail, sizeof(detail),
                 "the delete is in the topic (partition %d, offset %lld) and the workers will apply it, but "
                 "PostgreSQL could not apply it now (%s); retrying is safe",
                 (int)a->partition, (long long)a->offset, msg != NULL ? msg : bp_err_str(err));
        problem_503(req, detail, 1);
        return;
    }
    a->done(req, a->ctx, PQgetisnull(res, 0, 0) ? NULL : PQgetvalue(res, 0, 0));
}

/* The producer's verdict, on the loop thread. */
static void on_verdict(void *opaque, const bp_produce_result_t *res)
{
    delete_pending_t *d = opaque;
    h2o_req_t *req = d->req;
    if (d->guard != NULL)
        d->guard->pending = NULL;
    if (d->counted)
        d->t->inflight--;
    if (req == NULL) {
        bp_log_debug("a DELETE went away before the broker's verdict (%s)", res->reason);
    } else if (res->err != BP_OK) {
        char detail[512];
        snprintf(detail, sizeof(detail),
                 "the broker did not take the delete (%s); nothing was deleted now, retrying is safe",
                 res->reason);
        problem_503(req, detail, res->err == BP_ERR_FATAL ? 10 : 1);
    } else {
        delete_applied_t *a = h2o_mem_alloc_pool(&req->pool, sizeof(*a));
        a->done = d->done;
        a->ctx = d->ctx;
        a->partition = res->partition;
        a->offset = res->offset;
        char ts[24], part[16], off[24];
        snprintf(ts, sizeof(ts), "%lld", (long long)(res->timestamp > 0 ? res->timestamp : 0));
        snprintf(part, sizeof(part), "%d", (int)res->partition);
        snprintf(off, sizeof(off), "%lld", (long long)res->offset);
        const char *topic = d->t->api->cfg->topic;
        bp_err_t e;
        if (d->object_id != NULL) {
            const char *params[5] = {d->object_id, ts, part, off, topic};
            e = bp_pgreq_query_ex(req, BP_PGPOOL_PREPARED | BP_PGPOOL_FOLLOW_UP, object_sql, 5, params,
                                  on_applied, a);
        } else {
            const char *params[6] = {d->batch_id, ts, part, off, topic, d->cascade ? "true" : "false"};
            e = bp_pgreq_query_ex(req, BP_PGPOOL_PREPARED | BP_PGPOOL_FOLLOW_UP, batch_sql, 6, params,
                                  on_applied, a);
        }
        if (e != BP_OK)
            on_applied(req, a, e, NULL, bp_err_str(e));
    }
    free(d);
}

static void on_guard_dispose(void *mem)
{
    delete_guard_t *g = mem;
    delete_pending_t *d = g->pending;
    if (d == NULL)
        return;
    d->req = NULL;
    d->guard = NULL;
    if (d->counted) {
        d->counted = 0;
        d->t->inflight--;
    }
}

int bp_delete_via_topic(bp_api_thread_t *t, h2o_req_t *req, const char *batch_id, const char *object_id,
                        int cascade, bp_delete_done_cb done, void *ctx)
{
    json_t *msg = object_id != NULL
                      ? json_pack("{s:s, s:s, s:s}", "op", "delete", "batch_id", batch_id, "object_id", object_id)
                      : json_pack("{s:s, s:s, s:b}", "op", "delete", "batch_id", batch_id, "cascade", cascade);
    char *value = msg != NULL ? json_dumps(msg, JSON_COMPACT) : NULL;
    delete_pending_t *d = calloc(1, sizeof(*d));
    json_decref(msg);
    if (value == NULL || d == NULL) {
        free(value);
        free(d);
        return problem_503(req, "out of memory; nothing was deleted; retry later", 1);
    }
    *d = (delete_pending_t){.t = t, .req = req, .batch_id = batch_id, .object_id = object_id,
                            .cascade = cascade, .done = done, .ctx = ctx};
    char why[256];
    bp_err_t e = bp_producer_send(t->producer, batch_id, strlen(batch_id), value, strlen(value),
                                  bp_http_request_id(req), NULL, on_verdict, d, why, sizeof(why));
    if (e != BP_OK) {
        free(d);
        char detail[512];
        snprintf(detail, sizeof(detail), "%s; nothing was deleted; retry later", why);
        return problem_503(req, detail, e == BP_ERR_FATAL ? 10 : 1);
    }
    d->guard = h2o_mem_alloc_shared(&req->pool, sizeof(*d->guard), on_guard_dispose);
    d->guard->pending = d;
    d->counted = 1;
    t->inflight++;
    return 0;
}
