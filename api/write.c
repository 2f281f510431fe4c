/* write.c - POST /api/v1/batches/ and /api/v1/objects/: check the media type and the body, publish the
 * batch keyed by batch_id, and answer when the broker's verdict arrives (never a 2xx without an ack). */
#include "write.h"

#include <ctype.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bp_log.h"
#include "bp_payload.h"
#include "bp_trace.h"
#include "budget.h"
#include "http.h"
#include "producer.h"
#include "router.h"

static const char maybe_stored[] =
    "; the batch may or may not have been stored; retrying is safe: the same batch applied twice yields the "
    "same state";

typedef enum post_kind { POST_BATCH, POST_OBJECT } post_kind_t;

struct write_pending;

/* Lives in the request's pool: when the request goes away (client gone, HTTP/2 cancel) before the
 * verdict, its dispose tells the pending write. */
typedef struct write_guard {
    struct write_pending *pending; /* NULL once the verdict came */
} write_guard_t;

/* One POST waiting for the broker. malloc'd; freed by the producer's verdict callback (on_verdict). */
typedef struct write_pending {
    bp_api_thread_t *t;
    h2o_req_t *req;       /* NULL once the request is gone */
    write_guard_t *guard; /* NULL once detached */
    int counted;          /* holds one t->inflight */
    size_t value_len;
    char request_id[130]; /* a copy for logs that outlive the request (ids are <= 128 bytes) */
    bp_write_ack_t ack;   /* pointers into the request pool: read only while req != NULL */
} write_pending_t;

/* ---------------------------------------------------------------------------------------------
 * Answers.
 */

static int problem_retry(h2o_req_t *req, int status, const char *detail, int retry_after_s)
{
    char ra[16];
    snprintf(ra, sizeof(ra), "%d", retry_after_s);
    bp_http_add_header(req, "retry-after", ra);
    return bp_http_problem(req, status, bp_http_reason(status), detail, NULL);
}

static int reject(bp_api_thread_t *t, h2o_req_t *req, int status, const char *title, const char *detail)
{
    bp_producer_note_rejected(t->producer);
    return bp_http_problem(req, status, title, detail, NULL);
}

static void log_failure(const char *request_id, int status, const char *detail)
{
    json_t *fields = json_pack("{s:s, s:i}", "request_id", request_id, "status", status);
    bp_log_fields(BP_LOG_WARN, fields, "POST answered %d: %s", status, detail);
    json_decref(fields);
}

/* Nothing was queued: say so; only the size verdict is final. */
static int answer_not_sent(h2o_req_t *req, const char *request_id, bp_err_t e, const char *why,
                           size_t value_len)
{
    char detail[512];
    if (e == BP_ERR_INVALID) {
        snprintf(detail, sizeof(detail),
                 "%s (the batch is %zu bytes as published); split it into smaller batches", why,
                 value_len);
        return bp_http_problem(req, 413, bp_http_reason(413), detail, NULL);
    }
    snprintf(detail, sizeof(detail), "%s; nothing was stored; retry later", why);
    log_failure(request_id, 503, detail);
    return problem_retry(req, 503, detail, e == BP_ERR_FATAL ? 10 : 1);
}

/* The message was queued but got no ack: it may still have reached the broker. */
static int answer_failed(h2o_req_t *req, const write_pending_t *w, const bp_produce_result_t *res)
{
    char detail[512];
    if (res->kafka_err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
        snprintf(detail, sizeof(detail),
                 "the broker refused the batch as too large (%zu bytes as published); split it into "
                 "smaller batches",
                 w->value_len);
        return bp_http_problem(req, 413, bp_http_reason(413), detail, NULL);
    }
    if (bp_err_class(res->err) == BP_CLASS_PERMANENT) {
        snprintf(detail, sizeof(detail), "the broker refused the batch: %s", res->reason);
        return bp_http_problem(req, 400, bp_http_reason(400), detail, NULL);
    }
    if (res->kafka_err != RD_KAFKA_RESP_ERR_NO_ERROR && res->err != BP_ERR_FATAL)
        snprintf(detail, sizeof(detail), "the broker did not take the batch (%s)%s", res->reason,
                 maybe_stored);
    else
        snprintf(detail, sizeof(detail), "%s%s", res->reason, maybe_stored);
    log_failure(w->ack.request_id, 503, detail);
    return problem_retry(req, 503, detail, res->err == BP_ERR_FATAL ? 10 : 5);
}

/* The producer's verdict, on the loop thread. */
static void on_verdict(void *opaque, const bp_produce_result_t *res)
{
    write_pending_t *w = opaque;
    h2o_req_t *req = w->req;
    if (w->guard != NULL)
        w->guard->pending = NULL;
    if (w->counted)
        w->t->inflight--;
    if (res->err == BP_OK) /* stored in the topic, whether or not its client still waits */
        bp_counter_add(w->t->api->objects_accepted, w->ack.objects);
    if (req == NULL) {
        json_t *fields = json_pack("{s:s}", "request_id", w->request_id);
        bp_log_fields(BP_LOG_DEBUG, fields, "a POST went away before the broker's verdict (%s)", res->reason);
        json_decref(fields);
    } else if (res->err == BP_OK) {
        w->ack.partition = res->partition;
        w->ack.offset = res->offset;
        w->ack.timestamp = res->timestamp;
        if (bp_log_enabled(BP_LOG_DEBUG)) {
            json_t *fields = json_pack("{s:s, s:i, s:I}", "request_id", w->ack.request_id, "partition",
                                       (int)res->partition, "offset", (json_int_t)res->offset);
            bp_log_fields(BP_LOG_DEBUG, fields, "batch accepted (%zu objects)", w->ack.objects);
            json_decref(fields);
        }
        bp_write_acked(w->t, req, &w->ack);
    } else {
        answer_failed(req, w, res);
    }
    free(w);
}

static void on_guard_dispose(void *mem)
{
    write_guard_t *g = mem;
    write_pending_t *w = g->pending;
    if (w == NULL)
        return;
    w->req = NULL;
    w->guard = NULL;
    if (w->counted) {
        w->counted = 0;
        w->t->inflight--;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Request checks.
 */

static const char *skip_ows(const char *s, const char *end)
{
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    return s;
}

static const char *trim_end(const char *s, const char *end)
{
    while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    return end;
}

/* Whether a Content-Type value is application/json, with at most a charset parameter of utf-8 (any case,
 * quoted or not). Other parameters are ignored. */
static int is_json_media_type(h2o_iovec_t v)
{
    static const char mt[] = "application/json";
    const char *s = skip_ows(v.base, v.base + v.len), *end = v.base + v.len;
    if ((size_t)(end - s) < sizeof(mt) - 1 || strncasecmp(s, mt, sizeof(mt) - 1) != 0)
        return 0;
    s += sizeof(mt) - 1;
    for (;;) {
        s = skip_ows(s, end);
        if (s == end)
            return 1;
        if (*s != ';')
            return 0;
        s = skip_ows(s + 1, end);
        const char *semi = memchr(s, ';', (size_t)(end - s));
        const char *pend = semi != NULL ? semi : end;
        const char *eq = memchr(s, '=', (size_t)(pend - s));
        if (eq == NULL) {
            if (trim_end(s, pend) != s) /* "; foo" without a value */
                return 0;
            s = pend;
            continue;
        }
        const char *name_end = trim_end(s, eq);
        const char *val = skip_ows(eq + 1, pend), *val_end = trim_end(val, pend);
        if (val_end - val >= 2 && *val == '"' && val_end[-1] == '"')
            val++, val_end--;
        if (name_end - s == 7 && strncasecmp(s, "charset", 7) == 0) {
            size_t n = (size_t)(val_end - val);
            int utf8 = (n == 5 && strncasecmp(val, "utf-8", 5) == 0) ||
                       (n == 4 && strncasecmp(val, "utf8", 4) == 0);
            if (!utf8)
                return 0;
        }
        s = pend;
    }
}

/* Check the Content-Type; on failure write the detail. */
static int content_type_ok(h2o_req_t *req, char *detail, size_t n)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i < 0) {
        snprintf(detail, n, "send the body as Content-Type: application/json (no Content-Type was given)");
        return 0;
    }
    h2o_iovec_t v = req->headers.entries[i].value;
    if (is_json_media_type(v))
        return 1;
    char shown[100];
    size_t k = 0;
    /* printable ASCII only: the detail must be valid JSON text */
    for (size_t j = 0; j < v.len && k + 1 < sizeof(shown); j++)
        shown[k++] = v.base[j] >= 0x20 && v.base[j] < 0x7f ? v.base[j] : '?';
    shown[k] = '\0';
    snprintf(detail, n,
             "send the body as Content-Type: application/json (charset utf-8 if any), not \"%s%s\"", shown,
             v.len >= sizeof(shown) ? "..." : "");
    return 0;
}

/* ?wait=<seconds>: 0 when absent. Returns 0, or -1 with a detail. */
static int parse_wait(h2o_req_t *req, long long max, long long *out, char *detail, size_t n)
{
    char *s;
    size_t len;
    int r = bp_http_query_param(req, "wait", &s, &len);
    *out = 0;
    if (r == 0)
        return 0;
    int ok = r > 0 && len > 0 && len <= 6;
    for (size_t i = 0; ok && i < len; i++)
        ok = isdigit((unsigned char)s[i]);
    if (ok) {
        long long v = strtoll(s, NULL, 10);
        if (v <= max) {
            *out = v;
            return 0;
        }
    }
    snprintf(detail, n, "wait must be a whole number of seconds from 0 to %lld", max);
    return -1;
}

/* The request's W3C traceparent as a NUL-terminated pool copy, or NULL when absent or malformed: a bad
 * one is ignored (logged at debug), never a reason to refuse the data. */
static const char *traceparent_of(h2o_req_t *req, const char *request_id)
{
    static const char name[] = "traceparent";
    ssize_t i = h2o_find_header_by_str(&req->headers, name, sizeof(name) - 1, -1);
    if (i < 0)
        return NULL;
    h2o_iovec_t v = req->headers.entries[i].value;
    if (v.len > 128 || !bp_traceparent_valid(v.base, v.len)) {
        if (bp_log_enabled(BP_LOG_DEBUG)) {
            json_t *fields = json_pack("{s:s}", "request_id", request_id);
            bp_log_fields(BP_LOG_DEBUG, fields, "ignoring a traceparent header that is not W3C Trace Context");
            json_decref(fields);
        }
        return NULL;
    }
    return h2o_strdup(&req->pool, v.base, v.len).base;
}

/* A pool copy of a JSON string. */
static const char *pool_copy(h2o_req_t *req, const json_t *s, size_t *len)
{
    *len = json_string_length(s);
    char *copy = h2o_mem_alloc_pool(&req->pool, *len + 1);
    memcpy(copy, json_string_value(s), *len);
    copy[*len] = '\0';
    return copy;
}

/* A pool copy of a JSON string member (validated: present and a string). */
static const char *pool_string(h2o_req_t *req, const json_t *doc, const char *name, size_t *len)
{
    const json_t *s = json_object_get(doc, name);
    *len = json_string_length(s);
    char *copy = h2o_mem_alloc_pool(&req->pool, *len + 1);
    memcpy(copy, json_string_value(s), *len);
    copy[*len] = '\0';
    return copy;
}

/* ---------------------------------------------------------------------------------------------
 * The handlers.
 */

/* Size, media type, query and emptiness. Returns 0, or answers and returns -1. */
static int check_request(bp_api_thread_t *t, h2o_req_t *req, post_kind_t kind, long long *wait_s)
{
    const bp_config_t *cfg = t->api->cfg;
    char detail[512];
    int status = 0;
    /* h2o refuses a declared Content-Length over the limit itself; this catches the rest */
    if (req->entity.len > (size_t)cfg->max_body_bytes) {
        snprintf(detail, sizeof(detail),
                 "the body is larger than %lld bytes (BP_MAX_BODY_BYTES); split the batch",
                 cfg->max_body_bytes);
        status = 413;
    } else if (!content_type_ok(req, detail, sizeof(detail))) {
        bp_http_add_header(req, "accept-post", "application/json");
        status = 415;
    } else if (parse_wait(req, cfg->wait_max_s, wait_s, detail, sizeof(detail)) != 0) {
        status = 400;
    } else if (req->entity.len == 0) {
        snprintf(detail, sizeof(detail), "the body is empty: send %s as JSON",
                 kind == POST_BATCH ? "a batch {\"batch_id\", \"objects\"}"
                                    : "an object {\"batch_id\", \"object_id\", \"data\"}");
        status = 400;
    }
    if (status == 0)
        return 0;
    reject(t, req, status, bp_http_reason(status), detail);
    return -1;
}

/* Parse and validate the body. Returns the document (free with json_decref), or answers 400 listing
 * every violation and returns NULL. */
static json_t *read_document(bp_api_thread_t *t, h2o_req_t *req, post_kind_t kind)
{
    const bp_config_t *cfg = t->api->cfg;
    bp_violations_t *v = h2o_mem_alloc_pool(&req->pool, sizeof(*v)); /* ~50 KB: not on the stack */
    json_t *doc = bp_payload_parse(req->entity.base, req->entity.len, v);
    if (doc == NULL) {
        bp_producer_note_rejected(t->producer);
        bp_http_problem_violations(req, 400, "Invalid JSON", v);
        return NULL;
    }
    bp_payload_limits_t lim = {cfg->max_objects, cfg->max_pairs, cfg->max_id_len, cfg->max_key_len,
                               cfg->max_string_len};
    int invalid = kind == POST_BATCH ? bp_payload_validate_batch(doc, &lim, v)
                                     : bp_payload_validate_object(doc, &lim, v);
    /* valid, but would PostgreSQL take its numbers as written? (the worker would dead-letter it) */
    if (invalid || bp_payload_check_numbers(req->entity.base, req->entity.len, v) != 0) {
        json_decref(doc);
        bp_producer_note_rejected(t->producer);
        bp_http_problem_violations(req, 400, "Validation failed", v);
        return NULL;
    }
    return doc;
}

/* What parsing a body into a tree costs, in multiples of its size (measured: a batch of 45,000 small
 * objects makes a tree of about 8 times its text); the lean path of a valid batch costs at most half
 * its size. */
#define BP_PARSE_COST_FACTOR 8
/* Bodies from this size on give their tree's memory back to the system once freed. */
#define BP_TRIM_AFTER_BYTES (1024 * 1024)

/* The tree of a body is freed: release its cost, and after a large one return the freed heap pages
 * (glibc keeps them otherwise; malloc_trim walks the arenas, which is cheap next to parsing MiBs). */
static void parse_done(bp_budget_t *budget, size_t parse_cost, size_t body_len)
{
    bp_budget_release(budget, parse_cost);
    if (body_len >= BP_TRIM_AFTER_BYTES)
        malloc_trim(0);
}

static int post(bp_api_thread_t *t, h2o_req_t *req, post_kind_t kind)
{
    const char *request_id = bp_http_request_id(req);
    long long wait_s = 0;
    bp_http_add_header(req, "x-request-id", request_id);
    if (check_request(t, req, kind, &wait_s) != 0)
        return 0;
    /* Parsing costs several times the body (the jansson tree): count it against the body budget while
     * it lasts, and refuse while the budget is spent rather than add to it. */
    bp_budget_t *budget = t->api->budget;
    if (bp_budget_spent_besides(budget, req->entity.len)) {
        const char *detail = "the server holds as many request bodies as it may at once "
                             "(BP_BODY_BUDGET_BYTES); nothing was stored; retry later";
        log_failure(request_id, 503, detail);
        return problem_retry(req, 503, detail, 1);
    }
    const bp_config_t *cfg = t->api->cfg;
    bp_payload_limits_t lim = {cfg->max_objects, cfg->max_pairs, cfg->max_id_len, cfg->max_key_len,
                               cfg->max_string_len};
    json_t *lean_id = NULL, *doc = NULL;
    size_t lean_objects = 0;
    size_t parse_cost = req->entity.len / 2;
    bp_budget_charge(budget, parse_cost);
    /* a valid batch is checked without its whole tree; anything else takes the full path, which
     * decides and words the messages */
    bp_violations_t *v = NULL;
    if (kind == POST_BATCH &&
        bp_payload_batch_lean(req->entity.base, req->entity.len, &lim, &lean_id, &lean_objects) == 1) {
        v = h2o_mem_alloc_pool(&req->pool, sizeof(*v));
        if (bp_payload_check_numbers(req->entity.base, req->entity.len, v) != 0) {
            json_decref(lean_id);
            parse_done(budget, parse_cost, req->entity.len);
            bp_producer_note_rejected(t->producer);
            return bp_http_problem_violations(req, 400, "Validation failed", v);
        }
    } else {
        bp_budget_charge(budget, BP_PARSE_COST_FACTOR * req->entity.len);
        parse_cost += BP_PARSE_COST_FACTOR * req->entity.len;
        if ((doc = read_document(t, req, kind)) == NULL) {
            parse_done(budget, parse_cost, req->entity.len);
            return 0;
        }
    }

    write_pending_t *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        json_decref(doc);
        json_decref(lean_id);
        parse_done(budget, parse_cost, req->entity.len);
        return problem_retry(req, 503, "out of memory; nothing was stored; retry later", 1);
    }
    w->t = t;
    w->req = req;
    snprintf(w->request_id, sizeof(w->request_id), "%s", request_id);
    if (lean_id != NULL) {
        w->ack.batch_id = pool_copy(req, lean_id, &w->ack.batch_id_len);
        w->ack.objects = lean_objects;
        json_decref(lean_id);
    } else {
        w->ack.batch_id = pool_string(req, doc, "batch_id", &w->ack.batch_id_len);
        if (kind == POST_OBJECT)
            w->ack.object_id = pool_string(req, doc, "object_id", &w->ack.object_id_len);
        w->ack.objects = kind == POST_BATCH ? bp_payload_object_count(doc) : 1;
    }
    w->ack.request_id = request_id;
    w->ack.wait_s = wait_s;
    w->ack.partition = -1;
    w->ack.offset = -1;
    w->ack.timestamp = -1;
    json_decref(doc); /* before the copy below: the tree is the largest thing a POST holds */
    parse_done(budget, parse_cost, req->entity.len);

    /* What goes to the topic is the producer's own text, never a re-serialization of the tree: jansson
     * would respell numbers (19.99 as 19.989999999999998, an integer beyond int64 as a rounded real).
     * A batch is the body as sent; an object is wrapped into a batch around its members' bytes. The
     * worker parses and validates the message again; jsonb keeps every number's decimal value. The
     * copy outlives the request (librdkafka frees it), which may go away before the verdict. */
    char *value = NULL;
    if (kind == POST_BATCH) {
        value = malloc(req->entity.len);
        if (value != NULL) {
            memcpy(value, req->entity.base, req->entity.len);
            w->value_len = req->entity.len;
        }
    } else {
        value = bp_payload_object_to_batch(req->entity.base, req->entity.len, &w->value_len);
    }
    if (value == NULL) {
        free(w);
        return problem_retry(req, 503, "out of memory; nothing was stored; retry later", 1);
    }

    char why[256];
    bp_err_t e = bp_producer_send(t->producer, w->ack.batch_id, w->ack.batch_id_len, value, w->value_len,
                                  request_id, traceparent_of(req, request_id), on_verdict, w, why, sizeof(why));
    if (e != BP_OK) {
        size_t value_len = w->value_len;
        free(w);
        return answer_not_sent(req, request_id, e, why, value_len);
    }
    w->guard = h2o_mem_alloc_shared(&req->pool, sizeof(*w->guard), on_guard_dispose);
    w->guard->pending = w;
    w->counted = 1;
    t->inflight++;
    if (bp_log_enabled(BP_LOG_DEBUG)) {
        json_t *fields = json_pack("{s:s}", "request_id", request_id);
        bp_log_fields(BP_LOG_DEBUG, fields, "batch queued for the broker (%zu objects, %zu bytes)",
                      w->ack.objects, w->value_len);
        json_decref(fields);
    }
    return 0;
}

static int post_batch(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    return post(t, req, POST_BATCH);
}

static int post_object(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    return post(t, req, POST_OBJECT);
}

const bp_route_t bp_write_routes[] = {
    {"POST", "/api/v1/batches/", post_batch},
    {"POST", "/api/v1/objects/", post_object},
    {NULL, NULL, NULL},
};
