/* read_objects.c - GET /api/v1/objects/ (filtered, paginated) and GET /api/v1/objects/{id}/ (DELETE is
 * delete.c's). An object's data is PostgreSQL's jsonb text, sent as stored: pairs in order, types kept. */
#include <stdlib.h>

#include "read.h"

static const char get_sql[] = "SELECT o.object_id, o.batch_id, o.data::text, " BP_SQL_ISO8601("o.created_at") ", "
                              BP_SQL_ISO8601("o.updated_at") " FROM objects o WHERE o.object_id = $1";

/* ---- the list ---- */

static void render_row(h2o_req_t *req, bp_buf_t *b, const PGresult *res, int row)
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

static void on_get(h2o_req_t *req, void *ctx, const PGresult *res)
{
    bp_buf_t b = {0};
    bp_read_render_object(&b, res, 0, 0);
    bp_read_send_json_text(req, 200, &b);
}

static const bp_read_one_t get_one = {.sql = get_sql, .missing = BP_READ_NO_OBJECT, .found = on_get};

int bp_read_object_get(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    return bp_read_one(req, &get_one, id, idlen, NULL, NULL);
}
