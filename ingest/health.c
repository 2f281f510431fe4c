/* health.c - GET /healthz, /readyz and /metrics of the ingest worker on an h2o event loop of its own
 * thread. Handlers only read atomics and the stats' small table: nothing here waits for the consumer
 * thread, the broker or PostgreSQL. Every answer closes its connection, so that a stop has nothing to
 * wait for but answers being written. */
#include "health.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <h2o.h>
#include <jansson.h>

#include "bp_clock.h"
#include "bp_log.h"

#define MAX_CONNECTIONS 64     /* probes and scrapers; beyond this a client misbehaves: close at once */
#define REQ_TIMEOUT_MS 5000    /* a connection that does not finish its request by then is closed */
#define MAX_REQUEST_BYTES 4096 /* no route takes a body */
#define LOOP_SLICE_MS 100      /* how soon the thread notices bp_health_stop */
#define DRAIN_MS 1000          /* at stop, how long answers being written may take */

struct bp_health {
    const bp_config_t *cfg;
    bp_metrics_t *metrics;
    bp_ingest_stats_t *stats;
    h2o_globalconf_t globalconf;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_evloop_t *loop;
    h2o_socket_t *listener;
    size_t connections; /* loop thread only */
    int drained;        /* set by the thread before it returns: no connection left */
    pthread_t tid;
    atomic_int stop;
};

typedef struct handler {
    h2o_handler_t super;
    bp_health_t *h;
} handler_t;

/* ---------------------------------------------------------------------------------------------
 * Answers.
 */

static int send_text(h2o_req_t *req, int status, const char *reason, const char *ctype, const char *body,
                     size_t len)
{
    req->res.status = status;
    req->res.reason = reason; /* static strings only: h2o does not copy it */
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_send_inline(req, body, len); /* copies */
    return 0;
}

/* body is stolen. */
static int send_json(h2o_req_t *req, int status, const char *reason, const char *ctype, json_t *body)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL) {
        static const char oom[] =
            "{\"title\":\"Service Unavailable\",\"status\":503,\"detail\":\"out of memory\"}";
        return send_text(req, 503, "Service Unavailable", "application/problem+json", oom, sizeof(oom) - 1);
    }
    send_text(req, status, reason, ctype, text, strlen(text));
    free(text);
    return 0;
}

/* RFC 9457 problem+json; extra (may be NULL) is stolen and merged. */
static int send_problem(h2o_req_t *req, int status, const char *reason, const char *detail, json_t *extra)
{
    json_t *body = json_pack("{s:s, s:s, s:i, s:s}", "type", "about:blank", "title", reason, "status", status,
                             "detail", detail);
    if (body != NULL && extra != NULL)
        json_object_update(body, extra);
    json_decref(extra);
    return send_json(req, status, reason, "application/problem+json", body);
}

static int get_healthz(bp_health_t *h, h2o_req_t *req)
{
    (void)h;
    return send_json(req, 200, "OK", "application/json", json_pack("{s:s}", "status", "ok"));
}

/* Add check name to checks, and "name: detail" to why when it is down. */
static void add_check(json_t *checks, char *why, size_t whylen, const char *name, int up, const char *detail)
{
    json_t *c = json_pack("{s:s}", "status", up ? "up" : "down");
    if (!up) {
        json_object_set_new(c, "detail", json_string(detail));
        size_t used = strlen(why);
        snprintf(why + used, whylen - used, "%s%s: %s", used ? "; " : "", name, detail);
    }
    json_object_set_new(checks, name, c);
}

/* Ready: partitions assigned, PostgreSQL answered last time, no transaction waiting for a retry, not
 * stopping. 503 problem+json otherwise, naming each check that is down. */
static int get_readyz(bp_health_t *h, h2o_req_t *req)
{
    bp_ingest_readiness_t r;
    bp_ingest_stats_readiness(h->stats, &r);
    char why[512] = "";
    json_t *checks = json_object();

    add_check(checks, why, sizeof(why), "partitions", r.assigned > 0, "none assigned");
    json_object_set_new(json_object_get(checks, "partitions"), "assigned", json_integer(r.assigned));

    const char *pg = r.pg == 1                   ? NULL
                     : r.pg < 0                  ? "not contacted yet"
                     : r.pg_err == BP_ERR_PG_DOWN ? "unreachable"
                                                  : bp_err_str(r.pg_err);
    add_check(checks, why, sizeof(why), "postgresql", pg == NULL, pg);

    char retry[160];
    snprintf(retry, sizeof(retry), "a transaction failed (%s) and waits for its retry",
             bp_err_str(r.retry_err));
    add_check(checks, why, sizeof(why), "transactions", !r.retrying, retry);

    if (r.stopping || r.fatal) /* only shown when down, like the API's "server" check */
        add_check(checks, why, sizeof(why), "worker", 0,
                  r.fatal ? "a fatal error: the process is exiting" : "shutting down");

    if (bp_ingest_stats_ready(&r))
        return send_json(req, 200, "OK", "application/json",
                         json_pack("{s:s, s:o}", "status", "ready", "checks", checks));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
    char detail[600];
    snprintf(detail, sizeof(detail), "not ready: %s", why);
    return send_problem(req, 503, "Service Unavailable", detail, json_pack("{s:o}", "checks", checks));
}

/* The registry (counters, histograms, gauges) followed by the per-partition lag gauges. */
static int get_metrics(bp_health_t *h, h2o_req_t *req)
{
    char *registry = bp_metrics_render(h->metrics);
    char *text = NULL;
    size_t len = 0;
    FILE *f = registry != NULL ? open_memstream(&text, &len) : NULL;
    if (f != NULL) {
        fputs(registry, f);
        bp_ingest_stats_render_lag(h->stats, f);
        if (fclose(f) != 0) {
            free(text);
            text = NULL;
        }
    }
    free(registry);
    if (text == NULL)
        return send_problem(req, 503, "Service Unavailable", "out of memory rendering metrics", NULL);
    send_text(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
    return 0;
}

static const struct {
    const char *path;
    int (*fn)(bp_health_t *h, h2o_req_t *req);
} routes[] = {
    {"/healthz", get_healthz},
    {"/readyz", get_readyz},
    {"/metrics", get_metrics},
};

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    bp_health_t *h = ((handler_t *)self)->h;
    req->http1_is_persistent = 0; /* one answer per connection: a stop never waits for idle ones */
    size_t pathlen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    int get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
              h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (!h2o_memis(req->path.base, pathlen, routes[i].path, strlen(routes[i].path)))
            continue;
        if (!get) {
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, HEAD"));
            return send_problem(req, 405, "Method Not Allowed", "only GET and HEAD are allowed here", NULL);
        }
        return routes[i].fn(h, req);
    }
    return send_problem(req, 404, "Not Found", "the worker serves /healthz, /readyz and /metrics only", NULL);
}

/* ---------------------------------------------------------------------------------------------
 * The loop.
 */

static void on_connection_close(void *data)
{
    ((bp_health_t *)data)->connections--;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    bp_health_t *h = listener->data;
    if (err != NULL)
        return;
    for (int i = 0; i < 16; i++) { /* bounded: let other events run */
        h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
        if (sock == NULL)
            return;
        if (h->connections >= MAX_CONNECTIONS) {
            h2o_socket_close(sock);
            continue;
        }
        h->connections++;
        sock->on_close.cb = on_connection_close;
        sock->on_close.data = h;
        h2o_accept(&h->accept_ctx, sock);
    }
}

static void *serve(void *arg)
{
    bp_health_t *h = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* SIGTERM and SIGINT are the main thread's business */

    while (!atomic_load(&h->stop))
        h2o_evloop_run(h->loop, LOOP_SLICE_MS);

    h2o_socket_read_stop(h->listener);
    h2o_socket_close(h->listener);
    h->listener = NULL;
    long long deadline = bp_clock_ms() + DRAIN_MS;
    do /* at least one turn: closed sockets are freed by the loop */
        h2o_evloop_run(h->loop, 10);
    while (h->connections > 0 && bp_clock_ms() < deadline);
    h->drained = h->connections == 0;
    return NULL;
}

/* A listening socket on 0.0.0.0:port, or -1 with err. */
static int open_listener(int port, char *err, size_t errlen)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_ANY)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int on = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 64) != 0) {
        snprintf(err, errlen, "cannot listen on 0.0.0.0:%d (BP_HEALTH_PORT): %s", port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* The context, the loop and the configuration, once no socket but closed ones is left in the loop. */
static void dispose_loop(bp_health_t *h)
{
    h2o_multithread_queue_t *queue = h->ctx.queue;
    h2o_context_dispose(&h->ctx);
#if H2O_LIBRARY_VERSION_MAJOR == 0 && H2O_LIBRARY_VERSION_MINOR <= 13
    /* h2o 2.2.5's h2o_multithread_destroy_queue closes the queue's socket but, in evloop builds, never
     * frees the queue itself (later versions do) */
    free(queue);
#else
    (void)queue;
#endif
    h2o_evloop_destroy(h->loop);
    h2o_config_dispose(&h->globalconf);
}

bp_health_t *bp_health_start(const bp_config_t *cfg, bp_metrics_t *metrics, bp_ingest_stats_t *stats,
                             char *err, size_t errlen)
{
    int fd = open_listener((int)cfg->health_port, err, errlen);
    if (fd < 0)
        return NULL;
    bp_health_t *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->cfg = cfg;
    h->metrics = metrics;
    h->stats = stats;
    atomic_init(&h->stop, 0);

    h2o_config_init(&h->globalconf);
    h->globalconf.max_request_entity_size = MAX_REQUEST_BYTES;
    h->globalconf.http1.req_timeout = REQ_TIMEOUT_MS;
    h->globalconf.server_name = h2o_iovec_init(H2O_STRLIT("batchpipe-ingest"));
    /* the host must be registered before h2o_context_init (it asserts otherwise) */
    h2o_hostconf_t *hostconf =
        h2o_config_register_host(&h->globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(hostconf, "/", 0);
    handler_t *handler = (handler_t *)h2o_create_handler(pathconf, sizeof(*handler));
    handler->super.on_req = on_req;
    handler->h = h;

    /* everything is set up here and only used by the new thread afterwards (pthread_create orders it) */
    h->loop = h2o_evloop_create();
    h2o_context_init(&h->ctx, h->loop, &h->globalconf);
    h->accept_ctx.ctx = &h->ctx;
    h->accept_ctx.hosts = h->globalconf.hosts;
    h->listener = h2o_evloop_socket_create(h->loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    h->listener->data = h;
    h2o_socket_read_start(h->listener, on_accept);

    int rc = pthread_create(&h->tid, NULL, serve, h);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the health thread: %s", strerror(rc));
        h2o_socket_read_stop(h->listener);
        h2o_socket_close(h->listener);
        h2o_evloop_run(h->loop, 0);
        dispose_loop(h);
        free(h);
        return NULL;
    }
    bp_log_info("health port listening on 0.0.0.0:%lld (/healthz, /readyz, /metrics)", cfg->health_port);
    return h;
}

void bp_health_stop(bp_health_t *h)
{
    if (h == NULL)
        return;
    atomic_store(&h->stop, 1);
    pthread_join(h->tid, NULL);
    if (!h->drained) {
        /* a client is still being answered: its socket belongs to the loop, which cannot be destroyed
         * under it; the process is about to exit */
        bp_log_warn("health port: a connection was still open at shutdown");
        return;
    }
    dispose_loop(h);
    free(h);
}
