/* console.c - GET /console/ (index.html), GET /console/<file> and the redirect of /console: the web
 * console's files, embedded at build time (api/embed_console.cmake). They hold no data, so they are
 * public; the page itself calls the JSON API with the user's key. A file is found by its exact name in
 * the embedded table, so no path can reach anything else. */
#include "console.h"

#include <string.h>

#include "http.h"
#include "router.h"

/* Scripts and styles from the console's own files only: no inline script, no eval, no other origin. */
static const char csp[] = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                          "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                          "frame-ancestors 'none'";

const bp_console_file_t *bp_console_find(const char *name, size_t len)
{
    for (size_t i = 0; i < bp_console_nfiles; i++) {
        const bp_console_file_t *f = &bp_console_files[i];
        if (strlen(f->name) == len && memcmp(f->name, name, len) == 0)
            return f;
    }
    return NULL;
}

static void add_common_headers(h2o_req_t *req)
{
    h2o_mem_pool_t *pool = &req->pool;
    h2o_add_header_by_str(pool, &req->res.headers, H2O_STRLIT("content-security-policy"), 0, NULL, csp,
                          sizeof(csp) - 1);
    h2o_add_header_by_str(pool, &req->res.headers, H2O_STRLIT("x-content-type-options"), 0, NULL,
                          H2O_STRLIT("nosniff"));
    h2o_add_header_by_str(pool, &req->res.headers, H2O_STRLIT("referrer-policy"), 0, NULL,
                          H2O_STRLIT("no-referrer"));
    h2o_add_header_by_str(pool, &req->res.headers, H2O_STRLIT("x-frame-options"), 0, NULL,
                          H2O_STRLIT("DENY"));
}

/* Whether If-None-Match names f's ETag (or is "*"): the client's copy is current. */
static int not_modified(h2o_req_t *req, const bp_console_file_t *f)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_IF_NONE_MATCH, -1);
    if (i < 0)
        return 0;
    h2o_iovec_t v = req->headers.entries[i].value;
    size_t elen = strlen(f->etag);
    if (v.len == 1 && v.base[0] == '*')
        return 1;
    for (size_t k = 0; k + elen <= v.len; k++) /* a list of tags, weak (W/"...") or strong */
        if (memcmp(v.base + k, f->etag, elen) == 0)
            return 1;
    return 0;
}

static int send_file(h2o_req_t *req, const bp_console_file_t *f)
{
    add_common_headers(req);
    /* revalidate every time (the ETag makes that a 304): a new binary serves new files at once */
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ETAG, NULL, f->etag, strlen(f->etag));
    if (not_modified(req, f)) {
        req->res.status = 304;
        req->res.reason = "Not Modified";
        h2o_send_inline(req, "", 0);
        return 0;
    }
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = f->len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, f->content_type,
                   strlen(f->content_type));
    h2o_send_inline(req, (const char *)f->data, f->len); /* copies: cheap for these small files */
    return 0;
}

/* GET /console/ serves index.html; /console (no slash) is redirected so that the page's relative
 * links resolve under /console/. */
static int get_index(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    (void)t, (void)id, (void)idlen;
    size_t pathlen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    if (pathlen == 0 || req->path.base[pathlen - 1] != '/') {
        h2o_iovec_t q = bp_http_query(req);
        size_t n = sizeof("/console/?") + q.len;
        char *location = h2o_mem_alloc_pool(&req->pool, n);
        snprintf(location, n, "/console/%s%.*s", q.len > 0 ? "?" : "", (int)q.len, q.base);
        bp_http_add_header(req, "location", location);
        req->res.status = 301;
        req->res.reason = "Moved Permanently";
        req->res.content_length = 0;
        h2o_send_inline(req, "", 0);
        return 0;
    }
    const bp_console_file_t *f = bp_console_find(H2O_STRLIT("index.html"));
    if (f == NULL)
        return bp_http_problem(req, 404, "Not Found", "this build has no console", NULL);
    return send_file(req, f);
}

static int get_file(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    (void)t;
    const bp_console_file_t *f = bp_console_find(id, idlen);
    if (f == NULL) {
        add_common_headers(req);
        return bp_http_problem(req, 404, "Not Found", "the console has no such file", NULL);
    }
    return send_file(req, f);
}

const bp_route_t bp_console_routes[] = {
    {"GET", "/console/", get_index},
    {"GET", "/console/{}", get_file},
    {NULL, NULL, NULL},
};
