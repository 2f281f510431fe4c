/* server.c - threads, listeners and the life cycle of the API process.
 * Each thread owns an event loop, an SO_REUSEPORT listener and its modules' state; the main thread
 * only waits for SIGINT/SIGTERM and then lets every loop drain. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bp_clock.h"
#include "bp_log.h"
#include "budget.h"
#include "router.h"

extern const bp_api_module_t bp_producer_module;
extern const bp_api_module_t bp_pgreq_module;
extern const bp_api_module_t bp_write_wait_module;
extern const bp_api_module_t bp_health_module;
extern const bp_api_module_t bp_after_module;

static const bp_api_module_t *const modules[] = {&bp_producer_module, &bp_pgreq_module, &bp_write_wait_module,
                                                 &bp_health_module, &bp_after_module};
#define N_MODULES (sizeof(modules) / sizeof(modules[0]))

typedef struct thread_start {
    bp_api_thread_t *t;
    int fd;
    pthread_mutex_t *mu;
    pthread_cond_t *cond;
    int *ready;  /* threads that finished starting */
    int *failed; /* threads that could not start */
    char *err;
    size_t errlen;
} thread_start_t;

#define BP_LINGER_MS 5000

/* ---------------------------------------------------------------------------------------------
 * Body accounting. h2o 2.2.5 reads a whole request body into the connection's input buffer before any
 * handler runs, and has no hook while it reads; but every read goes through the socket's read
 * callback, which is ours to wrap. After each read the connection's buffer is counted against the
 * process-wide budget (api/budget.h), and a connection holding a body part pauses its reading while
 * the budget is spent (the client's TCP window fills; h2o's request timeout, BP_BODY_TIMEOUT_MS, ends
 * it if it never resumes). h2o sets its own callback again for each request and at protocol changes
 * (TLS handshake, HTTP/2): such connections are listed and wrapped again after the loop's turn, before
 * it reads again.
 */

#define BP_PAUSE_MIN_BYTES (64 * 1024) /* below this a connection holds headers, not a body part */
/* The kernel's receive buffer of a connection, fixed instead of autotuned (up to 6 MiB): one read
 * takes what the kernel holds (Linux doubles the value set), so this bounds how far a read may go past
 * the budget, per connection: 256 KiB. Such a window still carries 2.6 MB/s at 100 ms of round trip. */
#define BP_RCVBUF_BYTES (128 * 1024)

typedef struct linger_conn linger_t;

/* One accepted connection; lives until its socket closes. */
typedef struct conn {
    bp_api_thread_t *t;
    h2o_socket_t *sock;
    h2o_socket_cb read_cb;   /* h2o's read callback, called by on_read_counted */
    size_t charged;          /* bytes of sock->input counted in the budget */
    h2o_linklist_t rearm;    /* in t->body_rearm */
    h2o_linklist_t paused;   /* in t->body_paused */
    linger_t *linger;        /* set once its close is to linger (bp_server_linger_on_close) */
    int in_read;             /* inside on_read_counted: freeing waits for it */
    int closed;
} conn_t;

static void on_read_counted(h2o_socket_t *sock, const char *err);

/* Count what the connection's input buffer holds now. */
static void conn_recount(conn_t *c)
{
    const h2o_buffer_t *in = c->sock->input;
    size_t now = in != NULL && in->bytes != NULL ? in->size : 0;
    if (now > c->charged)
        bp_budget_charge(c->t->api->budget, now - c->charged);
    else if (now < c->charged)
        bp_budget_release(c->t->api->budget, c->charged - now);
    c->charged = now;
}

/* Wrap whatever read callback h2o set last; returns 0 when h2o is not reading. */
static int conn_wrap(conn_t *c)
{
    h2o_socket_cb cb = c->sock->_cb.read;
    if (cb == NULL)
        return 0;
    if (cb != on_read_counted) {
        c->read_cb = cb;
        c->sock->_cb.read = on_read_counted;
    }
    return 1;
}

static void conn_forget(conn_t *c)
{
    if (h2o_linklist_is_linked(&c->rearm))
        h2o_linklist_unlink(&c->rearm);
    if (h2o_linklist_is_linked(&c->paused))
        h2o_linklist_unlink(&c->paused);
    bp_budget_release(c->t->api->budget, c->charged);
    c->charged = 0;
}

static void on_read_counted(h2o_socket_t *sock, const char *err)
{
    conn_t *c = sock->on_close.data;
    c->in_read = 1;
    c->read_cb(sock, err);
    c->in_read = 0;
    if (c->closed) { /* h2o closed it in its callback */
        free(c);
        return;
    }
    conn_recount(c);
    if (sock->_cb.read != on_read_counted) { /* h2o stopped reading or set another callback */
        if (!h2o_linklist_is_linked(&c->rearm))
            h2o_linklist_insert(&c->t->body_rearm, &c->rearm);
        return;
    }
    if (c->charged >= BP_PAUSE_MIN_BYTES && bp_budget_spent(c->t->api->budget)) {
        h2o_socket_read_stop(sock);
        h2o_linklist_insert(&c->t->body_paused, &c->paused);
    }
}

/* After each turn of the loop: recount and wrap again the connections whose callback h2o replaced,
 * and resume paused ones once the budget allows. */
static void body_accounting_turn(bp_api_thread_t *t)
{
    h2o_linklist_t *node, *next;
    for (node = t->body_rearm.next; node != &t->body_rearm; node = next) {
        next = node->next;
        conn_t *c = H2O_STRUCT_FROM_MEMBER(conn_t, rearm, node);
        conn_recount(c);
        if (conn_wrap(c))
            h2o_linklist_unlink(&c->rearm);
    }
    for (node = t->body_paused.next; node != &t->body_paused && !bp_budget_spent(t->api->budget); node = next) {
        next = node->next;
        conn_t *c = H2O_STRUCT_FROM_MEMBER(conn_t, paused, node);
        h2o_linklist_unlink(&c->paused);
        h2o_socket_read_start(c->sock, on_read_counted);
    }
}

/* A connection closing with its request body unread: a dup of its socket, which h2o does not know
 * about, keeps it open after h2o closed its own descriptor (so no reset is sent), then drains it. */
struct linger_conn {
    bp_api_thread_t *t;
    int fd;
    h2o_socket_t *sock; /* once draining */
    size_t left;        /* bytes still accepted */
    h2o_timeout_entry_t timeout;
};

static void linger_on_close(void *data)
{
    linger_t *l = data;
    h2o_timeout_unlink(&l->timeout);
    l->t->connections--;
    free(l);
}

static void linger_stop(linger_t *l)
{
    h2o_socket_close(l->sock); /* closes the dup; linger_on_close frees l */
}

static void linger_on_timeout(h2o_timeout_entry_t *entry)
{
    linger_stop(H2O_STRUCT_FROM_MEMBER(linger_t, timeout, entry));
}

static void linger_on_read(h2o_socket_t *sock, const char *err)
{
    linger_t *l = sock->data;
    size_t n = sock->input->size;
    h2o_buffer_consume(&sock->input, n);
    if (err != NULL || n >= l->left) {
        linger_stop(l);
        return;
    }
    l->left -= n;
}

/* h2o closed its descriptor of the connection: ours is the last one. */
static void linger_start(linger_t *l)
{
    /* the answer is in the kernel's send queue (h2o closes after the write completed): FIN follows it */
    shutdown(l->fd, SHUT_WR);
    l->sock = h2o_evloop_socket_create(l->t->loop, l->fd, 0);
    l->sock->data = l;
    l->sock->on_close.cb = linger_on_close;
    l->sock->on_close.data = l;
    h2o_timeout_link(l->t->loop, &l->t->linger_timeout, &l->timeout);
    h2o_socket_read_start(l->sock, linger_on_read);
}

/* h2o closed the connection's socket. */
static void on_socket_close(void *data)
{
    conn_t *c = data;
    conn_forget(c);
    if (c->linger != NULL)
        linger_start(c->linger); /* the connection count moves to the lingering socket */
    else
        c->t->connections--;
    if (c->in_read)
        c->closed = 1; /* on_read_counted frees it */
    else
        free(c);
}

void bp_server_linger_on_close(h2o_req_t *req)
{
    if (req->version >= 0x200 || req->http1_is_persistent || req->conn->callbacks->get_socket == NULL)
        return;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (sock == NULL || sock->on_close.cb != on_socket_close) /* not a plain connection of ours */
        return;
    conn_t *c = sock->on_close.data;
    if (c->linger != NULL)
        return;
    bp_api_thread_t *t = c->t;
    linger_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return;
    l->fd = dup(h2o_socket_get_fd(sock));
    if (l->fd < 0) {
        free(l);
        return;
    }
    l->t = t;
    long long most = 4 * t->api->cfg->max_body_bytes;
    l->left = (size_t)(most > 8LL * 1024 * 1024 ? most : 8LL * 1024 * 1024);
    l->timeout.cb = linger_on_timeout;
    c->linger = l;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    bp_api_thread_t *t = listener->data;
    if (err != NULL)
        return;
    for (int i = 0; i < 64; i++) { /* bounded: let other events run */
        h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
        if (sock == NULL)
            return;
        conn_t *c = NULL;
        if (t->connections >= (size_t)t->api->cfg->max_connections || (c = calloc(1, sizeof(*c))) == NULL) {
            bp_log_warn("connection limit (%lld) reached on thread %d: closing a new connection",
                        t->api->cfg->max_connections, t->index);
            h2o_socket_close(sock);
            continue;
        }
        t->connections++;
        c->t = t;
        c->sock = sock;
        sock->on_close.cb = on_socket_close;
        sock->on_close.data = c;
        h2o_accept(&t->accept_ctx, sock);
        /* h2o set its read callback (HTTP/1, or the TLS handshake): count from the first read */
        if (!conn_wrap(c))
            h2o_linklist_insert(&t->body_rearm, &c->rearm);
    }
}

static int open_listener(const char *host, int port, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    int gai = getaddrinfo(host, portstr, &hints, &ai);
    if (gai != 0) {
        snprintf(err, errlen, "BP_HTTP_HOST %s: %s", host, gai_strerror(gai));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1, rcvbuf = BP_RCVBUF_BYTES; /* accepted connections inherit it */
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, errlen, "listen on %s:%d: %s", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    return fd;
}

int bp_server_host_is_loopback(const char *host)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    if (host == NULL || host[0] == '\0' || getaddrinfo(host, "1", &hints, &ai) != 0)
        return 0;
    int loopback = 1;
    for (struct addrinfo *a = ai; a != NULL; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
            const struct sockaddr_in *in = (const struct sockaddr_in *)a->ai_addr;
            loopback &= (ntohl(in->sin_addr.s_addr) >> 24) == 127;
        } else if (a->ai_family == AF_INET6) {
            const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)a->ai_addr;
            loopback &= IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
                        (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127);
        } else {
            loopback = 0;
        }
    }
    freeaddrinfo(ai);
    return loopback;
}

static double gauge_connections(void *arg)
{
    return (double)((bp_api_thread_t *)arg)->connections;
}

static double gauge_inflight(void *arg)
{
    return (double)((bp_api_thread_t *)arg)->inflight;
}

static void *thread_main(void *arg)
{
    thread_start_t *start = arg;
    bp_api_thread_t *t = start->t;
    bp_api_t *api = t->api;
    char err[512] = "";
    int ok = 1;

    t->loop = h2o_evloop_create();
    h2o_context_init(&t->ctx, t->loop, &api->globalconf);
    t->accept_ctx.ctx = &t->ctx;
    t->accept_ctx.hosts = api->globalconf.hosts;
    t->accept_ctx.ssl_ctx = api->ssl_ctx;
    h2o_timeout_init(t->loop, &t->linger_timeout, BP_LINGER_MS);
    h2o_timeout_init(t->loop, &t->receipt_tick, BP_RECEIPT_TICK_MS);
    h2o_linklist_init_anchor(&t->body_rearm);
    h2o_linklist_init_anchor(&t->body_paused);
    for (size_t i = 0; i < N_MODULES && ok; i++) {
        if (modules[i]->thread_init != NULL && modules[i]->thread_init(t, err, sizeof(err)) != 0)
            ok = 0;
    }
    if (ok) {
        char labels[32];
        snprintf(labels, sizeof(labels), "thread=\"%d\"", t->index);
        bp_metrics_gauge_fn(api->metrics, "bp_http_connections", "Open HTTP connections.", labels,
                            gauge_connections, t);
        bp_metrics_gauge_fn(api->metrics, "bp_http_inflight_requests",
                            "Requests waiting for the broker or the database.", labels, gauge_inflight, t);
        t->listener = h2o_evloop_socket_create(t->loop, start->fd, H2O_SOCKET_FLAG_DONT_READ);
        t->listener->data = t;
        h2o_socket_read_start(t->listener, on_accept);
    } else {
        close(start->fd);
    }

    pthread_mutex_lock(start->mu);
    if (ok)
        (*start->ready)++;
    else {
        (*start->failed)++;
        snprintf(start->err, start->errlen, "%s", err);
    }
    pthread_cond_broadcast(start->cond);
    pthread_mutex_unlock(start->mu);
    if (!ok)
        goto dispose;

    while (!atomic_load(api->stop)) {
        h2o_evloop_run(t->loop, 100);
        body_accounting_turn(t);
    }

    /* stop accepting, then let requests that wait for acks or queries finish, within a bound */
    h2o_socket_read_stop(t->listener);
    h2o_socket_close(t->listener);
    t->listener = NULL;
    uint64_t deadline = (uint64_t)bp_clock_ms() + (uint64_t)api->cfg->shutdown_timeout_ms;
    while (t->inflight > 0 && (uint64_t)bp_clock_ms() < deadline) {
        h2o_evloop_run(t->loop, 10);
        body_accounting_turn(t);
    }
    if (t->inflight > 0)
        bp_log_warn("thread %d: %zu requests still in flight at shutdown", t->index, t->inflight);
    /* a few more turns so that answers already queued reach their sockets */
    for (int i = 0; i < 5; i++)
        h2o_evloop_run(t->loop, 1);

dispose:
    for (size_t i = N_MODULES; i-- > 0;) {
        if (modules[i]->thread_dispose != NULL)
            modules[i]->thread_dispose(t);
    }
    return NULL;
}

int bp_server_run(bp_api_t *api, char *err, size_t errlen)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
    int ready = 0, failed = 0, started = 0, rc = -1;
    thread_start_t *starts = calloc((size_t)api->nthreads, sizeof(*starts));
    api->threads = calloc((size_t)api->nthreads, sizeof(*api->threads));
    if (starts == NULL || api->threads == NULL) {
        snprintf(err, errlen, "out of memory");
        goto cleanup;
    }
    for (int i = 0; i < api->nthreads; i++) {
        int fd = open_listener(api->cfg->http_host, (int)api->cfg->http_port, err, errlen);
        if (fd < 0) {
            *api->stop = 1;
            goto join;
        }
        api->threads[i].api = api;
        api->threads[i].index = i;
        starts[i] = (thread_start_t){&api->threads[i], fd, &mu, &cond, &ready, &failed, err, errlen};
        if (pthread_create(&api->threads[i].tid, NULL, thread_main, &starts[i]) != 0) {
            close(fd);
            snprintf(err, errlen, "cannot start thread %d", i);
            *api->stop = 1;
            goto join;
        }
        started++;
    }
    pthread_mutex_lock(&mu);
    while (ready + failed < started)
        pthread_cond_wait(&cond, &mu);
    pthread_mutex_unlock(&mu);
    if (failed > 0) {
        *api->stop = 1;
        goto join;
    }
    bp_log_info("listening on %s:%lld with %d threads", api->cfg->http_host, api->cfg->http_port,
                api->nthreads);
    rc = 0;
join:
    /* the caller's signal wait happens in bp_server_wait; here we only return on failure */
    if (rc != 0) {
        for (int i = 0; i < started; i++)
            pthread_join(api->threads[i].tid, NULL);
    }
cleanup:
    free(starts);
    /* starts is only read by threads before they signal readiness */
    return rc;
}

void bp_server_join(bp_api_t *api)
{
    for (int i = 0; i < api->nthreads; i++)
        pthread_join(api->threads[i].tid, NULL);
    /* api->threads is not freed: each thread's loop and context are still referenced by connections
     * h2o 2.2.5 cannot close from outside; the process is about to exit */
}
