/* read.c - the routes of batches and objects (GET here and in read_*.c, DELETE in delete.c), receipts
 * and the OpenAPI document, and the helpers the handlers share: JSON answers, parameter errors, ids,
 * one row by id, and links. */
#include "read.h"

#include <stdlib.h>
#include <string.h>

#include "after.h"
#include "delete.h"
#include "http.h"
#include "pgreq.h"

/* The reads honour `after=` (api/after.h): each runs behind its token check. */
static int objects_list(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    return bp_after_read(t, req, id, idlen, bp_read_objects_list);
}

static int object_get(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    return bp_after_read(t, req, id, idlen, bp_read_object_get);
}

static int batches_list(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    return bp_after_read(t, req, id, idlen, bp_read_batches_list);
}

static int batch_get(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    return bp_after_read(t, req, id, idlen, bp_read_batch_get);
}

const bp_route_t bp_read_routes[] = {
    {"GET", "/api/v1/objects/", objects_list},
    {"GET", "/api/v1/objects/{}", object_get},
    {"DELETE", "/api/v1/objects/{}", bp_delete_object_route},
    {"GET", "/api/v1/batches/", batches_list},
    {"GET", "/api/v1/batches/{}", batch_get},
    {"DELETE", "/api/v1/batches/{}", bp_delete_batch_route},
    {"GET", "/api/v1/receipts/{}", bp_receipt_get},
    {"GET", "/api/v1/openapi.json", bp_openapi_get},
    {NULL, NULL, NULL},
};

int bp_read_send_json_text(h2o_req_t *req, int status, bp_buf_t *b)
{
    if (b->oom || b->p == NULL) {
        bp_buf_free(b);
        return bp_http_problem(req, 500, "Internal Server Error", "out of memory", NULL);
    }
    req->res.status = status;
    req->res.reason = bp_http_reason(status);
    req->res.content_length = b->len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_send_inline(req, b->p, b->len); /* copies */
    bp_buf_free(b);
    return 0;
}

int bp_read_bad_param(h2o_req_t *req, const bp_query_error_t *e)
{
    json_t *extra = json_object(), *list = json_array(), *item = json_object();
    json_object_set_new(item, "name", json_string(e->param));
    json_t *reason = json_string(e->message);
    json_object_set_new(item, "reason", reason != NULL ? reason : json_string("invalid"));
    json_array_append_new(list, item);
    json_object_set_new(extra, "invalid-params", list);
    return bp_http_problem(req, 400, "Bad Request", e->message, extra);
}

int bp_read_param(h2o_req_t *req, const char *name, char **out, size_t *outlen)
{
    int rc = bp_http_query_param(req, name, out, outlen);
    if (rc < 0) {
        bp_query_error_t e = {.param = name};
        snprintf(e.message, sizeof(e.message), "%s: broken percent-encoding", name);
        bp_read_bad_param(req, &e);
    }
    return rc;
}

int bp_read_id_ok(const char *id, size_t len)
{
    if (len == 0 || memchr(id, '\0', len) != NULL)
        return 0;
    json_t *probe = json_stringn(id, len); /* NULL unless valid UTF-8 */
    json_decref(probe);
    return probe != NULL;
}

/* What bp_read_one's result needs, in the request's pool. */
typedef struct read_one {
    const bp_read_one_t *how;
    void *ctx;
} read_one_t;

static void on_one(h2o_req_t *req, void *p, bp_err_t err, const PGresult *res, const char *msg)
{
    read_one_t *one = p;
    if (err != BP_OK)
        bp_pgreq_problem(req, err, msg);
    else if (PQntuples(res) == 0)
        bp_http_problem(req, 404, "Not Found", one->how->missing, NULL);
    else
        one->how->found(req, one->ctx, res);
}

int bp_read_one(h2o_req_t *req, const bp_read_one_t *how, const char *id, size_t idlen, const char *extra,
                void *ctx)
{
    if (!bp_read_id_ok(id, idlen))
        return bp_http_problem(req, 404, "Not Found", how->missing, NULL);
    read_one_t *one = h2o_mem_alloc_pool(&req->pool, sizeof(*one));
    one->how = how;
    one->ctx = ctx;
    const char *params[] = {id, extra};
    bp_err_t err = bp_pgreq_query_prepared(req, how->sql, extra != NULL ? 2 : 1, params, on_one, one);
    return err == BP_OK ? 0 : bp_pgreq_problem(req, err, bp_err_str(err));
}

const char *bp_read_batch_url(h2o_req_t *req, const char *batch_id, size_t len)
{
    const char *base = bp_http_base_url(req, bp_thread_of(req)->api->cfg->public_url);
    const char *enc = bp_http_percent_encode(req, batch_id, len);
    size_t n = strlen(base) + strlen("/api/v1/batches/") + strlen(enc) + 2;
    char *url = h2o_mem_alloc_pool(&req->pool, n);
    snprintf(url, n, "%s/api/v1/batches/%s/", base, enc);
    return url;
}

void bp_read_render_object(bp_buf_t *b, const PGresult *res, int row, int col)
{
    bp_buf_puts(b, "{\"object_id\":");
    bp_buf_json_string(b, PQgetvalue(res, row, col), (size_t)PQgetlength(res, row, col));
    bp_buf_puts(b, ",\"batch_id\":");
    bp_buf_json_string(b, PQgetvalue(res, row, col + 1), (size_t)PQgetlength(res, row, col + 1));
    bp_buf_puts(b, ",\"data\":");
    /* data: the jsonb text as stored */
    bp_buf_add(b, PQgetvalue(res, row, col + 2), (size_t)PQgetlength(res, row, col + 2));
    bp_buf_puts(b, ",\"created_at\":");
    bp_buf_json_string(b, PQgetvalue(res, row, col + 3), (size_t)PQgetlength(res, row, col + 3));
    bp_buf_puts(b, ",\"updated_at\":");
    bp_buf_json_string(b, PQgetvalue(res, row, col + 4), (size_t)PQgetlength(res, row, col + 4));
    bp_buf_puts(b, "}");
}
