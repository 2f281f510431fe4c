/* pglisten.c - a LISTEN connection joined to the event loop: non-blocking connect, LISTEN, then every
 * notification to the owner; reconnects after a loss. libpq's socket is wrapped (as a dup) in an h2o
 * socket with DONT_READ, as in pgpool.c: h2o only reports readiness. */
#include "pglisten.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "bp_log.h"
#include "bp_pg.h"

#define CONNECT_TIMEOUT_MS 2000
#define RECONNECT_MS 250 /* after a loss or a failed attempt; the owner polls meanwhile */

typedef enum { L_IDLE = 0, L_CONNECTING, L_LISTENING, L_UP, L_RETRY } listen_state_t;

struct bp_pglisten {
    h2o_evloop_t *loop;
    char *dsn;
    char *channel;
    char *listen_sql; /* LISTEN "channel" */
    bp_pglisten_notify_cb notify;
    bp_pglisten_state_cb state_cb;
    void *ctx;
    listen_state_t state;
    PGconn *pg;
    h2o_socket_t *sock; /* wraps fd, a dup of PQsocket(pg) */
    int fd;
    int write_armed;
    h2o_timeout_t connect_to, retry_to;
    h2o_timeout_entry_t timer; /* the connect deadline, or the next attempt */
    int trouble_logged;        /* a loss or failure was logged; quiet until it is up again */
};

static void on_readable(h2o_socket_t *sock, const char *err);
static void on_writable(h2o_socket_t *sock, const char *err);
static void start_connect(bp_pglisten_t *l);

static void unlink_timer(bp_pglisten_t *l)
{
    if (h2o_timeout_is_linked(&l->timer))
        h2o_timeout_unlink(&l->timer);
}

static void close_conn(bp_pglisten_t *l)
{
    unlink_timer(l);
    if (l->sock != NULL) {
        h2o_socket_close(l->sock); /* closes our dup; the loop stops watching it at once */
        l->sock = NULL;
    }
    l->fd = -1;
    l->write_armed = 0;
    if (l->pg != NULL) {
        PQfinish(l->pg);
        l->pg = NULL;
    }
}

/* The connection (or the attempt) is gone: close it, tell the owner if LISTEN was in effect, and try
 * again after RECONNECT_MS. */
static void lost(bp_pglisten_t *l, const char *why)
{
    int was_up = l->state == L_UP;
    if (!l->trouble_logged) {
        char msg[256];
        bp_pg_error_line(msg, sizeof(msg), NULL, why, BP_PG_LINE_FIRST);
        bp_log_warn("LISTEN %s: %s (retrying every %d ms; waits are polled meanwhile)", l->channel, msg,
                    RECONNECT_MS);
        l->trouble_logged = 1;
    }
    close_conn(l);
    l->state = L_RETRY;
    h2o_timeout_link(l->loop, &l->retry_to, &l->timer);
    if (was_up)
        l->state_cb(l->ctx, 0);
}

static void want_read(bp_pglisten_t *l)
{
    if (!h2o_socket_is_reading(l->sock))
        h2o_socket_read_start(l->sock, on_readable);
}

static void want_write(bp_pglisten_t *l)
{
    if (!l->write_armed) {
        l->write_armed = 1;
        h2o_socket_notify_write(l->sock, on_writable);
    }
}

static int wrap_socket(bp_pglisten_t *l)
{
    int fd = PQsocket(l->pg);
    if (fd < 0)
        return -1;
    /* libpq closes its own descriptor and h2o closes the one it watches: give h2o a duplicate */
    int dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dupfd < 0)
        return -1;
    l->sock = h2o_evloop_socket_create(l->loop, dupfd, H2O_SOCKET_FLAG_DONT_READ);
    l->sock->data = l;
    l->fd = dupfd;
    l->write_armed = 0;
    return 0;
}

/* libpq may switch sockets while connecting (another address): compare the open files. */
static int same_socket(bp_pglisten_t *l)
{
    struct stat a, b;
    int fd = PQsocket(l->pg);
    if (fd < 0 || fstat(fd, &a) != 0 || fstat(l->fd, &b) != 0)
        return 0;
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Send what libpq still holds; arm a write notification if the socket is full. Returns 0 or -1. */
static int flush_out(bp_pglisten_t *l)
{
    int f = PQflush(l->pg);
    if (f < 0)
        return -1;
    if (f == 1)
        want_write(l);
    return 0;
}

static void connected(bp_pglisten_t *l)
{
    unlink_timer(l);
    if (PQsetnonblocking(l->pg, 1) != 0 || !PQsendQuery(l->pg, l->listen_sql) || flush_out(l) != 0) {
        lost(l, PQerrorMessage(l->pg));
        return;
    }
    l->state = L_LISTENING;
    want_read(l);
}

static void connect_step(bp_pglisten_t *l)
{
    PostgresPollingStatusType st = PQconnectPoll(l->pg);
    if (st == PGRES_POLLING_FAILED) {
        lost(l, PQerrorMessage(l->pg));
        return;
    }
    if (!same_socket(l)) {
        h2o_socket_close(l->sock);
        l->sock = NULL;
        if (wrap_socket(l) != 0) {
            lost(l, "cannot watch the PostgreSQL socket");
            return;
        }
    }
    if (st == PGRES_POLLING_OK) {
        connected(l);
    } else if (st == PGRES_POLLING_READING) {
        want_read(l);
    } else {
        if (h2o_socket_is_reading(l->sock))
            h2o_socket_read_stop(l->sock);
        want_write(l);
    }
}

static void on_timer(h2o_timeout_entry_t *entry)
{
    bp_pglisten_t *l = H2O_STRUCT_FROM_MEMBER(bp_pglisten_t, timer, entry);
    if (l->state == L_RETRY) {
        start_connect(l);
        return;
    }
    char msg[96];
    snprintf(msg, sizeof(msg), "no connection within %d ms", CONNECT_TIMEOUT_MS);
    lost(l, msg);
}

static void start_connect(bp_pglisten_t *l)
{
    /* dbname with expand_dbname=1 takes the whole DSN (key=value or URI), as PQconnectdb would */
    const char *keys[] = {"dbname", "fallback_application_name", NULL};
    const char *values[] = {l->dsn, "batchpipe-api-listen", NULL};
    l->pg = PQconnectStartParams(keys, values, 1);
    if (l->pg == NULL || PQstatus(l->pg) == CONNECTION_BAD || wrap_socket(l) != 0) {
        l->state = L_CONNECTING;
        lost(l, l->pg != NULL ? PQerrorMessage(l->pg) : "out of memory");
        return;
    }
    l->state = L_CONNECTING;
    h2o_timeout_link(l->loop, &l->connect_to, &l->timer);
    want_write(l); /* "behave as if PQconnectPoll last returned PGRES_POLLING_WRITING" */
}

/* Read what arrived: the LISTEN's result, notifications, or the end of the connection. */
static void read_input(bp_pglisten_t *l)
{
    if (!PQconsumeInput(l->pg) || PQstatus(l->pg) != CONNECTION_OK) {
        lost(l, PQerrorMessage(l->pg)); /* level-triggered: stop watching at once, or it would spin */
        return;
    }
    while (!PQisBusy(l->pg)) {
        PGresult *r = PQgetResult(l->pg);
        if (r == NULL) {
            if (l->state == L_LISTENING) { /* the LISTEN is done: from now on nothing is missed */
                l->state = L_UP;
                if (l->trouble_logged)
                    bp_log_info("LISTEN %s: listening again", l->channel);
                l->trouble_logged = 0;
                l->state_cb(l->ctx, 1);
                if (l->state != L_UP)
                    return;
            }
            break;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK) {
            char msg[256];
            bp_pg_error_line(msg, sizeof(msg), NULL, PQresultErrorMessage(r), BP_PG_LINE_FIRST);
            PQclear(r);
            lost(l, msg);
            return;
        }
        PQclear(r);
    }
    PGnotify *n;
    while (l->pg != NULL && (n = PQnotifies(l->pg)) != NULL) {
        if (strcmp(n->relname, l->channel) == 0)
            l->notify(l->ctx, n->extra);
        PQfreemem(n);
    }
}

static void on_readable(h2o_socket_t *sock, const char *err)
{
    bp_pglisten_t *l = sock->data;
    if (l->state == L_CONNECTING)
        connect_step(l);
    else
        read_input(l);
}

static void on_writable(h2o_socket_t *sock, const char *err)
{
    bp_pglisten_t *l = sock->data;
    l->write_armed = 0;
    if (l->state == L_CONNECTING)
        connect_step(l);
    else if (flush_out(l) != 0)
        lost(l, PQerrorMessage(l->pg));
}

bp_pglisten_t *bp_pglisten_new(h2o_evloop_t *loop, const char *dsn, const char *channel,
                               bp_pglisten_notify_cb notify, bp_pglisten_state_cb state, void *ctx, char *err,
                               size_t errlen)
{
    bp_pglisten_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        goto nomem;
    l->loop = loop;
    l->fd = -1;
    l->notify = notify;
    l->state_cb = state;
    l->ctx = ctx;
    l->timer.cb = on_timer;
    h2o_timeout_init(loop, &l->connect_to, CONNECT_TIMEOUT_MS);
    h2o_timeout_init(loop, &l->retry_to, RECONNECT_MS);
    l->dsn = strdup(dsn);
    l->channel = strdup(channel);
    /* the channel is ours (bp_pg_offsets_channel): letters, digits and '_', quoted all the same */
    size_t n = strlen(channel) + 16;
    l->listen_sql = malloc(n);
    if (l->dsn == NULL || l->channel == NULL || l->listen_sql == NULL) {
        bp_pglisten_free(l);
        goto nomem;
    }
    snprintf(l->listen_sql, n, "LISTEN \"%s\"", channel);
    return l;
nomem:
    snprintf(err, errlen, "out of memory");
    return NULL;
}

void bp_pglisten_start(bp_pglisten_t *l)
{
    if (l->state == L_IDLE)
        start_connect(l);
}

int bp_pglisten_up(const bp_pglisten_t *l)
{
    return l->state == L_UP;
}

void bp_pglisten_free(bp_pglisten_t *l)
{
    if (l == NULL)
        return;
    close_conn(l);
    h2o_timeout_dispose(l->loop, &l->connect_to);
    h2o_timeout_dispose(l->loop, &l->retry_to);
    free(l->dsn);
    free(l->channel);
    free(l->listen_sql);
    free(l);
}
