/* read_list.c - the paginated list engine of GET /api/v1/objects/ and /api/v1/batches/: parameters,
 * the page statement (page and count in one round trip: the count comes from the counters of
 * migration 007), and the {"count", "count_exact", "next", "previous", "results"} body with page or
 * cursor links. */
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "pgreq.h"
#include "read.h"

typedef struct list_ctx {
    const bp_read_list_kind_t *kind;
    bp_api_thread_t *t;
    bp_query_list_t q;  /* owned: freed with the request */
    bp_buf_t results;  /* "[...]" of the page, owned */
    long long count;    /* -1: unknown (count=none) */
    int count_exact;
    const char *next, *previous; /* request-pool strings or NULL */
} list_ctx_t;

static void list_ctx_dispose(void *p)
{
    list_ctx_t *ctx = p;
    bp_query_list_clear(&ctx->q);
    bp_buf_free(&ctx->results);
}

/* ---- parameters ---- */

static int parse_list(bp_api_thread_t *t, h2o_req_t *req, list_ctx_t *ctx)
{
    const bp_config_t *cfg = t->api->cfg;
    bp_query_list_t *q = &ctx->q;
    bp_query_error_t e = {0};
    char *v, *data = NULL, *key = NULL, *value = NULL;
    size_t n, datalen = 0, keylen = 0, valuelen = 0;
    int rc;

    q->page_size = cfg->page_size_default < cfg->page_size_max ? cfg->page_size_default : cfg->page_size_max;
    if ((rc = bp_read_param(req, "page_size", &v, &n)) < 0)
        return -1;
    if (rc == 1 && bp_query_parse_page_size(v, n, cfg->page_size_max, &q->page_size, &e) != 0)
        goto bad;
    if ((rc = bp_read_param(req, "page", &v, &n)) < 0)
        return -1;
    if (rc == 1 && (bp_query_parse_page(v, n, &q->page, &e) != 0 || bp_query_check_offset(q->page, q->page_size, &e) != 0))
        goto bad;
    if ((rc = bp_read_param(req, "count", &v, &n)) < 0)
        return -1;
    if (rc == 1 && bp_query_parse_count(v, n, &q->count, &e) != 0)
        goto bad;
    if ((rc = bp_read_param(req, "cursor", &v, &n)) < 0)
        return -1;
    if (rc == 1) {
        if (bp_cursor_decode(v, n, ctx->kind->cursor_kind, &q->cursor, &e) != 0)
            goto bad;
        q->has_cursor = 1;
    }
    if ((rc = bp_read_param(req, "data", &data, &datalen)) < 0 ||
        (rc = bp_read_param(req, "key", &key, &keylen)) < 0 || (rc = bp_read_param(req, "value", &value, &valuelen)) < 0)
        return -1;
    if (bp_query_parse_filter(data, datalen, key, keylen, value, valuelen, &q->filter, &e) != 0)
        goto bad;
    if (ctx->kind->objects) {
        if ((rc = bp_read_param(req, "batch_id", &v, &n)) < 0)
            return -1;
        if (rc == 1) {
            if (!bp_read_id_ok(v, n) || n > BP_QUERY_FILTER_MAX_BYTES) {
                e.param = "batch_id";
                snprintf(e.message, sizeof(e.message), "batch_id: must be a non-empty UTF-8 string");
                goto bad;
            }
            if ((q->batch_id = strdup(v)) == NULL) {
                bp_http_problem(req, 500, "Internal Server Error", "out of memory", NULL);
                return -1;
            }
        }
    }
    return 0;
bad:
    bp_read_bad_param(req, &e);
    return -1;
}

/* ---- links ---- */

/* Append a raw query-string piece, percent-encoding every byte that is not printable URL text: the
 * client's bytes may be anything (0xFF, controls, quotes), and a link must be valid UTF-8 and a URL.
 * '%' is kept as is, so what the client percent-encoded stays encoded once. */
static void add_query_text(bp_buf_t *b, const char *p, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            (c != 0 && strchr("-._~!$'()*+,;=:@/?%", c) != NULL))
            continue;
        bp_buf_add(b, p + run, i - run);
        run = i + 1;
        char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
        bp_buf_add(b, esc, 3);
    }
    bp_buf_add(b, p + run, n - run);
}

/* The list's URL with the request's other parameters in their order, page= and cursor= replaced by
 * name=value (value URL-safe already), or dropped when name is NULL. */
static const char *link_to(h2o_req_t *req, const list_ctx_t *ctx, const char *name, const char *value)
{
    const char *base = bp_http_base_url(req, ctx->t->api->cfg->public_url);
    h2o_iovec_t qs = bp_http_query(req);
    bp_buf_t b = {0};
    bp_buf_puts(&b, base);
    bp_buf_puts(&b, ctx->kind->path);
    char sep = '?';
    const char *p = qs.base, *end = qs.base + qs.len;
    while (p != NULL && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp != NULL ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        size_t klen = (size_t)((eq != NULL ? eq : stop) - p);
        int drop = klen == 0 || (klen == 4 && memcmp(p, "page", 4) == 0) || (klen == 6 && memcmp(p, "cursor", 6) == 0);
        if (!drop) {
            bp_buf_add(&b, &sep, 1);
            add_query_text(&b, p, (size_t)(stop - p));
            sep = '&';
        }
        p = amp != NULL ? amp + 1 : NULL;
    }
    if (name != NULL) {
        bp_buf_add(&b, &sep, 1);
        bp_buf_puts(&b, name);
        bp_buf_puts(&b, "=");
        bp_buf_puts(&b, value);
    }
    if (b.oom) {
        bp_buf_free(&b);
        return NULL;
    }
    char *out = h2o_mem_alloc_pool(&req->pool, b.len + 1);
    memcpy(out, b.p, b.len + 1);
    bp_buf_free(&b);
    return out;
}

static const char *page_link(h2o_req_t *req, const list_ctx_t *ctx, long long page)
{
    char v[24];
    snprintf(v, sizeof(v), "%lld", page);
    return link_to(req, ctx, "page", v);
}

static const char *cursor_link(h2o_req_t *req, const list_ctx_t *ctx, bp_cursor_t *c, int backward)
{
    c->kind = ctx->kind->cursor_kind;
    c->backward = backward;
    char *enc = bp_cursor_encode(c);
    if (enc == NULL)
        return NULL;
    const char *link = link_to(req, ctx, "cursor", enc);
    free(enc);
    return link;
}

/* The cursor of a result row, as a link. */
static const char *row_link(h2o_req_t *req, const list_ctx_t *ctx, const PGresult *res, int row, int backward)
{
    bp_cursor_t c = {0};
    if (ctx->kind->key(res, row, &c) != 0)
        return NULL;
    const char *link = cursor_link(req, ctx, &c, backward);
    bp_cursor_clear(&c);
    return link;
}

/* ---- answering ---- */

static void respond(h2o_req_t *req, list_ctx_t *ctx)
{
    bp_buf_t b = {0};
    char num[32];
    bp_buf_puts(&b, "{\"count\":");
    if (ctx->count >= 0) {
        snprintf(num, sizeof(num), "%lld", ctx->count);
        bp_buf_puts(&b, num);
    } else {
        bp_buf_puts(&b, "null");
    }
    bp_buf_puts(&b, ctx->count_exact ? ",\"count_exact\":true" : ",\"count_exact\":false");
    bp_buf_puts(&b, ",\"next\":");
    if (ctx->next != NULL)
        bp_buf_json_string(&b, ctx->next, strlen(ctx->next));
    else
        bp_buf_puts(&b, "null");
    bp_buf_puts(&b, ",\"previous\":");
    if (ctx->previous != NULL)
        bp_buf_json_string(&b, ctx->previous, strlen(ctx->previous));
    else
        bp_buf_puts(&b, "null");
    bp_buf_puts(&b, ",\"results\":");
    if (ctx->results.oom)
        b.oom = 1;
    else
        bp_buf_add(&b, ctx->results.p, ctx->results.len);
    bp_buf_puts(&b, "}");
    bp_read_send_json_text(req, 200, &b);
}

/* What the page statement returned, as the links and the count see it. */
typedef struct page {
    int n;            /* rows shown */
    int has_more;     /* the statement found one more row than a page holds */
    int backward;     /* a previous-link cursor: rows came newest-first */
    long long offset; /* rows before the page (page numbers only) */
} page_t;

static page_t page_of(const bp_query_list_t *q, const PGresult *res)
{
    int ntuples = PQntuples(res);
    int fetched = ntuples == 1 && PQgetisnull(res, 0, 1) ? 0 : ntuples; /* an empty page is one NULL row */
    page_t pg = {.has_more = fetched > q->page_size, .backward = q->has_cursor && q->cursor.backward};
    pg.n = pg.has_more ? (int)q->page_size : fetched;
    pg.offset = !q->has_cursor && q->page > 1 ? (q->page - 1) * q->page_size : 0;
    return pg;
}

/* page=N beyond the last page: 404 naming the parameter. */
static void past_last_page(h2o_req_t *req, long long page)
{
    char detail[96];
    snprintf(detail, sizeof(detail), "page %lld is past the last page", page);
    json_t *extra = json_object();
    json_object_set_new(extra, "invalid-params",
                        json_pack("[{s:s, s:s}]", "name", "page", "reason", "past the last page"));
    bp_http_problem(req, 404, "Not Found", detail, extra);
}

/* "[...]" of the page's rows in ascending order: backward pages come newest-first from the statement. */
static void render_rows(h2o_req_t *req, list_ctx_t *ctx, const PGresult *res, const page_t *pg)
{
    bp_buf_add(&ctx->results, "[", 1);
    for (int i = 0; i < pg->n; i++) {
        if (i > 0)
            bp_buf_add(&ctx->results, ",", 1);
        ctx->kind->render(req, &ctx->results, res, pg->backward ? pg->n - 1 - i : i);
    }
    bp_buf_add(&ctx->results, "]", 1);
}

/* next and previous: page numbers keep page numbers; cursor pages (and the first page without
 * page=) link by the keys of their first and last rows. */
static void set_links(h2o_req_t *req, list_ctx_t *ctx, const PGresult *res, const page_t *pg)
{
    const bp_query_list_t *q = &ctx->q;
    int first = pg->backward ? pg->n - 1 : 0, last = pg->backward ? 0 : pg->n - 1;
    if (!q->has_cursor && q->page > 0) {
        ctx->next = pg->has_more ? page_link(req, ctx, q->page + 1) : NULL;
        ctx->previous = q->page > 1 ? page_link(req, ctx, q->page - 1) : NULL;
    } else if (!pg->backward) {
        ctx->next = pg->has_more ? row_link(req, ctx, res, last, 0) : NULL;
        if (q->has_cursor) {
            if (pg->n > 0) {
                ctx->previous = row_link(req, ctx, res, first, 1);
            } else { /* nothing after the cursor any more: go back from it */
                bp_cursor_t c = q->cursor;
                ctx->previous = cursor_link(req, ctx, &c, 1);
            }
        }
    } else {
        ctx->previous = pg->has_more ? row_link(req, ctx, res, first, 1) : NULL;
        ctx->next = pg->n > 0 ? row_link(req, ctx, res, last, 0) : link_to(req, ctx, NULL, NULL);
    }
}

/* The count: column 0 of the first row, its exactness in the last column; what the page itself
 * proves wins over an estimate. */
static void decide_count(list_ctx_t *ctx, const PGresult *res, const page_t *pg)
{
    const bp_query_list_t *q = &ctx->q;
    long long counted = PQgetisnull(res, 0, 0) ? -1 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    int last_col = PQnfields(res) - 1;
    int exact = counted >= 0 && !PQgetisnull(res, 0, last_col) && PQgetvalue(res, 0, last_col)[0] == 't';
    long long proven = pg->offset + pg->n + (pg->has_more ? 1 : 0); /* rows known to exist */
    if (q->count == BP_COUNT_NONE || counted < 0) {
        ctx->count = -1;
        ctx->count_exact = 0;
    } else if (!pg->has_more && !q->has_cursor) {
        /* the last page by number (or the only one): the rows before it and on it are all there is */
        ctx->count = pg->offset + pg->n;
        ctx->count_exact = 1;
    } else if (exact) {
        ctx->count = counted;
        ctx->count_exact = 1;
    } else { /* an estimate from the counters: never below what the page proves */
        ctx->count = counted > proven ? counted : proven;
        ctx->count_exact = 0;
    }
}

static void on_page(h2o_req_t *req, void *p, bp_err_t err, const PGresult *res, const char *msg)
{
    list_ctx_t *ctx = p;
    if (err != BP_OK) {
        bp_pgreq_problem(req, err, msg);
        return;
    }
    page_t pg = page_of(&ctx->q, res);
    if (pg.n == 0 && !ctx->q.has_cursor && ctx->q.page > 1) {
        past_last_page(req, ctx->q.page);
        return;
    }
    render_rows(req, ctx, res, &pg);
    set_links(req, ctx, res, &pg);
    decide_count(ctx, res, &pg);
    respond(req, ctx);
}

/* The page statement, with its count. */
static void run_page(h2o_req_t *req, list_ctx_t *ctx)
{
    bp_sql_t sql;
    if (ctx->kind->sql(&ctx->q, ctx->t->api->cfg->count_cap, &sql) != 0) {
        bp_http_problem(req, 500, "Internal Server Error", "out of memory", NULL);
        return;
    }
    bp_err_t err = bp_pgreq_query_ex(req, sql.plan_free ? BP_PGPOOL_PREPARED : 0, sql.text, sql.nparams,
                                     (const char *const *)sql.params, on_page, ctx);
    bp_sql_clear(&sql);
    if (err != BP_OK)
        bp_pgreq_problem(req, err, bp_err_str(err));
}

int bp_read_list(bp_api_thread_t *t, h2o_req_t *req, const bp_read_list_kind_t *kind)
{
    list_ctx_t *ctx = h2o_mem_alloc_shared(&req->pool, sizeof(*ctx), list_ctx_dispose);
    memset(ctx, 0, sizeof(*ctx));
    ctx->kind = kind;
    ctx->t = t;
    ctx->count = -1;
    if (parse_list(t, req, ctx) != 0)
        return 0; /* answered */
    ctx->q.count_exact_max = t->api->cfg->count_exact_max;
    run_page(req, ctx);
    return 0;
}
