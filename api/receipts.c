/* receipts.c - GET /api/v1/receipts/{token}/: what became of one accepted message (docs/RECEIPTS.md).
 * One statement through the pool reads the group's position on the partition and the message's
 * dead-letter record (both written by the workers' same transaction); the broker's end of the
 * partition comes from the watermarks cache, refreshed at once when the token is beyond it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bp_log.h"
#include "bp_token.h"
#include "http.h"
#include "pgreq.h"
#include "query.h"
#include "read.h"
#include "watermarks.h"

/* A receipt beyond the cached end looks for a fresh round every BP_RECEIPT_TICK_MS (t->receipt_tick,
 * server.h), this many times (4 s: a round takes a metadata and a watermark call). */
#define END_CHECK_TICKS 80

/* The group's position on the partition ($3), its receipt horizon, and the record of the message at
 * offset $4 if it was dead-lettered. Always one row.
 * With the batch id of a version-2 token ($5, '' for version 1), for a message the group has applied
 * (and not dead-lettered), also what became of its batch, in the same snapshot as the position: whether
 * the batch is there, whether objects of this message are still in it - through objects_batch_id_idx
 * (batch_id, id): only the batch's own objects are read, and EXISTS stops at the first that matches -
 * and only when none is, the newest version among its objects (the same index, one pass over the
 * batch). The batches table has no source offset, so the objects are the evidence. Measured with 1M
 * objects in 2,000 batches of 500: 0.2 ms for a current batch, 1.2 ms for a superseded one. */
static const char receipt_sql[] =
    "SELECT o.next_offset, " BP_SQL_ISO8601("o.updated_at") ", h.recorded_from,"
    " d.reason, d.sqlstate, d.dlq_topic, d.dlq_partition, d.dlq_offset, d.batch_id, d.request_id,"
    " d.traceparent, " BP_SQL_ISO8601("d.dead_at") ","
    " b.batch_exists, b.ours, n.src_partition, n.src_offset"
    " FROM (SELECT 1) AS one"
    " LEFT JOIN ingest_offsets o ON o.group_id = $1 AND o.topic = $2 AND o.partition = $3::int"
    " LEFT JOIN receipt_horizons h ON h.group_id = $1 AND h.topic = $2 AND h.partition = $3::int"
    " LEFT JOIN dead_letters d ON d.group_id = $1 AND d.topic = $2 AND d.partition = $3::int"
    " AND d.\"offset\" = $4::bigint"
    " LEFT JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM batches x WHERE x.batch_id = $5) AS batch_exists,"
    "   EXISTS (SELECT 1 FROM objects x WHERE x.batch_id = $5 AND x.src_partition = $3::int"
    "           AND x.src_offset = $4::bigint) AS ours"
    "   WHERE $5 <> '' AND o.next_offset > $4::bigint AND d.reason IS NULL) b ON true"
    " LEFT JOIN LATERAL (SELECT x.src_partition, x.src_offset FROM objects x"
    "   WHERE b.batch_exists AND NOT b.ours AND x.batch_id = $5"
    "   ORDER BY x.src_ts DESC, x.src_partition DESC, x.src_offset DESC LIMIT 1) n ON true";

/* One receipt request, in the request's pool (h2o_mem_alloc_shared: its dispose stops the timer). */
typedef struct receipt {
    bp_api_thread_t *t;
    h2o_req_t *req;
    const char *token;
    bp_token_t tok;
    bp_token_batch_t batch; /* the batch id of a version-2 token (len 0: version 1) */
    long long next;         /* the group's next offset on the partition; -1 without a row */
    const char *moved_at;   /* when that position last moved (pool copy), or NULL */
    uint64_t round;         /* the watermarks round the end check waits for (bp_watermarks_kick) */
    int ticks;
    int counted;            /* holds one t->inflight while the end check waits */
    h2o_timeout_entry_t entry; /* in t->receipt_tick (a timeout of the thread: one of the request's own
                                * could not be disposed from its own callback) */
} receipt_t;

static void stop_timer(receipt_t *r)
{
    if (h2o_timeout_is_linked(&r->entry))
        h2o_timeout_unlink(&r->entry);
    if (r->counted) {
        r->counted = 0;
        r->t->inflight--;
    }
}

static void on_receipt_dispose(void *mem)
{
    stop_timer(mem);
}

/* The members every receipt has. */
static json_t *receipt_body(const receipt_t *r, const char *state)
{
    const bp_config_t *cfg = r->t->api->cfg;
    return json_pack("{s:s, s:s, s:s, s:i, s:I, s:s}", "token", r->token, "state", state, "topic", cfg->topic,
                     "partition", (int)r->tok.partition, "offset", (json_int_t)r->tok.offset, "group_id",
                     cfg->group_id);
}

static int answer(receipt_t *r, json_t *body)
{
    stop_timer(r);
    if (body == NULL)
        return bp_http_problem(r->req, 500, "Internal Server Error", "out of memory", NULL);
    return bp_http_send_json(r->req, 200, NULL, body);
}

static int answer_accepted(receipt_t *r, int64_t low, int64_t high)
{
    json_t *b = receipt_body(r, "accepted");
    long long from = r->next >= 0 ? r->next : low;
    if (b != NULL) {
        /* lag: messages of the partition the group has still to apply; ahead: those before this one */
        json_object_set_new(b, "lag", json_integer(high > from ? (json_int_t)(high - from) : 0));
        json_object_set_new(b, "ahead", json_integer(r->tok.offset > from ? (json_int_t)(r->tok.offset - from) : 0));
        json_object_set_new(b, "high_watermark", json_integer((json_int_t)high));
        json_object_set_new(b, "next_offset", r->next >= 0 ? json_integer(r->next) : json_null());
    }
    return answer(r, b);
}

static int answer_beyond_end(receipt_t *r, int known_partition)
{
    stop_timer(r);
    char detail[256];
    if (known_partition)
        snprintf(detail, sizeof(detail), "no message at offset %lld of partition %d: the partition ends before it",
                 (long long)r->tok.offset, (int)r->tok.partition);
    else
        snprintf(detail, sizeof(detail), "the topic has no partition %d", (int)r->tok.partition);
    return bp_http_problem(r->req, 404, "Not Found", detail, NULL);
}

static int answer_cannot_tell(receipt_t *r)
{
    stop_timer(r);
    bp_http_add_header(r->req, "retry-after", "2");
    return bp_http_problem(r->req, 503, "Service Unavailable",
                           "the group has not reached this message and the broker cannot be asked now whether "
                           "the partition has it; retry later",
                           NULL);
}

/* The end check: decide with what the cache holds; 1 when answered, 0 to wait for the fresh round.
 * final: the wait is over (its bound, or the server stops). */
static int decide_pending(receipt_t *r, int final)
{
    int64_t low, high;
    uint64_t round;
    int known = bp_watermarks_partition(r->t->api->watermarks, r->tok.partition, &low, &high, &round);
    if (known == 1 && r->tok.offset < high) {
        answer_accepted(r, low, high);
        return 1;
    }
    if (round < r->round && !final)
        return 0; /* the cache predates the check: the message may be newer than it */
    if (round < r->round || known == -1) { /* no fresh round in time: a 404 could be false */
        answer_cannot_tell(r);
        return 1;
    }
    answer_beyond_end(r, known == 1);
    return 1;
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    receipt_t *r = H2O_STRUCT_FROM_MEMBER(receipt_t, entry, entry);
    int final = ++r->ticks >= END_CHECK_TICKS || *r->t->api->stop;
    if (!decide_pending(r, final))
        h2o_timeout_link(r->t->loop, &r->t->receipt_tick, &r->entry);
}

/* Not applied yet: in the topic (accepted), or not there at all. */
static void pending(receipt_t *r)
{
    int64_t low, high;
    uint64_t round;
    if (bp_watermarks_partition(r->t->api->watermarks, r->tok.partition, &low, &high, &round) == 1 &&
        r->tok.offset < high) {
        answer_accepted(r, low, high);
        return;
    }
    /* beyond the cached end: ask the broker again before saying 404 (the cache may be older than the
     * message); the loop never waits, a timer looks for the fresh round */
    r->round = bp_watermarks_kick(r->t->api->watermarks);
    r->entry.cb = on_tick;
    r->counted = 1;
    r->t->inflight++;
    h2o_timeout_link(r->t->loop, &r->t->receipt_tick, &r->entry);
}

static void set_text(json_t *o, const char *name, const PGresult *res, int col)
{
    json_object_set_new(o, name, PQgetisnull(res, 0, col) ? json_null() : json_string(PQgetvalue(res, 0, col)));
}

static int answer_dead(receipt_t *r, const PGresult *res)
{
    json_t *b = receipt_body(r, "dead_lettered");
    json_t *d = json_object();
    if (b == NULL || d == NULL) {
        json_decref(d);
        json_decref(b);
        return answer(r, NULL);
    }
    set_text(d, "reason", res, 3);
    set_text(d, "sqlstate", res, 4);
    set_text(d, "topic", res, 5);
    long part = strtol(PQgetvalue(res, 0, 6), NULL, 10);
    long long off = strtoll(PQgetvalue(res, 0, 7), NULL, 10);
    json_object_set_new(d, "partition", json_integer(part));
    json_object_set_new(d, "offset", json_integer(off));
    set_text(d, "at", res, 11);
    char replay[96];
    snprintf(replay, sizeof(replay), "batchpipe dlq replay %ld:%lld", part, off);
    json_object_set_new(d, "replay", json_string(replay));
    json_object_set_new(b, "dead_letter", d);
    set_text(b, "batch_id", res, 8);
    if (!PQgetisnull(res, 0, 8)) {
        const char *url = bp_read_batch_url(r->req, PQgetvalue(res, 0, 8), (size_t)PQgetlength(res, 0, 8));
        json_object_set_new(b, "batch_url", json_string(url));
    }
    set_text(b, "request_id", res, 9);
    set_text(b, "traceparent", res, 10);
    return answer(r, b);
}

/* What became of the applied message's batch (receipt_sql's last four columns), for a version-2
 * token: batch_id, batch_url (null once the batch is gone) and batch_state, one of
 *   current     the batch holds objects of this message
 *   superseded  it holds none, and another message of the batch wrote its newest objects: superseded_by
 *               names it, a later offset of the partition (or, if the batch's partition changed
 *               with the topic's partition count, the newest version on another partition)
 *   changed     it holds none, nor any of a later message (this message's objects were deleted or
 *               moved to another batch since)
 *   deleted     the batch is gone: deleted after this message */
static void add_batch(const receipt_t *r, json_t *b, const PGresult *res)
{
    json_object_set_new(b, "batch_id", json_stringn(r->batch.id, r->batch.len));
    if (PQgetisnull(res, 0, 12) || strcmp(PQgetvalue(res, 0, 12), "t") != 0) {
        json_object_set_new(b, "batch_url", json_null());
        json_object_set_new(b, "batch_state", json_string("deleted"));
        return;
    }
    json_object_set_new(b, "batch_url", json_string(bp_read_batch_url(r->req, r->batch.id, r->batch.len)));
    if (strcmp(PQgetvalue(res, 0, 13), "t") == 0) {
        json_object_set_new(b, "batch_state", json_string("current"));
        return;
    }
    long part = PQgetisnull(res, 0, 14) ? -1 : strtol(PQgetvalue(res, 0, 14), NULL, 10);
    long long off = PQgetisnull(res, 0, 15) ? -1 : strtoll(PQgetvalue(res, 0, 15), NULL, 10);
    if (part < 0 || (part == r->tok.partition && off <= r->tok.offset)) {
        json_object_set_new(b, "batch_state", json_string("changed"));
        return;
    }
    json_object_set_new(b, "batch_state", json_string("superseded"));
    char token[BP_TOKEN_MAX];
    bp_token_format(token, sizeof(token), r->t->api->cfg->topic, (int32_t)part, off, r->batch.id,
                    r->batch.len);
    json_t *by = json_pack("{s:i, s:I}", "partition", (int)part, "offset", (json_int_t)off);
    if (by != NULL)
        json_object_set_new(by, "receipt_url",
                            json_sprintf("%s/api/v1/receipts/%s/",
                                         bp_http_base_url(r->req, r->t->api->cfg->public_url), token));
    json_object_set_new(b, "superseded_by", by);
}

static void on_row(h2o_req_t *req, void *ctx, bp_err_t err, const PGresult *res, const char *msg)
{
    receipt_t *r = ctx;
    if (err != BP_OK) {
        bp_pgreq_problem(req, err, msg);
        return;
    }
    if (!PQgetisnull(res, 0, 3)) {
        answer_dead(r, res);
        return;
    }
    r->next = PQgetisnull(res, 0, 0) ? -1 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    if (!PQgetisnull(res, 0, 1))
        r->moved_at = h2o_strdup(&req->pool, PQgetvalue(res, 0, 1), SIZE_MAX).base;
    if (r->next <= r->tok.offset) {
        pending(r);
        return;
    }
    long long horizon = PQgetisnull(res, 0, 2) ? 0 : strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    if (r->tok.offset < horizon) {
        /* passed before dead letters were recorded, or its record was purged: not necessarily applied */
        json_t *b = receipt_body(r, "unknown");
        if (b != NULL)
            json_object_set_new(b, "detail",
                                json_string("the group has passed this message, but whether it was applied or "
                                            "dead-lettered is no longer recorded (older than the records, "
                                            "BP_RECEIPT_RETENTION_DAYS)"));
        answer(r, b);
        return;
    }
    json_t *b = receipt_body(r, "applied");
    if (b != NULL) {
        /* the exact moment is not recorded per message: the position's last move is an upper bound */
        json_object_set_new(b, "applied_by", r->moved_at != NULL ? json_string(r->moved_at) : json_null());
        json_object_set_new(b, "next_offset", json_integer(r->next));
        if (r->batch.len > 0)
            add_batch(r, b, res);
    }
    answer(r, b);
}

int bp_receipt_get(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    const bp_config_t *cfg = t->api->cfg;
    receipt_t *r = h2o_mem_alloc_shared(&req->pool, sizeof(*r), on_receipt_dispose);
    memset(r, 0, sizeof(*r));
    r->t = t;
    r->req = req;
    r->next = -1;
    const char *why = NULL;
    if (bp_token_parse(id, idlen, cfg->topic, &r->tok, &r->batch, &why) != 0) {
        char detail[256];
        snprintf(detail, sizeof(detail), "the receipt token is not valid: %s", why);
        return bp_http_problem(req, 400, "Bad Request", detail, NULL);
    }
    r->token = id;
    char part[16], off[24];
    snprintf(part, sizeof(part), "%d", (int)r->tok.partition);
    snprintf(off, sizeof(off), "%lld", (long long)r->tok.offset);
    const char *params[] = {cfg->group_id, cfg->topic, part, off, r->batch.id};
    bp_err_t err = bp_pgreq_query_prepared(req, receipt_sql, 5, params, on_row, r);
    if (err != BP_OK)
        return bp_pgreq_problem(req, err, bp_err_str(err));
    return 0;
}
