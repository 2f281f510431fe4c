/* read_objects.c - GET /api/v1/objects/ (filtered, paginated), GET and DELETE /api/v1/objects/{id}/
 * (through the topic: api/delete.c).
 * An object's data is PostgreSQL's jsonb text, sent as stored: pairs in order, JSON types kept. */
#include <stdlib.h>
#include <string.h>

#include "delete.h"
#include "http.h"
#include "pgreq.h"
#include "read.h"

static const char get_sql[] = "SELECT o.object_id, o.batch_id, o.data::text, " BP_SQL_ISO8601("o.created_at") ", "
                              BP_SQL_ISO8601("o.updated_at") " FROM objects o WHERE o.object_id = $1";

/* The batch the object is in now: the key of its delete message (api/delete.c does the rest). */
static const char delete_lookup_sql[] = "SELECT batch_id FROM objects WHERE object_id = $1";

/* ---- the list ---- */

static void render_row(h2o_req_t *req, bp_rbuf_t *b, const PGresult *res, int row)
{
    bp_read_render_object(b, res, row, 2); /* 1 is the id, the keyset */
}

static int row_key(const PGresult *res, int row, bp_cursor_t *c)
{
    c->key = strtoll(PQgetvalue(res, row, 1), NULL, 10);
    return 0;
}

static const bp_read_list_kind_t objects_kind = {
    .cursor_kind = BP_CURSOR_OBJECTS,
    .path = "/api/v1/objects/",
    .objects = 1,
    .sql = bp_query_sql_objects,
    .render = render_row,
    .key = row_key,
};

int bp_read_objects_list(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    return bp_read_list(t, req, &objects_kind);
}

/* ---- one object ---- */

static int not_found(h2o_req_t *req)
{
    return bp_http_problem(req, 404, "Not Found", "no object with this object_id", NULL);
}

static void on_get(h2o_req_t *req, void *ctx, bp_err_t err, const PGresult *res, const char *msg)
{
    if (err != BP_OK) {
        bp_pgreq_problem(req, err, msg);
        return;
    }
    if (PQntuples(res) == 0) {
        not_found(req);
        return;
    }
    bp_rbuf_t b = {0};
    bp_read_render_object(&b, res, 0, 0);
    bp_read_send_json_text(req, 200, &b);
}

int bp_read_object_get(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    if (!bp_read_id_ok(id, idlen))
        return not_found(req);
    const char *params[] = {id};
    bp_err_t err = bp_pgreq_query_prepared(req, get_sql, 1, params, on_get, NULL);
    return err == BP_OK ? 0 : bp_pgreq_problem(req, err, bp_err_str(err));
}

static void on_deleted(h2o_req_t *req, void *ctx, const char *outcome)
{
    /* NULL: deleted meanwhile by someone else (or a worker applying this very message): gone all the same */
    bp_http_send_empty(req, 204, NULL);
}

static void on_delete_lookup(h2o_req_t *req, void *ctx, bp_err_t err, const PGresult *res, const char *msg)
{
    if (err != BP_OK) {
        bp_pgreq_problem(req, err, msg);
        return;
    }
    if (PQntuples(res) == 0) {
        not_found(req);
        return;
    }
    const char *batch_id = h2o_mem_alloc_pool(&req->pool, (size_t)PQgetlength(res, 0, 0) + 1);
    memcpy((char *)batch_id, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0) + 1);
    bp_delete_via_topic(bp_thread_of(req), req, batch_id, ctx, 0, on_deleted, NULL);
}

int bp_read_object_delete(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    if (!bp_read_id_ok(id, idlen))
        return not_found(req);
    const char *params[] = {id};
    bp_err_t err = bp_pgreq_query_prepared(req, delete_lookup_sql, 1, params, on_delete_lookup, (void *)id);
    return err == BP_OK ? 0 : bp_pgreq_problem(req, err, bp_err_str(err));
}
