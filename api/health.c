/* health.c - GET /readyz for load balancers and orchestrators: ready only when this thread's
 * PostgreSQL pool answers a "SELECT 1", its Kafka producer is healthy and a broker connection is up,
 * no partition of the topic is below min.insync.replicas, and the server is not stopping. Each loop
 * thread has its own pool and producer: the probe checks the thread that serves it.
 *
 * The route is public and unauthenticated, so it must stay cheap whatever the number of callers: the
 * PostgreSQL answer is kept per thread and reused for CHECK_FRESH_MS; a probe that finds it older
 * joins the one check in flight (started by the first such probe) and is answered when it ends. So a
 * flood costs at most one "SELECT 1" per thread per second and never fills the pool's queue that
 * authenticated requests need. The replication state comes from the watermarks thread (it reads the
 * brokers' metadata off the loop), the broker state from the producer's statistics. With standbys
 * (BP_PG_READ_DSN) the body shows each one's state and lag under "replicas", from the replica monitor;
 * a standby down or lagging never makes the API unready (its reads go to the primary). The body names
 * every check; details never include addresses or server messages, the log has those. */
#include "health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "pgpool.h"
#include "producer.h"
#include "replicas.h"
#include "watermarks.h"

#define KAFKA_RETRY_AFTER_S 1 /* the producer's statistics, which tell broker state, come every second */
#define CHECK_FRESH_MS 1000   /* a PostgreSQL answer younger than this is reused */

static const char check_sql[] = "SELECT 1";

/* One thread's readiness state. */
struct bp_health {
    bp_api_thread_t *t;
    int known;              /* a check has ended */
    bp_err_t pg_err;        /* how the last one ended */
    uint64_t checked_at;    /* h2o_now() when it ended */
    bp_pgquery_t *check;    /* the check in flight, or NULL */
    h2o_linklist_t waiting; /* probe_t.link: probes waiting for it */
};

/* A probe waiting for the check in flight; lives in the request pool. */
typedef struct probe {
    h2o_linklist_t link;
    struct bp_health *health; /* NULL once the module is disposed */
    h2o_req_t *req;
    int counted; /* holds one t->inflight */
} probe_t;

static json_t *check(int ok, const char *detail)
{
    json_t *c = json_object();
    json_object_set_new(c, "status", json_string(ok ? "up" : "down"));
    if (detail != NULL)
        json_object_set_new(c, "detail", json_string(detail));
    return c;
}

static json_t *kafka_check(bp_api_thread_t *t, int *ok)
{
    int healthy = bp_producer_healthy(t->producer);
    int up = bp_producer_brokers_up(t->producer);
    const char *detail = NULL;
    if (!healthy)
        detail = "the Kafka producer hit a fatal error; restart the process";
    else if (up < 0)
        detail = "no broker state yet (the producer started less than a second ago)";
    else if (up == 0)
        detail = "no broker connection is up";
    *ok = healthy && up > 0;
    json_t *c = check(*ok, detail);
    json_object_set_new(c, "brokers_up", json_integer(up > 0 ? up : 0));
    return c;
}

/* The topic's replication, as the watermarks thread last saw it. Not ready only when partitions are
 * below min.insync.replicas: the broker refuses acks=all writes to them. Under-replicated partitions
 * still take writes (a broker is missing: the durability margin is), and an unknown state (no round
 * yet, the broker away: the kafka check says so) decides nothing. */
static json_t *replication_check(bp_api_thread_t *t, int *ok)
{
    bp_watermarks_replication_t r;
    *ok = 1;
    if (t->api->watermarks == NULL) {
        json_t *c = json_object();
        json_object_set_new(c, "status", json_string("unknown"));
        return c;
    }
    bp_watermarks_replication(t->api->watermarks, &r);
    json_t *c = json_object();
    if (!r.known || r.topic.partitions == 0) {
        json_object_set_new(c, "status", json_string("unknown"));
        json_object_set_new(c, "detail", json_string(!r.known ? "the topic's replicas are not known yet"
                                                              : "the topic does not exist"));
        return c;
    }
    *ok = r.topic.below_min_isr == 0;
    char detail[160];
    const char *d = NULL;
    if (r.topic.below_min_isr > 0) {
        snprintf(detail, sizeof(detail), "%d partitions are below min.insync.replicas: the brokers refuse writes to them",
                 r.topic.below_min_isr);
        d = detail;
    } else if (r.topic.under_replicated > 0) {
        snprintf(detail, sizeof(detail), "%d partitions are under-replicated: writes are taken by fewer brokers",
                 r.topic.under_replicated);
        d = detail;
    }
    json_object_set_new(c, "status", json_string(*ok ? "up" : "down"));
    if (d != NULL)
        json_object_set_new(c, "detail", json_string(d));
    json_object_set_new(c, "partitions", json_integer(r.topic.partitions));
    json_object_set_new(c, "replication_factor", json_integer(r.topic.replication));
    json_object_set_new(c, "min_insync_replicas", json_integer(r.topic.min_isr));
    json_object_set_new(c, "under_replicated", json_integer(r.topic.under_replicated));
    json_object_set_new(c, "below_min_isr", json_integer(r.topic.below_min_isr));
    return c;
}

static const char *pg_detail(bp_err_t err)
{
    switch (err) {
    case BP_OK: return NULL;
    case BP_ERR_PG_DOWN: return "unreachable";
    case BP_ERR_QUEUE_FULL: return "too many queries are waiting";
    case BP_ERR_TIMEOUT: return "no answer in time";
    default: return bp_err_str(err);
    }
}

/* Answer req from what is known now (pg_err: the PostgreSQL check's outcome). */
static void answer(bp_api_thread_t *t, h2o_req_t *req, bp_err_t pg_err)
{
    int pg_ok = pg_err == BP_OK;
    int kafka_ok, replication_ok;
    int stopping = *t->api->stop != 0;
    json_t *checks = json_object();
    json_object_set_new(checks, "postgresql", check(pg_ok, pg_detail(pg_err)));
    json_object_set_new(checks, "kafka", kafka_check(t, &kafka_ok));
    json_object_set_new(checks, "replication", replication_check(t, &replication_ok));
    if (bp_replicas_count(t->api->replicas) > 0) /* informative: reads fall back to the primary */
        json_object_set_new(checks, "replicas", bp_replicas_json(t->api->replicas));
    if (stopping)
        json_object_set_new(checks, "server", check(0, "shutting down"));
    int ready = pg_ok && kafka_ok && replication_ok && !stopping;
    json_t *body = json_object();
    json_object_set_new(body, "status", json_string(ready ? "ready" : "not ready"));
    json_object_set_new(body, "checks", checks);
    bp_http_add_header(req, "cache-control", "no-store");
    if (!ready) {
        unsigned ra = KAFKA_RETRY_AFTER_S;
        if (!pg_ok && t->pgpool != NULL && bp_pgpool_retry_after_s(t->pgpool) > ra)
            ra = bp_pgpool_retry_after_s(t->pgpool);
        char *retry = h2o_mem_alloc_pool(&req->pool, 16); /* until the answer is sent */
        snprintf(retry, 16, "%u", ra);
        bp_http_add_header(req, "retry-after", retry);
    }
    bp_http_send_json(req, ready ? 200 : 503, NULL, body);
}

static void stop_counting(struct bp_health *h, probe_t *p)
{
    if (p->counted) {
        p->counted = 0;
        h->t->inflight--;
    }
}

/* The request went away (or was answered and is being freed). */
static void on_probe_dispose(void *mem)
{
    probe_t *p = mem;
    if (p->health == NULL)
        return;
    if (h2o_linklist_is_linked(&p->link))
        h2o_linklist_unlink(&p->link);
    stop_counting(p->health, p);
}

/* The check ended: remember how, and answer every waiting probe. */
static void check_ended(struct bp_health *h, bp_err_t err)
{
    h->known = 1;
    h->pg_err = err;
    h->checked_at = h2o_now(h->t->loop);
    while (!h2o_linklist_is_empty(&h->waiting)) {
        probe_t *p = H2O_STRUCT_FROM_MEMBER(probe_t, link, h->waiting.next);
        h2o_linklist_unlink(&p->link);
        stop_counting(h, p);
        answer(h->t, p->req, err); /* p may be freed from here on */
    }
}

static void on_check(void *ctx, bp_err_t err, const PGresult *res, const char *msg)
{
    (void)res;
    (void)msg;
    struct bp_health *h = ctx;
    h->check = NULL;
    check_ended(h, err);
}

int bp_health_readyz(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    (void)id;
    (void)idlen;
    struct bp_health *h = t->health;
    if (h == NULL || t->pgpool == NULL) {
        answer(t, req, BP_ERR_PG_DOWN);
        return 0;
    }
    if (h->known && h->check == NULL && h2o_now(t->loop) - h->checked_at < CHECK_FRESH_MS) {
        answer(t, req, h->pg_err);
        return 0;
    }
    probe_t *p = h2o_mem_alloc_shared(&req->pool, sizeof(*p), on_probe_dispose);
    memset(p, 0, sizeof(*p));
    p->health = h;
    p->req = req;
    p->counted = 1;
    t->inflight++;
    h2o_linklist_insert(&h->waiting, &p->link);
    if (h->check == NULL) {
        bp_err_t err = bp_pgpool_query_prepared(t->pgpool, check_sql, 0, NULL, on_check, h, &h->check);
        if (err != BP_OK) {
            h->check = NULL;
            check_ended(h, err); /* answers p */
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The module: one state per loop thread. Listed in server.c after the pool (so disposed before it).
 */

static int health_init(bp_api_thread_t *t, char *err, size_t errlen)
{
    struct bp_health *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    h->t = t;
    h2o_linklist_init_anchor(&h->waiting);
    t->health = h;
    return 0;
}

static void health_dispose(bp_api_thread_t *t)
{
    struct bp_health *h = t->health;
    if (h == NULL)
        return;
    /* the loop no longer runs: probes still waiting cannot be answered; detach them */
    while (!h2o_linklist_is_empty(&h->waiting)) {
        probe_t *p = H2O_STRUCT_FROM_MEMBER(probe_t, link, h->waiting.next);
        h2o_linklist_unlink(&p->link);
        stop_counting(h, p);
        p->health = NULL;
    }
    if (h->check != NULL)
        bp_pgpool_abandon(h->check);
    free(h);
    t->health = NULL;
}

const bp_api_module_t bp_health_module = {"health", health_init, health_dispose};
