/* write_ack.c - the answer to a POST the broker acknowledged: 202 Accepted with where the message went,
 * its receipt token and a Location to the receipt (receipts.c), or with ?wait=N, 201 Created with the
 * stored batch (object) once the ingest workers applied it - read-your-writes - and 202 if that takes
 * longer than N seconds.
 *
 * Waiting costs one statement per thread per check, whatever the number of waiting POSTs: the thread
 * reads where the workers stand on each partition of the topic (ingest_offsets) and releases the POSTs
 * whose offset is covered; each released POST then reads its batch once. A check runs when the
 * workers' transaction that moves ingest_offsets commits: its NOTIFY (on bp_pg_offsets_channel) reaches
 * the thread's LISTEN connection (pglisten.c), and a notification about a partition with a waiting
 * POST it covers starts a check at once. A poll stays as the fallback: every POLL_MS while the LISTEN
 * connection is down, every POLL_LISTENING_MS while it is up (a worker of an older version does not
 * notify; a notification between a loss and the next LISTEN is missed, so a check follows each LISTEN). */
#include "write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bp_log.h"
#include "bp_pg.h"
#include "bp_token.h"
#include "http.h"
#include "pglisten.h"
#include "pgreq.h"
#include "read.h"

#define POLL_MS 25            /* how often a thread with waiting POSTs asks where the workers stand... */
#define POLL_LISTENING_MS 250 /* ...and how often while the workers' notifications can reach it */

/* How a wait ended: the label values of bp_write_wait_total and, for 202, the "wait" member. */
typedef enum wait_outcome {
    WAIT_STORED,        /* 201 */
    WAIT_TIMED_OUT,     /* the bound passed first */
    WAIT_DB_DOWN,       /* PostgreSQL could not be asked: the data is accepted all the same */
    WAIT_SHUTTING_DOWN, /* the server is stopping */
    WAIT_NOT_FOUND,     /* applied, but not there: dead-lettered by the worker or deleted since */
    WAIT__COUNT
} wait_outcome_t;

static const char *const outcome_labels[WAIT__COUNT] = {"stored", "timed_out", "database_unavailable",
                                                        "shutting_down", "not_found"};
static const char *const outcome_text[WAIT__COUNT] = {"stored", "timed out", "database unavailable",
                                                      "shutting down", "not found"};

/* One thread's waiting POSTs. */
struct bp_write_wait {
    bp_api_thread_t *t;
    h2o_linklist_t polling; /* waiter_t.link: POSTs whose offset the workers have not reached yet */
    h2o_timeout_t tick;     /* POLL_MS */
    h2o_timeout_t slow_tick; /* POLL_LISTENING_MS */
    h2o_timeout_entry_t tick_entry;
    bp_pgquery_t *poll;     /* the poll statement under way, or NULL */
    int again;              /* a notification came while the poll ran: check once more after it */
    bp_pglisten_t *listen;  /* the workers' NOTIFYs; connected at the first wait */
    bp_metric_t *listening; /* gauge: 1 while LISTEN is in effect */
    int db_trouble_logged;  /* the poll failed (logged once until it succeeds again) */
    bp_metric_t *outcomes[WAIT__COUNT];
    bp_metric_t *waiting;   /* gauge: POSTs of this thread waiting now */
    size_t nwaiting;
    bp_write_commit_cb commit_cb; /* bp_write_wait_subscribe's, or NULL */
    void *commit_ctx;
};

typedef enum waiter_state { W_POLLING, W_FETCHING, W_DONE } waiter_state_t;

/* One waiting POST. Lives in the request's pool (h2o_mem_alloc_shared): when the request goes away
 * first (client gone, HTTP/2 cancel), on_waiter_dispose takes it out of the thread's list. */
typedef struct waiter {
    h2o_linklist_t link;         /* in wait->polling while W_POLLING */
    struct bp_write_wait *wait;  /* NULL once the module is disposed */
    bp_api_thread_t *t;
    h2o_req_t *req;
    bp_write_ack_t ack;          /* copied; its strings are in the request pool */
    uint64_t deadline;           /* h2o_now() ms */
    waiter_state_t state;
    int counted;                 /* holds one t->inflight */
} waiter_t;

/* The batch, its object count and its first $2 objects (the shape of GET /api/v1/batches/{id}/). */
static const char batch_sql[] =
    "SELECT b.batch_id, " BP_SQL_ISO8601("b.created_at") ", " BP_SQL_ISO8601("b.updated_at") ", "
    "(SELECT count(*) FROM objects c WHERE c.batch_id = b.batch_id), "
    "p.object_id, p.batch_id, p.data::text, " BP_SQL_ISO8601("p.created_at") ", "
    BP_SQL_ISO8601("p.updated_at")
    " FROM batches b LEFT JOIN LATERAL"
    " (SELECT o.id, o.object_id, o.batch_id, o.data, o.created_at, o.updated_at"
    " FROM objects o WHERE o.batch_id = b.batch_id ORDER BY o.id LIMIT $2::bigint) p ON true"
    " WHERE b.batch_id = $1 ORDER BY p.id";

/* One object (the shape of GET /api/v1/objects/{id}/). */
static const char object_sql[] =
    "SELECT o.object_id, o.batch_id, o.data::text, " BP_SQL_ISO8601("o.created_at") ", "
    BP_SQL_ISO8601("o.updated_at") " FROM objects o WHERE o.object_id = $1";

/* Where the workers stand on each partition: next_offset is the first offset NOT applied yet. Only
 * the workers' own group (BP_GROUP_ID) counts: another group (a replay into the same database, a second
 * deployment) may be ahead with other data, and its progress says nothing about this one's. */
static const char poll_sql[] = "SELECT partition, next_offset FROM ingest_offsets WHERE group_id = $1"
                               " AND topic = $2 ORDER BY partition";

/* ---------------------------------------------------------------------------------------------
 * Answers.
 */

/* base + "/api/v1/<collection>/" + percent-encoded id + "/" in the request pool. */
static const char *resource_url(h2o_req_t *req, const char *base, const char *collection, const char *id,
                                size_t idlen)
{
    const char *enc = bp_http_percent_encode(req, id, idlen);
    size_t n = strlen(base) + strlen(collection) + strlen(enc) + 16;
    char *url = h2o_mem_alloc_pool(&req->pool, n);
    snprintf(url, n, "%s/api/v1/%s/%s/", base, collection, enc);
    return url;
}

/* The URL of what the POST wrote: the object's, or the batch's. */
static const char *data_url(bp_api_thread_t *t, h2o_req_t *req, const bp_write_ack_t *ack)
{
    const char *base = bp_http_base_url(req, t->api->cfg->public_url);
    return ack->object_id != NULL ? resource_url(req, base, "objects", ack->object_id, ack->object_id_len)
                                  : resource_url(req, base, "batches", ack->batch_id, ack->batch_id_len);
}

static void add_location(bp_api_thread_t *t, h2o_req_t *req, const bp_write_ack_t *ack)
{
    bp_http_add_header(req, "location", data_url(t, req, ack));
}

/* The message's receipt token and URL (GET /api/v1/receipts/{token}/), in the request pool. */
static void receipt_of(bp_api_thread_t *t, h2o_req_t *req, const bp_write_ack_t *ack, const char **token,
                       const char **url)
{
    char *tok = h2o_mem_alloc_pool(&req->pool, BP_TOKEN_MAX);
    /* version 2, naming the batch too, so that the receipt of the applied message can link it */
    if (bp_token_format(tok, BP_TOKEN_MAX, t->api->cfg->topic, ack->partition, ack->offset, ack->batch_id,
                        ack->batch_id_len) == 0)
        tok[0] = '\0'; /* cannot happen for an acked message (partition and offset are >= 0) */
    const char *base = bp_http_base_url(req, t->api->cfg->public_url);
    size_t n = strlen(base) + strlen(tok) + 32;
    char *u = h2o_mem_alloc_pool(&req->pool, n);
    snprintf(u, n, "%s/api/v1/receipts/%s/", base, tok); /* a token is URL-safe as it is */
    *token = tok;
    *url = u;
}

/* 202 Accepted, Location: the receipt (what became of the message is what a client asks next);
 * wait_note (may be NULL) says why a ?wait= ended without the data. */
static int answer_accepted(bp_api_thread_t *t, h2o_req_t *req, const bp_write_ack_t *ack,
                           const char *wait_note)
{
    const char *token, *receipt_url;
    receipt_of(t, req, ack, &token, &receipt_url);
    json_t *body = json_object();
    json_object_set_new(body, "batch_id", json_stringn(ack->batch_id, ack->batch_id_len));
    if (ack->object_id != NULL)
        json_object_set_new(body, "object_id", json_stringn(ack->object_id, ack->object_id_len));
    bp_http_add_header(req, "location", receipt_url);
    json_object_set_new(body, "objects", json_integer((json_int_t)ack->objects));
    json_object_set_new(body, "partition", json_integer(ack->partition));
    json_object_set_new(body, "offset", json_integer(ack->offset));
    json_object_set_new(body, "token", json_string(token));
    json_object_set_new(body, "receipt_url", json_string(receipt_url));
    json_object_set_new(body, "url", json_string(data_url(t, req, ack)));
    json_object_set_new(body, "request_id", json_string(ack->request_id));
    json_object_set_new(body, "status", json_string("accepted"));
    if (wait_note != NULL)
        json_object_set_new(body, "wait", json_string(wait_note));
    return bp_http_send_json(req, 202, NULL, body);
}

/* The ack's members appended to a body whose closing brace is still to come. */
static void append_ack(bp_buf_t *b, h2o_req_t *req, const bp_write_ack_t *ack)
{
    char num[64];
    snprintf(num, sizeof(num), ",\"partition\":%d,\"offset\":%lld", (int)ack->partition,
             (long long)ack->offset);
    bp_buf_puts(b, num);
    const char *token, *receipt_url;
    receipt_of(bp_thread_of(req), req, ack, &token, &receipt_url);
    bp_buf_puts(b, ",\"token\":");
    bp_buf_json_string(b, token, strlen(token));
    bp_buf_puts(b, ",\"receipt_url\":");
    bp_buf_json_string(b, receipt_url, strlen(receipt_url));
    bp_buf_puts(b, ",\"request_id\":");
    bp_buf_json_string(b, ack->request_id, strlen(ack->request_id));
    bp_buf_puts(b, ",\"status\":\"stored\"}");
}

/* 201 with the batch as GET /api/v1/batches/{id}/ shows it (rows of batch_sql), plus the ack. */
static int answer_batch(h2o_req_t *req, const bp_write_ack_t *ack, const PGresult *res)
{
    bp_buf_t b = {0};
    bp_read_render_batch(&b, req, res);
    append_ack(&b, req, ack);
    return bp_read_send_json_text(req, 201, &b);
}

/* 201 with the object as GET /api/v1/objects/{id}/ shows it, plus the ack. */
static int answer_object(h2o_req_t *req, const bp_write_ack_t *ack, const PGresult *res)
{
    bp_buf_t b = {0};
    bp_read_render_object(&b, res, 0, 0);
    if (!b.oom && b.len > 0)
        b.len--; /* reopen the object: its closing brace is overwritten by the ack members */
    append_ack(&b, req, ack);
    return bp_read_send_json_text(req, 201, &b);
}

/* ---------------------------------------------------------------------------------------------
 * Waiters.
 */

static void stop_counting(waiter_t *w)
{
    if (w->counted) {
        w->counted = 0;
        w->t->inflight--;
    }
}

/* Take w out of the polling list (if it is there). */
static void unlink_waiter(waiter_t *w)
{
    if (w->wait != NULL && h2o_linklist_is_linked(&w->link)) {
        h2o_linklist_unlink(&w->link);
        w->wait->nwaiting--;
        bp_gauge_set(w->wait->waiting, (double)w->wait->nwaiting);
    }
}

static void note_outcome(waiter_t *w, wait_outcome_t o)
{
    if (w->wait != NULL)
        bp_counter_add(w->wait->outcomes[o], 1);
    if (bp_log_enabled(BP_LOG_DEBUG)) {
        json_t *fields = json_pack("{s:s, s:s}", "request_id", w->ack.request_id, "wait", outcome_text[o]);
        bp_log_fields(BP_LOG_DEBUG, fields, "?wait= of a POST ended: %s", outcome_text[o]);
        json_decref(fields);
    }
}

/* Answer 202 (the data is accepted; only its visibility is unknown) and forget w. The bookkeeping
 * comes first: w lives in the request's pool, so nothing touches it once the answer is handed over. */
static void release_accepted(waiter_t *w, wait_outcome_t o)
{
    unlink_waiter(w);
    w->state = W_DONE;
    note_outcome(w, o);
    stop_counting(w);
    answer_accepted(w->t, w->req, &w->ack, outcome_text[o]);
}

/* The request went away (or was answered and is being freed). */
static void on_waiter_dispose(void *mem)
{
    waiter_t *w = mem;
    unlink_waiter(w);
    w->state = W_DONE;
    stop_counting(w);
}

static void on_fetched(h2o_req_t *req, void *ctx, bp_err_t err, const PGresult *res, const char *msg)
{
    waiter_t *w = ctx;
    if (w->state != W_FETCHING)
        return;
    if (err != BP_OK) {
        bp_log_info("?wait=: the applied batch could not be read back (request %s): %s", w->ack.request_id,
                    msg != NULL ? msg : bp_err_str(err));
        release_accepted(w, WAIT_DB_DOWN);
        return;
    }
    if (PQntuples(res) == 0) {
        release_accepted(w, WAIT_NOT_FOUND);
        return;
    }
    w->state = W_DONE;
    note_outcome(w, WAIT_STORED);
    stop_counting(w);
    add_location(w->t, req, &w->ack);
    if (w->ack.object_id != NULL)
        answer_object(req, &w->ack, res);
    else
        answer_batch(req, &w->ack, res);
}

/* The workers applied w's offset: read what is stored. */
static void fetch(waiter_t *w)
{
    unlink_waiter(w);
    w->state = W_FETCHING;
    bp_err_t err;
    if (w->ack.object_id != NULL) {
        const char *params[] = {w->ack.object_id};
        err = bp_pgreq_query_prepared(w->req, object_sql, 1, params, on_fetched, w);
    } else {
        char limit[24];
        snprintf(limit, sizeof(limit), "%lld", w->t->api->cfg->batch_inline_objects);
        const char *params[] = {w->ack.batch_id, limit};
        err = bp_pgreq_query_prepared(w->req, batch_sql, 2, params, on_fetched, w);
    }
    if (err != BP_OK)
        release_accepted(w, WAIT_DB_DOWN);
}

/* ---------------------------------------------------------------------------------------------
 * The poll: one statement per tick for every waiter of the thread.
 */

static void release_all(struct bp_write_wait *wait, wait_outcome_t o)
{
    while (!h2o_linklist_is_empty(&wait->polling))
        release_accepted(H2O_STRUCT_FROM_MEMBER(waiter_t, link, wait->polling.next), o);
}

/* next_offset of partition in the poll's rows (sorted by partition), or -1. */
static long long next_offset_of(const PGresult *res, int32_t partition)
{
    int lo = 0, hi = PQntuples(res) - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        long p = strtol(PQgetvalue(res, mid, 0), NULL, 10);
        if (p == partition)
            return strtoll(PQgetvalue(res, mid, 1), NULL, 10);
        if (p < partition)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

static void start_poll(struct bp_write_wait *wait);

static void on_poll(void *ctx, bp_err_t err, const PGresult *res, const char *msg)
{
    struct bp_write_wait *wait = ctx;
    wait->poll = NULL;
    if (err == BP_ERR_PG_DOWN) {
        /* the data is accepted: say so now rather than hold the clients until their bound */
        bp_log_info("?wait=: PostgreSQL is unavailable (%s): answering %zu waiting POSTs 202", msg,
                    wait->nwaiting);
        release_all(wait, WAIT_DB_DOWN);
        return;
    }
    if (err != BP_OK) {
        /* busy or slow (queue full, timeout): keep trying until each POST's bound */
        if (!wait->db_trouble_logged)
            bp_log_info("?wait=: cannot read ingest_offsets now (%s: %s); still trying", bp_err_str(err),
                        msg);
        wait->db_trouble_logged = 1;
        return;
    }
    wait->db_trouble_logged = 0;
    h2o_linklist_t *l = wait->polling.next;
    while (l != &wait->polling) {
        waiter_t *w = H2O_STRUCT_FROM_MEMBER(waiter_t, link, l);
        l = l->next; /* fetch() unlinks w */
        if (next_offset_of(res, w->ack.partition) > w->ack.offset)
            fetch(w);
    }
    if (wait->again && !h2o_linklist_is_empty(&wait->polling)) {
        wait->again = 0;
        start_poll(wait);
    }
}

static void start_poll(struct bp_write_wait *wait)
{
    wait->again = 0;
    const char *params[] = {wait->t->api->cfg->group_id, wait->t->api->cfg->topic};
    bp_err_t err = bp_pgpool_query_prepared(wait->t->pgpool, poll_sql, 2, params, on_poll, wait, &wait->poll);
    if (err == BP_ERR_PG_DOWN) {
        release_all(wait, WAIT_DB_DOWN);
    } else if (err != BP_OK && !wait->db_trouble_logged) {
        bp_log_info("?wait=: cannot read ingest_offsets now (%s); still trying", bp_err_str(err));
        wait->db_trouble_logged = 1;
    }
}

/* Arm the fallback poll while POSTs wait: slow while notifications can reach us, quick otherwise. */
static void link_tick(struct bp_write_wait *wait)
{
    if (h2o_linklist_is_empty(&wait->polling) || h2o_timeout_is_linked(&wait->tick_entry))
        return;
    h2o_timeout_link(wait->t->loop, bp_pglisten_up(wait->listen) ? &wait->slow_tick : &wait->tick,
                     &wait->tick_entry);
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    struct bp_write_wait *wait = H2O_STRUCT_FROM_MEMBER(struct bp_write_wait, tick_entry, entry);
    if (*wait->t->api->stop) {
        release_all(wait, WAIT_SHUTTING_DOWN);
        return;
    }
    uint64_t now = h2o_now(wait->t->loop);
    h2o_linklist_t *l = wait->polling.next;
    while (l != &wait->polling) {
        waiter_t *w = H2O_STRUCT_FROM_MEMBER(waiter_t, link, l);
        l = l->next;
        if (now >= w->deadline)
            release_accepted(w, WAIT_TIMED_OUT);
    }
    if (!h2o_linklist_is_empty(&wait->polling) && wait->poll == NULL)
        start_poll(wait);
    link_tick(wait);
}

/* Check now (or right after the check under way). */
static void wake(struct bp_write_wait *wait)
{
    if (h2o_linklist_is_empty(&wait->polling))
        return;
    if (wait->poll != NULL)
        wait->again = 1;
    else
        start_poll(wait);
}

/* A workers' transaction committed: payload "PARTITION:NEXT_OFFSET" (one per partition it moved).
 * Wake only for a waiting POST it covers; anything unreadable wakes all the same. */
static void on_notify(void *ctx, const char *payload)
{
    struct bp_write_wait *wait = ctx;
    char *end;
    long partition = strtol(payload, &end, 10);
    long long next = *end == ':' ? strtoll(end + 1, NULL, 10) : -1;
    if (wait->commit_cb != NULL)
        wait->commit_cb(wait->commit_ctx, next < 0 ? -1 : (int32_t)partition, next);
    for (h2o_linklist_t *l = wait->polling.next; l != &wait->polling; l = l->next) {
        waiter_t *w = H2O_STRUCT_FROM_MEMBER(waiter_t, link, l);
        if (next < 0 || (w->ack.partition == partition && w->ack.offset < next)) {
            wake(wait);
            return;
        }
    }
}

static void on_listen_state(void *ctx, int up)
{
    struct bp_write_wait *wait = ctx;
    bp_gauge_set(wait->listening, up);
    if (up && wait->commit_cb != NULL)
        wait->commit_cb(wait->commit_ctx, -1, -1);
    if (up) {
        wake(wait); /* what committed while nobody listened */
    } else if (h2o_timeout_is_linked(&wait->tick_entry)) {
        h2o_timeout_unlink(&wait->tick_entry); /* back to the quick poll */
        link_tick(wait);
    }
}

int bp_write_acked(bp_api_thread_t *t, h2o_req_t *req, const bp_write_ack_t *ack)
{
    struct bp_write_wait *wait = t->wait;
    if (ack->wait_s <= 0 || wait == NULL || *t->api->stop)
        return answer_accepted(t, req, ack, NULL);
    waiter_t *w = h2o_mem_alloc_shared(&req->pool, sizeof(*w), on_waiter_dispose);
    memset(w, 0, sizeof(*w));
    w->wait = wait;
    w->t = t;
    w->req = req;
    w->ack = *ack;
    w->deadline = h2o_now(t->loop) + (uint64_t)ack->wait_s * 1000;
    w->state = W_POLLING;
    w->counted = 1;
    t->inflight++;
    h2o_linklist_insert(&wait->polling, &w->link);
    wait->nwaiting++;
    bp_gauge_set(wait->waiting, (double)wait->nwaiting);
    bp_pglisten_start(wait->listen);
    /* ask at once: the workers are often done already (a worker applies within milliseconds). That
     * may answer w already (PostgreSQL known to be down): do not touch w afterwards. A check under
     * way may have read ingest_offsets before this offset was applied: check once more after it */
    wake(wait);
    link_tick(wait);
    return 0;
}

void bp_write_wait_subscribe(bp_api_thread_t *t, bp_write_commit_cb cb, void *ctx)
{
    if (t->wait == NULL)
        return;
    t->wait->commit_cb = cb;
    t->wait->commit_ctx = ctx;
}

void bp_write_wait_listen(bp_api_thread_t *t)
{
    if (t->wait != NULL)
        bp_pglisten_start(t->wait->listen);
}

/* ---------------------------------------------------------------------------------------------
 * The module: one waiting list per loop thread. Listed in server.c after the pool (so disposed
 * before it).
 */

static int wait_init(bp_api_thread_t *t, char *err, size_t errlen)
{
    struct bp_write_wait *wait = calloc(1, sizeof(*wait));
    if (wait == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    wait->t = t;
    h2o_linklist_init_anchor(&wait->polling);
    h2o_timeout_init(t->loop, &wait->tick, POLL_MS);
    h2o_timeout_init(t->loop, &wait->slow_tick, POLL_LISTENING_MS);
    wait->tick_entry.cb = on_tick;
    char channel[BP_PG_CHANNEL_LEN];
    bp_pg_offsets_channel(t->api->cfg->group_id, t->api->cfg->topic, channel, sizeof(channel));
    wait->listen = bp_pglisten_new(t->loop, t->api->cfg->pg_dsn, channel, on_notify, on_listen_state, wait, err,
                                   errlen);
    if (wait->listen == NULL) {
        h2o_timeout_dispose(t->loop, &wait->tick);
        h2o_timeout_dispose(t->loop, &wait->slow_tick);
        free(wait);
        return -1;
    }
    for (int i = 0; i < WAIT__COUNT; i++) {
        char labels[48];
        snprintf(labels, sizeof(labels), "outcome=\"%s\"", outcome_labels[i]);
        wait->outcomes[i] = bp_metrics_counter(t->api->metrics, "bp_write_wait_total",
                                               "POSTs with ?wait= by how the wait ended.", labels);
    }
    char labels[32];
    snprintf(labels, sizeof(labels), "thread=\"%d\"", t->index);
    wait->waiting = bp_metrics_gauge(t->api->metrics, "bp_write_waiting",
                                     "POSTs of this thread waiting for the workers (?wait=).", labels);
    bp_gauge_set(wait->waiting, 0);
    wait->listening = bp_metrics_gauge(t->api->metrics, "bp_write_wait_listening",
                                       "1 while this thread's LISTEN connection hears the workers' commits "
                                       "(?wait= is then woken at once; else it polls).",
                                       labels);
    bp_gauge_set(wait->listening, 0);
    t->wait = wait;
    return 0;
}

static void wait_dispose(bp_api_thread_t *t)
{
    struct bp_write_wait *wait = t->wait;
    if (wait == NULL)
        return;
    /* the loop no longer runs: requests still listed cannot be answered; detach them */
    while (!h2o_linklist_is_empty(&wait->polling)) {
        waiter_t *w = H2O_STRUCT_FROM_MEMBER(waiter_t, link, wait->polling.next);
        h2o_linklist_unlink(&w->link);
        w->wait = NULL;
        w->state = W_DONE;
        stop_counting(w);
    }
    if (wait->poll != NULL)
        bp_pgpool_abandon(wait->poll);
    if (h2o_timeout_is_linked(&wait->tick_entry))
        h2o_timeout_unlink(&wait->tick_entry);
    bp_pglisten_free(wait->listen);
    h2o_timeout_dispose(t->loop, &wait->tick);
    h2o_timeout_dispose(t->loop, &wait->slow_tick);
    free(wait);
    t->wait = NULL;
}

const bp_api_module_t bp_write_wait_module = {"write-wait", wait_init, wait_dispose};
