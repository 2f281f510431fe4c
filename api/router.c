/* router.c - dispatches every request through the route tables; answers 404 and 405 (with Allow)
 * itself so that they share the API's problem+json format. HEAD is served as GET by h2o. */
#include "router.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <sys/socket.h>
#include <netdb.h>

#include "auth.h"
#include "http.h"
#include "keybudget.h"
#include "ratelimit.h"

static const bp_route_t *const tables[] = {bp_index_routes, bp_write_routes, bp_read_routes, bp_stats_routes,
                                           bp_console_routes, NULL};

const bp_route_t *const *bp_router_tables(void)
{
    return tables;
}

typedef struct router_handler {
    h2o_handler_t super;
} router_handler_t;

/* The request metrics' series, looked up in the registry once each (on first use) and then read
 * without a lock. Every label comes from a fixed set: the route's pattern (never the raw path), the
 * method mapped by bp_metrics_method_index, and the status among those listed here (any other
 * status, which only the server chooses, is looked up in the registry each time). */
static const int known_statuses[] = {200, 201, 202, 204, 206, 301, 302, 304, 400, 401, 403, 404, 405, 408, 409,
                                     411, 413, 414, 415, 416, 417, 421, 422, 429, 431, 500, 501, 502, 503, 504};
#define N_STATUSES (sizeof(known_statuses) / sizeof(known_statuses[0]))

typedef struct metrics_logger {
    h2o_logger_t super;
    bp_metrics_t *metrics;
    size_t nroutes;                      /* routes of every table; index nroutes is "unmatched" */
    _Atomic(bp_metric_t *) *requests;    /* [(route * N_METHODS + method) * N_STATUSES + status] */
    _Atomic(bp_metric_t *) *durations;   /* [route] */
    bp_metric_t *body_bytes;
} metrics_logger_t;

/* The index of the route a request's path matches (in the order of the tables), or nroutes. */
static size_t route_index(h2o_req_t *req, const char **pattern)
{
    const char *path = req->path.base;
    size_t pathlen = req->query_at != SIZE_MAX ? req->query_at : req->path.len, i = 0;
    for (const bp_route_t *const *tab = tables; *tab != NULL; tab++) {
        for (const bp_route_t *r = *tab; r->method != NULL; r++, i++) {
            const char *seg;
            size_t seglen;
            if (bp_http_path_match(r->pattern, path, pathlen, &seg, &seglen)) {
                *pattern = r->pattern;
                return i;
            }
        }
    }
    *pattern = "unmatched";
    return i;
}

static size_t count_routes(void)
{
    size_t n = 0;
    for (const bp_route_t *const *tab = tables; *tab != NULL; tab++)
        for (const bp_route_t *r = *tab; r->method != NULL; r++)
            n++;
    return n;
}

static double seconds_between(const struct timeval *a, const struct timeval *b)
{
    return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_usec - a->tv_usec) / 1e6;
}

static size_t status_index(int status)
{
    for (size_t i = 0; i < N_STATUSES; i++)
        if (known_statuses[i] == status)
            return i;
    return N_STATUSES;
}

/* The cached series in *slot, found or created in the registry on first use. Two threads racing
 * store the same pointer: the registry returns one series per name and labels. */
static bp_metric_t *cached(_Atomic(bp_metric_t *) *slot, bp_metric_t *(*lookup)(void *), void *arg)
{
    bp_metric_t *x = slot != NULL ? atomic_load_explicit(slot, memory_order_acquire) : NULL;
    if (x == NULL) {
        x = lookup(arg);
        if (x != NULL && slot != NULL)
            atomic_store_explicit(slot, x, memory_order_release);
    }
    return x;
}

typedef struct series_key {
    bp_metrics_t *metrics;
    const char *route, *method;
    int status;
} series_key_t;

static bp_metric_t *lookup_requests(void *arg)
{
    const series_key_t *k = arg;
    char labels[256];
    snprintf(labels, sizeof(labels), "route=\"%s\",method=\"%s\",status=\"%d\"", k->route, k->method, k->status);
    return bp_metrics_counter(k->metrics, "bp_http_requests_total",
                              "HTTP requests answered, by route, method and status.", labels);
}

static bp_metric_t *lookup_duration(void *arg)
{
    const series_key_t *k = arg;
    char labels[160];
    snprintf(labels, sizeof(labels), "route=\"%s\"", k->route);
    return bp_metrics_histogram(k->metrics, "bp_http_request_duration_seconds",
                                "Time from the request's start to the end of its response.", labels,
                                bp_metrics_latency_buckets, bp_metrics_latency_nbuckets);
}

/* Called by h2o when a request is done (answered, or its connection gone). */
static void log_access(h2o_logger_t *self, h2o_req_t *req)
{
    metrics_logger_t *ml = (metrics_logger_t *)self;
    series_key_t k = {.metrics = ml->metrics, .status = req->res.status};
    size_t route = route_index(req, &k.route);
    int method = bp_metrics_method_index(req->method.base, req->method.len);
    k.method = bp_metrics_method_labels[method];
    size_t status = status_index(req->res.status);
    _Atomic(bp_metric_t *) *slot = NULL;
    if (ml->requests != NULL && status < N_STATUSES)
        slot = &ml->requests[(route * BP_METRICS_N_METHODS + (size_t)method) * N_STATUSES + status];
    bp_counter_add(cached(slot, lookup_requests, &k), 1);
    if (!h2o_timeval_is_null(&req->timestamps.response_end_at))
        bp_histogram_observe(cached(ml->durations != NULL ? &ml->durations[route] : NULL, lookup_duration, &k),
                             seconds_between(&req->timestamps.request_begin_at, &req->timestamps.response_end_at));
    bp_counter_add(ml->body_bytes, req->entity.len);
}

/* Routes every client may call without a key and without counting against the keys' rate limit:
 * probes, the scraper, and the console's static files (they hold no data; the page's own calls to
 * the API carry the user's key). They have a rate limit of their own, per client address. */
static int is_public(const char *pattern)
{
    return strcmp(pattern, "/healthz") == 0 || strcmp(pattern, "/readyz") == 0 || strcmp(pattern, "/metrics") == 0 ||
           strncmp(pattern, "/console/", 9) == 0;
}

static int scope_of(const char *method)
{
    if (strcmp(method, "POST") == 0)
        return BP_SCOPE_WRITE;
    if (strcmp(method, "DELETE") == 0)
        return BP_SCOPE_DELETE;
    return BP_SCOPE_READ;
}

static const char *scope_name(int scope)
{
    return scope == BP_SCOPE_WRITE ? "write" : scope == BP_SCOPE_DELETE ? "delete" : "read";
}

static void peer_address(h2o_req_t *req, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sslen = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    if (sslen == 0 || getnameinfo((struct sockaddr *)&ss, sslen, buf, (socklen_t)len, NULL, 0, NI_NUMERICHOST) != 0)
        snprintf(buf, len, "unknown");
}

/* 429 with Retry-After when the client spent its tokens; returns 1 when the request was answered. */
static int too_many(h2o_req_t *req, int wait)
{
    char retry[16];
    snprintf(retry, sizeof(retry), "%d", wait);
    bp_http_add_header(req, "retry-after", retry);
    bp_http_problem(req, 429, "Too Many Requests", "rate limit reached; retry after the given seconds", NULL);
    return 1;
}

/* The public routes' own rate limit (BP_PUBLIC_RATE_LIMIT), by client address. Returns 1 when the
 * request was answered (429). */
/* The client a request counts for: its peer address, or the address a trusted proxy forwarded. */
static void client_address(bp_api_thread_t *t, h2o_req_t *req, char *client, size_t n)
{
    char peer[64];
    peer_address(req, peer, sizeof(peer));
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-forwarded-for"), -1);
    h2o_iovec_t xff = i >= 0 ? req->headers.entries[i].value : h2o_iovec_init(NULL, 0);
    bp_ratelimit_client_address(peer, xff.base, xff.len, t->api->cfg->trusted_proxies, client, n);
}

static int public_limited(bp_api_thread_t *t, h2o_req_t *req)
{
    if (t->api->public_ratelimit == NULL)
        return 0;
    char client[80];
    client_address(t, req, client, sizeof(client));
    int wait = bp_ratelimit_take(t->api->public_ratelimit, client, (double)h2o_now(t->loop));
    return wait > 0 ? too_many(req, wait) : 0;
}

/* A request's body counted for its client until the request is gone (its pool holds the body). */
typedef struct client_body {
    bp_keybudget_t *keybudget;
    size_t len;
    char client[80];
} client_body_t;

static void on_client_body_dispose(void *p)
{
    client_body_t *cb = p;
    bp_keybudget_give(cb->keybudget, cb->client, cb->len);
}

/* Count the body for its client (BP_CLIENT_BODY_BUDGET_BYTES). h2o 2.2.5 has read the whole body by
 * now: this does not bound the reading (the process-wide budget does), it keeps one client from
 * holding the bodies, their parsing and the producer's queue for everyone: its requests past the
 * limit are refused while its earlier ones are in progress (?wait=, the broker's ack). Returns 1 when
 * the request was answered (429). */
static int client_body_held(bp_keybudget_t *kb, h2o_req_t *req, const char *client)
{
    if (bp_keybudget_take(kb, client, req->entity.len) != 0) {
        char detail[256];
        snprintf(detail, sizeof(detail),
                 "this client has requests of %zu bytes in progress, and this one would pass the %zu bytes one "
                 "client may have (BP_CLIENT_BODY_BUDGET_BYTES); retry when one of them is answered",
                 bp_keybudget_held(kb, client), bp_keybudget_limit(kb));
        bp_http_add_header(req, "retry-after", "1");
        bp_http_problem(req, 429, "Too Many Requests", detail, NULL);
        return 1;
    }
    client_body_t *cb = h2o_mem_alloc_shared(&req->pool, sizeof(*cb), on_client_body_dispose);
    cb->keybudget = kb;
    cb->len = req->entity.len;
    snprintf(cb->client, sizeof(cb->client), "%s", client);
    return 0;
}

/* Authentication and rate limiting before a route runs. Returns 1 when the request was answered. */
static int guard(bp_api_thread_t *t, h2o_req_t *req, const bp_route_t *r)
{
    bp_api_t *api = t->api;
    if (is_public(r->pattern))
        return public_limited(t, req);
    const char *who = NULL, *key_id = NULL;
    if (api->auth == NULL && !bp_http_request_host_allowed(req)) {
        /* without keys, a Host that does not name this server is a DNS-rebinding page in someone's
         * browser (or a misconfigured proxy): it must not read, post or delete on the user's behalf */
        bp_http_problem(req, 400, "Bad Request",
                        "the Host header does not name this server: without API keys only loopback names, "
                        "BP_HTTP_HOST, BP_ALLOWED_HOSTS and BP_PUBLIC_URL's host are served",
                        NULL);
        return 1;
    }
    if (api->auth != NULL) {
        int scope = scope_of(r->method);
        int rc = bp_auth_check(api->auth, req, scope, &who, &key_id);
        if (rc == 401) {
            bp_http_add_header(req, "www-authenticate", "Bearer");
            bp_http_problem(req, 401, "Unauthorized",
                            "an API key is required: send \"Authorization: Bearer <key>\" or \"X-API-Key: <key>\"",
                            NULL);
            return 1;
        }
        if (rc == 403) {
            char detail[128];
            snprintf(detail, sizeof(detail), "this API key lacks the \"%s\" scope", scope_name(scope));
            bp_http_problem(req, 403, "Forbidden", detail, NULL);
            return 1;
        }
    }
    if (api->ratelimit == NULL && (api->keybudget == NULL || req->entity.len == 0))
        return 0;
    char client[80];
    if (key_id != NULL) {
        snprintf(client, sizeof(client), "%s", key_id); /* a bucket per key, whatever its name */
    } else {
        client_address(t, req, client, sizeof(client));
    }
    if (api->ratelimit != NULL) {
        int wait = bp_ratelimit_take(api->ratelimit, client, (double)h2o_now(t->loop));
        if (wait > 0)
            return too_many(req, wait);
    }
    return api->keybudget != NULL && req->entity.len > 0 ? client_body_held(api->keybudget, req, client) : 0;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    bp_api_thread_t *t = bp_thread_of(req);
    /* the raw path, not path_normalized: normalization percent-decodes, and an id may hold "%2F" */
    const char *path = req->path.base;
    size_t pathlen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    h2o_iovec_t method = req->method;
    int is_head = h2o_memis(method.base, method.len, H2O_STRLIT("HEAD"));
    char allow[64] = "";
    int path_known = 0;

    for (const bp_route_t *const *tab = tables; *tab != NULL; tab++) {
        for (const bp_route_t *r = *tab; r->method != NULL; r++) {
            const char *seg;
            size_t seglen;
            if (!bp_http_path_match(r->pattern, path, pathlen, &seg, &seglen))
                continue;
            path_known = 1;
            int same = h2o_memis(method.base, method.len, r->method, strlen(r->method)) ||
                       (is_head && strcmp(r->method, "GET") == 0);
            if (same) {
                if (guard(t, req, r))
                    return 0;
                char *id = NULL;
                if (seg != NULL) {
                    id = h2o_mem_alloc_pool(&req->pool, seglen + 1);
                    long n = bp_http_percent_decode(seg, seglen, id, 0);
                    if (n < 0)
                        return bp_http_problem(req, 400, "Bad Request", "the id in the path is not valid percent-encoding", NULL);
                    seglen = (size_t)n;
                }
                return r->fn(t, req, id, seglen);
            }
            if (strstr(allow, r->method) == NULL) {
                if (allow[0] != '\0')
                    strcat(allow, ", ");
                strcat(allow, r->method);
                if (strcmp(r->method, "GET") == 0)
                    strcat(allow, ", HEAD");
            }
        }
    }
    (void)self;
    if (path_known) {
        bp_http_add_header(req, "allow", allow);
        char detail[160];
        snprintf(detail, sizeof(detail), "%.*s is not allowed here; allowed: %s", (int)method.len, method.base,
                 allow);
        return bp_http_problem(req, 405, "Method Not Allowed", detail, NULL);
    }
    return bp_http_problem(req, 404, "Not Found", "no route matches this path; see GET /api/v1/", NULL);
}

static void logger_dispose(h2o_logger_t *self)
{
    metrics_logger_t *ml = (metrics_logger_t *)self;
    free((void *)ml->requests);
    free((void *)ml->durations);
}

void bp_router_register(h2o_hostconf_t *hostconf, bp_metrics_t *metrics)
{
    h2o_pathconf_t *pathconf = h2o_config_register_path(hostconf, "/", 0);
    router_handler_t *h = (router_handler_t *)h2o_create_handler(pathconf, sizeof(*h));
    h->super.on_req = on_req;
    metrics_logger_t *ml = (metrics_logger_t *)h2o_create_logger(pathconf, sizeof(*ml));
    ml->super.log_access = log_access;
    ml->super.dispose = logger_dispose;
    ml->metrics = metrics;
    ml->nroutes = count_routes();
    /* freed with the configuration (logger_dispose); without them (out of memory) every request looks
     * its series up in the registry, which still works */
    ml->requests = calloc((ml->nroutes + 1) * BP_METRICS_N_METHODS * N_STATUSES, sizeof(*ml->requests));
    ml->durations = calloc(ml->nroutes + 1, sizeof(*ml->durations));
    ml->body_bytes = bp_metrics_counter(metrics, "bp_http_request_body_bytes_total", "Request body bytes received.", NULL);
}
