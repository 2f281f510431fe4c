/* read.c - the read path's routes (GET/DELETE of batches and objects, the OpenAPI document) and the
 * helpers its handlers share: hand-built JSON text, parameter errors, ids and links. */
#include "read.h"

#include <stdlib.h>
#include <string.h>

#include "after.h"
#include "http.h"

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
    {"DELETE", "/api/v1/objects/{}", bp_read_object_delete},
    {"GET", "/api/v1/batches/", batches_list},
    {"GET", "/api/v1/batches/{}", batch_get},
    {"DELETE", "/api/v1/batches/{}", bp_read_batch_delete},
    {"GET", "/api/v1/receipts/{}", bp_receipt_get},
    {"GET", "/api/v1/openapi.json", bp_openapi_get},
    {NULL, NULL, NULL},
};

void bp_rbuf_add(bp_rbuf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void bp_rbuf_puts(bp_rbuf_t *b, const char *s)
{
    bp_rbuf_add(b, s, strlen(s));
}

void bp_rbuf_json_string(bp_rbuf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    bp_rbuf_add(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        bp_rbuf_add(b, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        switch (c) {
        case '"': bp_rbuf_add(b, "\\\"", 2); break;
        case '\\': bp_rbuf_add(b, "\\\\", 2); break;
        case '\n': bp_rbuf_add(b, "\\n", 2); break;
        case '\r': bp_rbuf_add(b, "\\r", 2); break;
        case '\t': bp_rbuf_add(b, "\\t", 2); break;
        default: bp_rbuf_add(b, esc, 6); break;
        }
    }
    bp_rbuf_add(b, s + run, n - run);
    bp_rbuf_add(b, "\"", 1);
}

void bp_rbuf_free(bp_rbuf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

int bp_read_send_json_text(h2o_req_t *req, int status, bp_rbuf_t *b)
{
    if (b->oom || b->p == NULL) {
        bp_rbuf_free(b);
        return bp_http_problem(req, 500, "Internal Server Error", "out of memory", NULL);
    }
    req->res.status = status;
    req->res.reason = bp_http_reason(status);
    req->res.content_length = b->len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_send_inline(req, b->p, b->len); /* copies */
    bp_rbuf_free(b);
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

const char *bp_read_batch_url(h2o_req_t *req, const char *batch_id, size_t len)
{
    const char *base = bp_http_base_url(req, bp_thread_of(req)->api->cfg->public_url);
    const char *enc = bp_http_percent_encode(req, batch_id, len);
    size_t n = strlen(base) + strlen("/api/v1/batches/") + strlen(enc) + 2;
    char *url = h2o_mem_alloc_pool(&req->pool, n);
    snprintf(url, n, "%s/api/v1/batches/%s/", base, enc);
    return url;
}

void bp_read_render_object(bp_rbuf_t *b, const PGresult *res, int row, int col)
{
    bp_rbuf_puts(b, "{\"object_id\":");
    bp_rbuf_json_string(b, PQgetvalue(res, row, col), (size_t)PQgetlength(res, row, col));
    bp_rbuf_puts(b, ",\"batch_id\":");
    bp_rbuf_json_string(b, PQgetvalue(res, row, col + 1), (size_t)PQgetlength(res, row, col + 1));
    bp_rbuf_puts(b, ",\"data\":");
    bp_rbuf_add(b, PQgetvalue(res, row, col + 2), (size_t)PQgetlength(res, row, col + 2)); /* jsonb as stored */
    bp_rbuf_puts(b, ",\"created_at\":");
    bp_rbuf_json_string(b, PQgetvalue(res, row, col + 3), (size_t)PQgetlength(res, row, col + 3));
    bp_rbuf_puts(b, ",\"updated_at\":");
    bp_rbuf_json_string(b, PQgetvalue(res, row, col + 4), (size_t)PQgetlength(res, row, col + 4));
    bp_rbuf_puts(b, "}");
}
