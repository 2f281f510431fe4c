/* health.c - GET /readyz for load balancers and orchestrators: ready only when this thread's
 * PostgreSQL pool answers a "SELECT 1", its Kafka producer is healthy and a broker connection is up,
 * and the server is not stopping. Each loop thread has its own pool and producer: the probe checks
 * the thread that serves it. The body names every check; details never include addresses or server
 * messages (the route is public), the log has those. */
#include "health.h"

#include <stdio.h>

#include "http.h"
#include "pgpool.h"
#include "producer.h"

#define KAFKA_RETRY_AFTER_S 1 /* the producer's statistics, which tell broker state, come every second */

/* What is known before PostgreSQL answers; lives in the request pool. */
typedef struct readyz {
    bp_api_thread_t *t;
    json_t *kafka; /* the kafka check, built at once; owned until answered */
    int kafka_ok;
} readyz_t;

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

static void answer(h2o_req_t *req, readyz_t *r, int pg_ok, const char *pg_detail)
{
    bp_api_thread_t *t = r->t;
    int stopping = *t->api->stop != 0;
    json_t *checks = json_object();
    json_object_set_new(checks, "postgresql", check(pg_ok, pg_detail));
    json_object_set_new(checks, "kafka", r->kafka);
    r->kafka = NULL;
    if (stopping)
        json_object_set_new(checks, "server", check(0, "shutting down"));
    int ready = pg_ok && r->kafka_ok && !stopping;
    json_t *body = json_object();
    json_object_set_new(body, "status", json_string(ready ? "ready" : "not ready"));
    json_object_set_new(body, "checks", checks);
    bp_http_add_header(req, "cache-control", "no-store");
    char retry[16]; /* until the answer is sent */
    if (!ready) {
        unsigned ra = KAFKA_RETRY_AFTER_S;
        if (!pg_ok && t->pgpool != NULL && bp_pgpool_retry_after_s(t->pgpool) > ra)
            ra = bp_pgpool_retry_after_s(t->pgpool);
        snprintf(retry, sizeof(retry), "%u", ra);
        bp_http_add_header(req, "retry-after", retry);
    }
    bp_http_send_json(req, ready ? 200 : 503, NULL, body);
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

static void on_pg(h2o_req_t *req, void *ctx, bp_err_t err, const PGresult *res, const char *msg)
{
    (void)res;
    (void)msg;
    answer(req, ctx, err == BP_OK, pg_detail(err));
}

static void readyz_dispose(void *mem)
{
    readyz_t *r = mem;
    json_decref(r->kafka); /* the request went away before PostgreSQL answered */
    r->kafka = NULL;
}

int bp_health_readyz(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    (void)id;
    (void)idlen;
    readyz_t *r = h2o_mem_alloc_shared(&req->pool, sizeof(*r), readyz_dispose);
    r->t = t;
    r->kafka = kafka_check(t, &r->kafka_ok);
    bp_err_t err = BP_ERR_PG_DOWN;
    if (t->pgpool != NULL)
        err = bp_pgpool_req_query(req, "SELECT 1", 0, NULL, on_pg, r);
    if (err != BP_OK)
        answer(req, r, 0, pg_detail(err));
    return 0;
}
