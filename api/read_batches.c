/* read_batches.c - GET /api/v1/batches/ (paginated; data= keeps batches with a matching object),
 * GET /api/v1/batches/{id}/ (with its first objects inline) and DELETE (409 while it has objects,
 * ?cascade=true removes both; through the topic: api/delete.c). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "delete.h"
#include "http.h"
#include "pgreq.h"
#include "read.h"

/* The batch, its object count, and its first $2 objects: one row per object, or one row with NULL
 * object columns; none when the batch does not exist. */
static const char get_sql[] =
    "SELECT b.batch_id, " BP_SQL_ISO8601("b.created_at") ", " BP_SQL_ISO8601("b.updated_at") ", "
    "(SELECT coalesce(sum(x.n), 0) FROM count_terms x WHERE x.h = bp_count_hash('b', b.batch_id, NULL)), "
    "p.object_id, p.batch_id, p.data::text, " BP_SQL_ISO8601("p.created_at") ", " BP_SQL_ISO8601("p.updated_at")
    " FROM batches b LEFT JOIN LATERAL (SELECT o.id, o.object_id, o.batch_id, o.data, o.created_at, o.updated_at"
    " FROM objects o WHERE o.batch_id = b.batch_id ORDER BY o.id LIMIT $2::bigint) p ON true"
    " WHERE b.batch_id = $1 ORDER BY p.id";

/* Whether the batch exists and how many objects it has: 404, 409, or its delete message goes to the
 * topic (api/delete.c does the rest). */
static const char delete_lookup_sql[] =
    "SELECT EXISTS (SELECT 1 FROM batches WHERE batch_id = $1), (SELECT count(*) FROM objects WHERE batch_id = $1)";

/* ---- the list ---- */

static void render_row(h2o_req_t *req, bp_rbuf_t *b, const PGresult *res, int row)
{
    const char *id = PQgetvalue(res, row, 1);
    size_t idlen = (size_t)PQgetlength(res, row, 1);
    bp_rbuf_puts(b, "{\"batch_id\":");
    bp_rbuf_json_string(b, id, idlen);
    bp_rbuf_puts(b, ",\"object_count\":");
    bp_rbuf_puts(b, PQgetvalue(res, row, 5));
    bp_rbuf_puts(b, ",\"created_at\":");
    bp_rbuf_json_string(b, PQgetvalue(res, row, 3), (size_t)PQgetlength(res, row, 3));
    bp_rbuf_puts(b, ",\"updated_at\":");
    bp_rbuf_json_string(b, PQgetvalue(res, row, 4), (size_t)PQgetlength(res, row, 4));
    bp_rbuf_puts(b, ",\"url\":");
    const char *url = bp_read_batch_url(req, id, idlen);
    bp_rbuf_json_string(b, url, strlen(url));
    bp_rbuf_puts(b, "}");
}

static int row_key(const PGresult *res, int row, bp_cursor_t *c)
{
    c->key = strtoll(PQgetvalue(res, row, 2), NULL, 10);
    c->batch_id = strdup(PQgetvalue(res, row, 1));
    return c->batch_id != NULL ? 0 : -1;
}

static const bp_read_list_kind_t batches_kind = {
    .cursor_kind = BP_CURSOR_BATCHES,
    .path = "/api/v1/batches/",
    .objects = 0,
    .sql = bp_query_sql_batches,
    .render = render_row,
    .key = row_key,
};

int bp_read_batches_list(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    return bp_read_list(t, req, &batches_kind);
}

/* ---- one batch ---- */

static int not_found(h2o_req_t *req)
{
    return bp_http_problem(req, 404, "Not Found", "no batch with this batch_id", NULL);
}

/* The batch of rows of get_sql (batch columns 0-3, objects from column 4) as GET shows it, without
 * its closing brace, so that callers may add members (the write path's ?wait= adds the ack). */
void bp_read_render_batch(bp_rbuf_t *b, h2o_req_t *req, const PGresult *res)
{
    int n = PQntuples(res);
    const char *id = PQgetvalue(res, 0, 0);
    size_t idlen = (size_t)PQgetlength(res, 0, 0);
    long long total = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    bp_rbuf_puts(b, "{\"batch_id\":");
    bp_rbuf_json_string(b, id, idlen);
    bp_rbuf_puts(b, ",\"object_count\":");
    bp_rbuf_puts(b, PQgetvalue(res, 0, 3));
    bp_rbuf_puts(b, ",\"created_at\":");
    bp_rbuf_json_string(b, PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1));
    bp_rbuf_puts(b, ",\"updated_at\":");
    bp_rbuf_json_string(b, PQgetvalue(res, 0, 2), (size_t)PQgetlength(res, 0, 2));
    bp_rbuf_puts(b, ",\"url\":");
    const char *url = bp_read_batch_url(req, id, idlen);
    bp_rbuf_json_string(b, url, strlen(url));
    bp_rbuf_puts(b, ",\"objects\":[");
    int shown = 0;
    for (int i = 0; i < n; i++) {
        if (PQgetisnull(res, i, 4))
            continue;
        if (shown++ > 0)
            bp_rbuf_puts(b, ",");
        bp_read_render_object(b, res, i, 4);
    }
    bp_rbuf_puts(b, "]");
    if (total > shown) {
        const char *base = bp_http_base_url(req, bp_thread_of(req)->api->cfg->public_url);
        const char *enc = bp_http_percent_encode(req, id, idlen);
        bp_rbuf_t link = {0};
        bp_rbuf_puts(&link, base);
        bp_rbuf_puts(&link, "/api/v1/objects/?batch_id=");
        bp_rbuf_puts(&link, enc);
        bp_rbuf_puts(b, ",\"objects_url\":");
        if (link.oom)
            b->oom = 1;
        else
            bp_rbuf_json_string(b, link.p, link.len);
        bp_rbuf_free(&link);
    }
}

static void on_get(h2o_req_t *req, void *p, bp_err_t err, const PGresult *res, const char *msg)
{
    if (err != BP_OK) {
        bp_pgreq_problem(req, err, msg);
        return;
    }
    int n = PQntuples(res);
    if (n == 0) {
        not_found(req);
        return;
    }
    bp_rbuf_t b = {0};
    bp_read_render_batch(&b, req, res);
    bp_rbuf_puts(&b, "}");
    bp_read_send_json_text(req, 200, &b);
}

int bp_read_batch_get(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    if (!bp_read_id_ok(id, idlen))
        return not_found(req);
    char limit[24];
    snprintf(limit, sizeof(limit), "%lld", t->api->cfg->batch_inline_objects);
    const char *params[] = {id, limit};
    bp_err_t err = bp_pgreq_query_prepared(req, get_sql, 2, params, on_get, NULL);
    return err == BP_OK ? 0 : bp_pgreq_problem(req, err, bp_err_str(err));
}

/* ---- delete ---- */

typedef struct delete_ctx {
    const char *id; /* request pool */
    int cascade;
} delete_ctx_t;

static void conflict(h2o_req_t *req, const char *count)
{
    char detail[160];
    snprintf(detail, sizeof(detail), "the batch has %s objects; use ?cascade=true to delete it with its objects", count);
    json_t *extra = json_object();
    json_object_set_new(extra, "object_count", json_integer(strtoll(count, NULL, 10)));
    bp_http_problem(req, 409, "Conflict", detail, extra);
}

static void on_deleted(h2o_req_t *req, void *p, const char *outcome)
{
    if (outcome != NULL && strcmp(outcome, "not empty") == 0) {
        bp_http_problem(req, 409, "Conflict",
                        "objects were added to the batch while it was being deleted; nothing was deleted, retry", NULL);
        return;
    }
    /* "deleted"; "absent": deleted meanwhile (another DELETE, or a worker applying this very message);
     * "kept" (cascade): objects newer than the delete arrived meanwhile, and they stay with their batch */
    bp_http_send_empty(req, 204, NULL);
}

static void on_delete_lookup(h2o_req_t *req, void *p, bp_err_t err, const PGresult *res, const char *msg)
{
    delete_ctx_t *ctx = p;
    if (err != BP_OK) {
        bp_pgreq_problem(req, err, msg);
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        not_found(req);
        return;
    }
    if (!ctx->cascade && strcmp(PQgetvalue(res, 0, 1), "0") != 0) {
        conflict(req, PQgetvalue(res, 0, 1));
        return;
    }
    bp_delete_via_topic(bp_thread_of(req), req, ctx->id, NULL, ctx->cascade, on_deleted, ctx);
}

int bp_read_batch_delete(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
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
    if (!bp_read_id_ok(id, idlen))
        return not_found(req);
    delete_ctx_t *ctx = h2o_mem_alloc_pool(&req->pool, sizeof(*ctx));
    ctx->id = id;
    ctx->cascade = cascade;
    const char *params[] = {id};
    bp_err_t err = bp_pgreq_query_prepared(req, delete_lookup_sql, 1, params, on_delete_lookup, ctx);
    return err == BP_OK ? 0 : bp_pgreq_problem(req, err, bp_err_str(err));
}
