/* read_batches.c - GET /api/v1/batches/ (paginated; data= keeps batches with a matching object) and
 * GET /api/v1/batches/{id}/ (with its first objects inline); DELETE is delete.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
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

/* ---- the list ---- */

static void render_row(h2o_req_t *req, bp_buf_t *b, const PGresult *res, int row)
{
    const char *id = PQgetvalue(res, row, 1);
    size_t idlen = (size_t)PQgetlength(res, row, 1);
    bp_buf_puts(b, "{\"batch_id\":");
    bp_buf_json_string(b, id, idlen);
    bp_buf_puts(b, ",\"object_count\":");
    bp_buf_puts(b, PQgetvalue(res, row, 5));
    bp_buf_puts(b, ",\"created_at\":");
    bp_buf_json_string(b, PQgetvalue(res, row, 3), (size_t)PQgetlength(res, row, 3));
    bp_buf_puts(b, ",\"updated_at\":");
    bp_buf_json_string(b, PQgetvalue(res, row, 4), (size_t)PQgetlength(res, row, 4));
    bp_buf_puts(b, ",\"url\":");
    const char *url = bp_read_batch_url(req, id, idlen);
    bp_buf_json_string(b, url, strlen(url));
    bp_buf_puts(b, "}");
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

/* The batch of rows of get_sql (batch columns 0-3, objects from column 4) as GET shows it, without
 * its closing brace, so that callers may add members (the write path's ?wait= adds the ack). */
void bp_read_render_batch(bp_buf_t *b, h2o_req_t *req, const PGresult *res)
{
    int n = PQntuples(res);
    const char *id = PQgetvalue(res, 0, 0);
    size_t idlen = (size_t)PQgetlength(res, 0, 0);
    long long total = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
    bp_buf_puts(b, "{\"batch_id\":");
    bp_buf_json_string(b, id, idlen);
    bp_buf_puts(b, ",\"object_count\":");
    bp_buf_puts(b, PQgetvalue(res, 0, 3));
    bp_buf_puts(b, ",\"created_at\":");
    bp_buf_json_string(b, PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1));
    bp_buf_puts(b, ",\"updated_at\":");
    bp_buf_json_string(b, PQgetvalue(res, 0, 2), (size_t)PQgetlength(res, 0, 2));
    bp_buf_puts(b, ",\"url\":");
    const char *url = bp_read_batch_url(req, id, idlen);
    bp_buf_json_string(b, url, strlen(url));
    bp_buf_puts(b, ",\"objects\":[");
    int shown = 0;
    for (int i = 0; i < n; i++) {
        if (PQgetisnull(res, i, 4))
            continue;
        if (shown++ > 0)
            bp_buf_puts(b, ",");
        bp_read_render_object(b, res, i, 4);
    }
    bp_buf_puts(b, "]");
    if (total > shown) {
        const char *base = bp_http_base_url(req, bp_thread_of(req)->api->cfg->public_url);
        const char *enc = bp_http_percent_encode(req, id, idlen);
        bp_buf_t link = {0};
        bp_buf_puts(&link, base);
        bp_buf_puts(&link, "/api/v1/objects/?batch_id=");
        bp_buf_puts(&link, enc);
        bp_buf_puts(b, ",\"objects_url\":");
        if (link.oom)
            b->oom = 1;
        else
            bp_buf_json_string(b, link.p, link.len);
        bp_buf_free(&link);
    }
}

static void on_get(h2o_req_t *req, void *ctx, const PGresult *res)
{
    bp_buf_t b = {0};
    bp_read_render_batch(&b, req, res);
    bp_buf_puts(&b, "}");
    bp_read_send_json_text(req, 200, &b);
}

static const bp_read_one_t get_one = {.sql = get_sql, .missing = BP_READ_NO_BATCH, .found = on_get};

int bp_read_batch_get(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    char limit[24];
    snprintf(limit, sizeof(limit), "%lld", t->api->cfg->batch_inline_objects);
    return bp_read_one(req, &get_one, id, idlen, limit, NULL);
}
