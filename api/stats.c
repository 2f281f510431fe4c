/* stats.c - GET /api/v1/stats/. Three sources, none of which blocks the loop: this process's counters
 * (the /metrics registry), the watermarks cache (a background thread, watermarks.c), and one cheap
 * statement through the thread's PostgreSQL pool: the workers' next offsets per partition and the
 * cumulative row counts of `objects` from pg_stat_user_tables (never a count(*) of the table).
 * A source that is away is reported in the body ("status": "down"), not as a failed request. */
#include "stats.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "bp_log.h"
#include "http.h"
#include "pgreq.h"
#include "watermarks.h"

/* Row 0: the applied offsets as a JSON array of [partition, next_offset] (the workers' own group,
 * BP_GROUP_ID, as in write_ack.c: another group's replay says nothing of this one), then objects' inserted, updated, deleted and live rows (NULL before the table's first
 * statistics). pg_stat_user_tables is cumulative and flushed by each backend about once a second. */
static const char stats_sql[] =
    "SELECT (SELECT coalesce(json_agg(json_build_array(o.partition, o.next_offset) ORDER BY o.partition),"
    " '[]')::text FROM (SELECT partition, next_offset FROM ingest_offsets"
    " WHERE topic = $1 AND group_id = $2) o),"
    " s.n_tup_ins, s.n_tup_upd, s.n_tup_del, s.n_live_tup"
    " FROM (SELECT 1) AS one LEFT JOIN pg_stat_user_tables s ON s.relid = to_regclass('objects')";

bp_metric_t *bp_stats_objects_accepted(bp_metrics_t *metrics)
{
    return bp_metrics_counter(metrics, "bp_write_objects_accepted_total",
                              "Objects in the batches the broker acknowledged (answered 202 or 201).", NULL);
}

static json_int_t counter(bp_metrics_t *metrics, const char *name, const char *help)
{
    return (json_int_t)bp_metric_value(bp_metrics_counter(metrics, name, help, NULL));
}

static json_t *number_or_null(const PGresult *res, int col)
{
    if (PQgetisnull(res, 0, col))
        return json_null();
    return json_integer((json_int_t)strtoll(PQgetvalue(res, 0, col), NULL, 10));
}

/* The applied next offset of partition p in the [[partition, next_offset], ...] array, or -1. */
static json_int_t applied_of(json_t *offsets, json_int_t p)
{
    size_t i;
    json_t *pair;
    json_array_foreach(offsets, i, pair)
    {
        if (json_integer_value(json_array_get(pair, 0)) == p)
            return json_integer_value(json_array_get(pair, 1));
    }
    return -1;
}

/* The topic's partitions: watermarks, applied offset and lag. offsets is NULL when PostgreSQL could
 * not be asked. Sets *lag_total (-1 when unknown). */
static json_t *partitions_json(const bp_watermarks_topic_t *wm, json_t *offsets, json_int_t *lag_total)
{
    json_t *list = json_array();
    *lag_total = wm->n > 0 && offsets != NULL ? 0 : -1;
    for (size_t i = 0; i < wm->n; i++) {
        const bp_watermark_t *w = &wm->parts[i];
        json_int_t applied = offsets != NULL ? applied_of(offsets, w->partition) : -1;
        json_t *p = json_object();
        json_object_set_new(p, "partition", json_integer(w->partition));
        json_object_set_new(p, "low", w->low >= 0 ? json_integer(w->low) : json_null());
        json_object_set_new(p, "high", w->high >= 0 ? json_integer(w->high) : json_null());
        json_object_set_new(p, "applied", applied >= 0 ? json_integer(applied) : json_null());
        /* what the workers still have to apply: from where they stand, or from the oldest message
         * still in the topic when they have applied nothing yet */
        json_int_t lag = -1;
        if (w->high >= 0 && offsets != NULL) {
            json_int_t from = applied > w->low ? applied : w->low;
            lag = w->high > from ? w->high - from : 0;
        }
        json_object_set_new(p, "lag", lag >= 0 ? json_integer(lag) : json_null());
        if (lag < 0)
            *lag_total = -1;
        else if (*lag_total >= 0)
            *lag_total += lag;
        json_array_append_new(list, p);
    }
    /* partitions the workers know but the broker did not tell (no watermarks yet) */
    if (wm->n == 0 && offsets != NULL) {
        size_t i;
        json_t *pair;
        json_array_foreach(offsets, i, pair)
        {
            json_array_append_new(list,
                                  json_pack("{s:O, s:n, s:n, s:O, s:n}", "partition", json_array_get(pair, 0),
                                            "low", "high", "applied", json_array_get(pair, 1), "lag"));
        }
    }
    return list;
}

static json_t *dead_letters_json(const bp_config_t *cfg, const bp_watermarks_topic_t *dlq)
{
    json_int_t count = dlq->n > 0 ? 0 : -1;
    for (size_t i = 0; i < dlq->n && count >= 0; i++) {
        const bp_watermark_t *w = &dlq->parts[i];
        count = w->high >= 0 && w->low >= 0 ? count + (w->high - w->low) : -1;
    }
    json_t *d = json_object();
    json_object_set_new(d, "topic", json_string(cfg->dlq_topic));
    json_object_set_new(d, "count", count >= 0 ? json_integer(count) : json_null());
    return d;
}

static const char *pg_detail(bp_err_t err)
{
    switch (err) {
    case BP_ERR_PG_DOWN:
        return "unreachable";
    case BP_ERR_QUEUE_FULL:
        return "too many queries are waiting";
    case BP_ERR_TIMEOUT:
        return "no answer in time";
    default:
        return "the statistics query failed; see the server log";
    }
}

/* "applied" and "database" into body from the statistics query (res when err is BP_OK). Returns the
 * applied offsets ([[partition, next_offset], ...], owned by the caller), or NULL without a result. */
static json_t *add_applied(json_t *body, h2o_req_t *req, bp_err_t err, const PGresult *res, const char *msg)
{
    static const char *const columns[] = {"objects_inserted", "objects_updated", "objects_deleted",
                                          "objects_live"};
    json_t *database = json_object(), *applied = json_object(), *offsets = NULL;
    if (err == BP_OK) {
        json_error_t jerr;
        offsets = json_loads(PQgetvalue(res, 0, 0), 0, &jerr);
        if (!json_is_array(offsets)) {
            json_decref(offsets);
            offsets = json_array();
        }
        json_object_set_new(database, "status", json_string("up"));
    } else {
        if (err != BP_ERR_PG_DOWN && err != BP_ERR_QUEUE_FULL && err != BP_ERR_TIMEOUT)
            bp_log_warn("stats query failed (request %s): %s: %s", bp_http_request_id(req), bp_err_str(err),
                        msg != NULL ? msg : "");
        json_object_set_new(database, "status", json_string("down"));
        json_object_set_new(database, "detail", json_string(pg_detail(err)));
    }
    for (int c = 0; c < 4; c++)
        json_object_set_new(applied, columns[c], err == BP_OK ? number_or_null(res, c + 1) : json_null());
    json_object_set_new(body, "applied", applied);
    json_object_set_new(body, "database", database);
    return offsets;
}

/* The "kafka" member: the watermarks cache's state, age and trouble. */
static json_t *kafka_json(const bp_watermarks_snapshot_t *wm, int have_wm)
{
    json_t *kafka = json_object();
    const char *state = !have_wm                  ? "down"
                        : wm->state == BP_WM_UP   ? "up"
                        : wm->state == BP_WM_DOWN ? "down"
                                                  : "starting";
    json_object_set_new(kafka, "status", json_string(state));
    json_object_set_new(kafka, "age_ms", have_wm && wm->age_ms >= 0 ? json_integer(wm->age_ms) : json_null());
    const char *detail = !have_wm             ? "the watermarks are not available"
                         : wm->error[0]       ? wm->error
                         : wm->topic.error[0] ? wm->topic.error
                         : wm->dlq.error[0]   ? wm->dlq.error
                                              : NULL;
    if (detail != NULL)
        json_object_set_new(kafka, "detail", json_string(detail));
    return kafka;
}

static void answer(h2o_req_t *req, bp_err_t err, const PGresult *res, const char *msg)
{
    bp_api_t *api = bp_thread_of(req)->api;
    const bp_config_t *cfg = api->cfg;
    struct timeval now;
    gettimeofday(&now, NULL);

    json_t *body = json_object();
    json_object_set_new(body, "timestamp_ms",
                        json_integer((json_int_t)now.tv_sec * 1000 + now.tv_usec / 1000));
    json_t *accepted = json_object();
    json_object_set_new(accepted, "batches",
                        json_integer(counter(api->metrics, "bp_produce_accepted_total",
                                             "Messages the broker acknowledged (late acks included).")));
    json_object_set_new(accepted, "objects",
                        json_integer((json_int_t)bp_metric_value(api->objects_accepted)));
    json_object_set_new(body, "accepted", accepted);
    json_t *offsets = add_applied(body, req, err, res, msg);

    bp_watermarks_snapshot_t wm;
    int have_wm = api->watermarks != NULL && bp_watermarks_snapshot(api->watermarks, &wm) == 0;
    if (!have_wm)
        memset(&wm, 0, sizeof(wm));
    json_object_set_new(body, "kafka", kafka_json(&wm, have_wm));
    json_int_t lag_total;
    json_t *topic = json_object();
    json_object_set_new(topic, "name", json_string(cfg->topic));
    json_object_set_new(topic, "partitions", partitions_json(&wm.topic, offsets, &lag_total));
    json_object_set_new(topic, "lag", lag_total >= 0 ? json_integer(lag_total) : json_null());
    json_object_set_new(body, "topic", topic);
    json_object_set_new(body, "dead_letters", dead_letters_json(cfg, &wm.dlq));

    bp_watermarks_snapshot_free(&wm);
    json_decref(offsets);
    bp_http_add_header(req, "cache-control", "no-store");
    bp_http_send_json(req, 200, NULL, body);
}

static void on_pg(h2o_req_t *req, void *ctx, bp_err_t err, const PGresult *res, const char *msg)
{
    (void)ctx;
    if (err == BP_OK && (PQntuples(res) != 1 || PQnfields(res) != 5)) {
        err = BP_ERR_PG_DATA;
        msg = "unexpected shape of the statistics result";
    }
    answer(req, err, err == BP_OK ? res : NULL, msg);
}

static int get_stats(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen)
{
    (void)id, (void)idlen;
    const char *params[2] = {t->api->cfg->topic, t->api->cfg->group_id};
    bp_err_t err = BP_ERR_PG_DOWN;
    if (t->pgpool != NULL)
        err = bp_pgreq_query(req, stats_sql, 2, params, on_pg, NULL);
    if (err != BP_OK)
        answer(req, err, NULL, NULL);
    return 0;
}

const bp_route_t bp_stats_routes[] = {
    {"GET", "/api/v1/stats/", get_stats},
    {NULL, NULL, NULL},
};
