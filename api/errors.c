/* errors.c - an h2o filter on the fallback path: responses h2o generates itself (h2o_send_error:
 * 413, 400, 417, ...) go out as application/problem+json instead of text/plain. Our own routes never
 * reach the fallback path, so only h2o's answers are rewritten. */
#include "errors.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "server.h"

typedef struct errors_filter {
    h2o_filter_t super;
    long long max_body_bytes;
} errors_filter_t;

typedef struct replace_ostream {
    h2o_ostream_t super;
    h2o_iovec_t body;
} replace_ostream_t;

static void replace_do_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt,
                            h2o_send_state_t state)
{
    replace_ostream_t *ro = (replace_ostream_t *)self;
    /* send our body once, whatever the original chunks were */
    h2o_iovec_t out = ro->body;
    ro->body = h2o_iovec_init(NULL, 0);
    h2o_ostream_send_next(&ro->super, req, &out, out.len != 0 ? 1 : 0, state);
}

static void on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    errors_filter_t *f = (errors_filter_t *)self;
    ssize_t ct = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (req->res.status < 400 || ct < 0 ||
        !h2o_memis(req->res.headers.entries[ct].value.base, 10, H2O_STRLIT("text/plain"))) {
        h2o_setup_next_ostream(req, slot);
        return;
    }
    bp_server_linger_on_close(req); /* h2o closes with the body unread: let the client read this answer */
    char detail[256];
    if (req->res.status == 413)
        snprintf(detail, sizeof(detail), "the request body is larger than the limit of %lld bytes (BP_MAX_BODY_BYTES)",
                 f->max_body_bytes);
    else
        snprintf(detail, sizeof(detail), "the HTTP request could not be processed: %s",
                 req->res.reason != NULL ? req->res.reason : "error");
    json_t *body = json_pack("{s:s, s:s, s:i, s:s}", "type", "about:blank", "title",
                             req->res.reason != NULL ? req->res.reason : "Error", "status", req->res.status, "detail",
                             detail);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL) {
        h2o_setup_next_ostream(req, slot);
        return;
    }
    replace_ostream_t *ro = (replace_ostream_t *)h2o_add_ostream(req, sizeof(*ro), slot);
    ro->super.do_send = replace_do_send;
    ro->body = h2o_strdup(&req->pool, text, SIZE_MAX);
    free(text);
    req->res.headers.entries[ct].value = h2o_iovec_init(H2O_STRLIT("application/problem+json"));
    req->res.content_length = ro->body.len;
    slot = &ro->super.next;
    h2o_setup_next_ostream(req, slot);
}

void bp_errors_register(h2o_hostconf_t *hostconf, long long max_body_bytes)
{
    errors_filter_t *f = (errors_filter_t *)h2o_create_filter(&hostconf->fallback_path, sizeof(*f));
    f->super.on_setup_ostream = on_setup_ostream;
    f->max_body_bytes = max_body_bytes;
}
