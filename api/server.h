/* server.h - the API process: one h2o event loop per thread, each with its own SO_REUSEPORT listener,
 * and the modules (producer, PostgreSQL pool, routes) that live on every loop thread. */
#ifndef BP_SERVER_H
#define BP_SERVER_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>

#include <h2o.h>

#include "bp_config.h"
#include "bp_metrics.h"
#include "bp_error.h"

typedef struct bp_api bp_api_t;
typedef struct bp_api_thread bp_api_thread_t;

struct bp_producer; /* api/producer.h */
struct bp_pgpool;   /* api/pgpool.h */
struct bp_write_wait; /* api/write_ack.c */
struct bp_watermarks; /* api/watermarks.h */
struct bp_health;     /* api/health.c */
struct bp_replicas;   /* api/replicas.h */
struct bp_after;      /* api/after.c */

/* One event-loop thread. Everything in it is touched only by its own thread. */
#define BP_RECEIPT_TICK_MS 50 /* t->receipt_tick */

struct bp_api_thread {
    bp_api_t *api; /* borrowed */
    int index;
    pthread_t tid;
    h2o_evloop_t *loop;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_socket_t *listener;
    size_t connections;           /* open HTTP connections on this thread */
    size_t inflight;              /* requests answered later (broker acks, queries): shutdown waits for them */
    struct bp_producer *producer; /* owned; api/producer.c */
    struct bp_pgpool *pgpool;     /* owned; api/pgreq.c: the primary's (BP_PG_DSN) */
    struct bp_pgpool **standbys;  /* owned; api/pgreq.c: one pool per standby of BP_PG_READ_DSN */
    size_t nstandbys;
    unsigned standby_rr;          /* round-robin among usable standbys */
    struct bp_write_wait *wait;   /* owned; api/write_ack.c: POSTs waiting for the workers (?wait=) */
    struct bp_health *health;     /* owned; api/health.c: the /readyz state of this thread */
    struct bp_after *after;       /* owned; api/after.c: reads waiting for after= tokens */
    h2o_timeout_t linger_timeout; /* bound of a lingering close (bp_server_linger_on_close) */
    h2o_timeout_t receipt_tick;   /* receipts waiting for a fresh watermarks round (api/receipts.c) */
    h2o_linklist_t body_rearm;    /* connections whose reads the body budget must watch again */
    h2o_linklist_t body_paused;   /* connections whose reading waits for the body budget */
};

/* The process. */
struct bp_api {
    bp_config_t *cfg; /* borrowed from main */
    h2o_globalconf_t globalconf;
    int nthreads;
    bp_api_thread_t *threads;
    atomic_int *stop; /* set by main once a stop signal arrived; read by every loop thread */
    bp_metrics_t *metrics;       /* owned by main; the /metrics registry */
    bp_metric_t *objects_accepted; /* in metrics: objects of the batches the broker acknowledged */
    struct bp_auth *auth;        /* owned by main; NULL: no authentication */
    struct bp_ratelimit *ratelimit; /* owned by main; NULL: no rate limit */
    struct bp_ratelimit *public_ratelimit; /* owned by main; the public routes' own; NULL: none */
    SSL_CTX *ssl_ctx;            /* owned by main; NULL: plain HTTP */
    struct bp_watermarks *watermarks; /* owned by main; the topics' watermarks for /api/v1/stats/ */
    struct bp_replicas *replicas;     /* owned by main; the standbys of BP_PG_READ_DSN and their lag */
    struct bp_budget *budget;    /* owned by main; the request-body bytes held (api/budget.h) */
    struct bp_keybudget *keybudget; /* owned by main; bytes each client has in progress; NULL: no limit */
};

/* A module owns per-thread state and/or routes. thread_init runs on the loop thread before it serves;
 * thread_dispose after it stops (it must accept a thread whose init failed or never ran). */
typedef struct bp_api_module {
    const char *name;
    int (*thread_init)(bp_api_thread_t *t, char *err, size_t errlen);
    void (*thread_dispose)(bp_api_thread_t *t);
} bp_api_module_t;

/* Bind and start the threads; returns 0 once every thread serves, or -1 with err if a listener or a
 * module cannot start (the threads are then already stopped). The threads serve until *api->stop is
 * set, then drain in-flight requests (bounded by BP_SHUTDOWN_TIMEOUT_MS): wait for that with
 * bp_server_join. */
int bp_server_run(bp_api_t *api, char *err, size_t errlen) BP_MUST_CHECK;

/* Wait for every thread to finish after *api->stop was set. The threads' loops stay allocated (and
 * reachable from api) until the process exits. */
void bp_server_join(bp_api_t *api);

/* Call while answering a request whose connection h2o closes right after the answer with the request's
 * body unread (its own 413 and 400 answers, HTTP/1 only; anything else is left alone). When h2o
 * closes the socket, the API half-closes it instead (the answer, then FIN) and reads and discards
 * what the client still sends, for at most BP_LINGER_MS and a bounded number of bytes (4 times
 * BP_MAX_BODY_BYTES, at least 8 MiB), then closes it: without that, a client that writes its whole
 * body before reading (Python's http.client, requests) gets a reset instead of the answer. A
 * lingering socket still counts as a connection of its thread (BP_MAX_CONNECTIONS). */
void bp_server_linger_on_close(h2o_req_t *req);

/* 1 when every address host resolves to is a loopback one (127.0.0.0/8, ::1), 0 otherwise or when it
 * does not resolve. */
int bp_server_host_is_loopback(const char *host);

/* Recover the thread from a request on its loop. */
static inline bp_api_thread_t *bp_thread_of(h2o_req_t *req)
{
    return H2O_STRUCT_FROM_MEMBER(bp_api_thread_t, ctx, req->conn->ctx);
}

#endif
