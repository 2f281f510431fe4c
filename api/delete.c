/* delete.c - DELETE of objects and batches: the handlers (404, 409 without ?cascade=true), then through
 * the topic: publish the delete message, wait for the broker's ack without blocking the loop (the
 * producer's verdict callback), then apply it with bp_delete_object or bp_delete_batch as of the
 * ack's (timestamp, partition, offset). */
#include "delete.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "bp_log.h"
#include "http.h"
#include "pgreq.h"
#include "producer.h"
#include "read.h"

/* Called once PostgreSQL applied the delete, on the loop thread, while req is alive; it must answer
 * req. outcome is the SQL function's text result (borrowed, valid during the call): for an object
 * the batch it was deleted from, or NULL when nothing was left to delete; for a batch "deleted",
 * "absent", "not empty" or "kept" (schemas/migrations/006_log_order.sql). */
typedef void (*delete_done_cb)(h2o_req_t *req, void *ctx, const char *outcome);

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
    delete_done_cb done;
    void *ctx;
} delete_pending_t;

/* What the SQL step needs after the ack, in the request's pool. */
typedef struct delete_applied {
    delete_done_cb done;
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

/* Publish {"op": "delete", "batch_id": batch_id, "object_id": object_id} (object_id NULL: the batch,
 * with "cascade") through the thread's producer, then apply it. The strings are borrowed: they must
 * live in req's pool (or longer). On success done(req, ctx, outcome) answers. Everything else is
 * answered here: 503 when the broker did not take the message (nothing was deleted), 503 when
 * PostgreSQL failed after the ack (the delete is in the topic and the workers will apply it), nothing
 * when the request went away. Returns 0 (req answered now or later). */
static int via_topic(bp_api_thread_t *t, h2o_req_t *req, const char *batch_id, const char *object_id,
                     int cascade, delete_done_cb done, void *ctx)
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

/* ---- DELETE /api/v1/objects/{id}/ ---- */

/* The batch the object is in now: the key of its delete message. */
static const char object_lookup_sql[] = "SELECT batch_id FROM objects WHERE object_id = $1";

static void on_object_deleted(h2o_req_t *req, void *ctx, const char *outcome)
{
    /* NULL: deleted meanwhile by someone else (or a worker applying this very message): gone all the same */
    bp_http_send_empty(req, 204, NULL);
}

static void on_object_found(h2o_req_t *req, void *ctx, const PGresult *res)
{
    const char *object_id = ctx; /* the request's */
    const char *batch_id = h2o_mem_alloc_pool(&req->pool, (size_t)PQgetlength(res, 0, 0) + 1);
    memcpy((char *)batch_id, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0) + 1);
    via_topic(bp_thread_of(req), req, batch_id, object_id, 0, on_object_deleted, NULL);
}

static const bp_read_one_t object_lookup = {
    .sql = object_lookup_sql, .missing = BP_READ_NO_OBJECT, .found = on_object_found};

int bp_delete_object_route(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    return bp_read_one(req, &object_lookup, id, idlen, NULL, (void *)id);
}

/* ---- DELETE /api/v1/batches/{id}/[?cascade=true] ---- */

/* How many objects the batch has; no row when there is no such batch. */
static const char batch_lookup_sql[] =
    "SELECT (SELECT count(*) FROM objects WHERE batch_id = $1) FROM batches WHERE batch_id = $1";

typedef struct batch_delete {
    const char *id; /* request pool */
    int cascade;
} batch_delete_t;

static void conflict(h2o_req_t *req, const char *count)
{
    char detail[160];
    snprintf(detail, sizeof(detail),
             "the batch has %s objects; use ?cascade=true to delete it with its objects", count);
    json_t *extra = json_object();
    json_object_set_new(extra, "object_count", json_integer(strtoll(count, NULL, 10)));
    bp_http_problem(req, 409, "Conflict", detail, extra);
}

static void on_batch_deleted(h2o_req_t *req, void *p, const char *outcome)
{
    if (outcome != NULL && strcmp(outcome, "not empty") == 0) {
        bp_http_problem(req, 409, "Conflict",
                        "objects were added to the batch while it was being deleted; nothing was deleted, "
                        "retry",
                        NULL);
        return;
    }
    /* "deleted"; "absent": deleted meanwhile (another DELETE, or a worker applying this very message);
     * "kept" (cascade): objects newer than the delete arrived meanwhile, and they stay with their batch */
    bp_http_send_empty(req, 204, NULL);
}

static void on_batch_found(h2o_req_t *req, void *p, const PGresult *res)
{
    batch_delete_t *d = p;
    if (!d->cascade && strcmp(PQgetvalue(res, 0, 0), "0") != 0) {
        conflict(req, PQgetvalue(res, 0, 0));
        return;
    }
    via_topic(bp_thread_of(req), req, d->id, NULL, d->cascade, on_batch_deleted, d);
}

static const bp_read_one_t batch_lookup = {
    .sql = batch_lookup_sql, .missing = BP_READ_NO_BATCH, .found = on_batch_found};

int bp_delete_batch_route(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    char *v;
    size_t n;
    int cascade = 0, rc = bp_read_param(req, "cascade", &v, &n);
    if (rc < 0)
        return 0;
    if (rc == 1) {
        if (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0) {
            cascade = 1;
        } else if (!(strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0)) {
            bp_query_error_t e = {.param = "cascade"};
            snprintf(e.message, sizeof(e.message), "cascade: must be true or false");
            return bp_read_bad_param(req, &e);
        }
    }
    batch_delete_t *d = h2o_mem_alloc_pool(&req->pool, sizeof(*d));
    d->id = id;
    d->cascade = cascade;
    return bp_read_one(req, &batch_lookup, id, idlen, NULL, d);
}
