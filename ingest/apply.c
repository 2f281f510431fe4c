/* apply.c - writes batches into PostgreSQL: one transaction for a group of messages, written by one
 * set-based statement (or one per message, each under its savepoint, when PostgreSQL refuses one), the
 * partitions' next offsets locked and advanced in the same transaction. Blocking libpq on a connection
 * of its own; it reconnects by itself. */
#include "apply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "bp_clock.h"
#include "bp_json_scan.h"
#include "bp_log.h"
#include "bp_pg.h"
#include "bp_utf8.h"
#include "count_terms.h"
#include "count_txn.h"

#define DLQ_WAIT_MS 15000        /* longer than the dead-letter producer's message timeout */
#define PG_CONNECT_TIMEOUT_S "5" /* a server that does not answer is as good as down */
#define PG_LOCK_TIMEOUT "30s"    /* a worker must not wait on a lock for ever while the group waits */

#define OID_BOOL 16
#define OID_INT8 20
#define OID_INT4 23
#define OID_TEXT 25
#define OID_INT4_ARRAY 1007
#define OID_INT8_ARRAY 1016
#define OID_TEXT_ARRAY 1009

struct bp_apply {
    const bp_config_t *cfg;
    PGconn *conn;
    bp_pg_fault_t fault; /* of the last failure in this attempt (BP_PG_FAULT_NONE: none, or not PostgreSQL's) */
    int isolating;       /* this attempt writes each message alone and dead-letters any that fails alone */
    bp_count_txn_t *counts; /* what the transaction counts itself (cfg->count_in_worker, migration 008) */
};

/* Make sure the partition's row exists, without touching an existing one (workers lock it next). */
static const char SQL_OFFSETS_CREATE[] =
    "INSERT INTO ingest_offsets (group_id, topic, partition, next_offset) "
    "SELECT $1, $2, p, 0 FROM unnest($3::int[]) AS p ORDER BY p "
    "ON CONFLICT (group_id, topic, partition) DO NOTHING";

/* Lock the rows of the partitions in this transaction (in partition order: no deadlock between
 * workers) and read where each one stands. */
static const char SQL_OFFSETS_LOCK[] = "SELECT partition, next_offset, last_ts FROM ingest_offsets "
                                       "WHERE group_id = $1 AND topic = $2 AND partition = ANY($3::int[]) "
                                       "ORDER BY partition FOR UPDATE";

static const char SQL_OFFSETS_SET[] =
    "UPDATE ingest_offsets AS o SET next_offset = v.next_offset, last_ts = v.last_ts, updated_at = now() "
    "FROM unnest($3::int[], $4::bigint[], $5::bigint[]) AS v(partition, next_offset, last_ts) "
    "WHERE o.group_id = $1 AND o.topic = $2 AND o.partition = v.partition "
    "RETURNING pg_notify($6, o.partition || ':' || o.next_offset)"; /* ?wait= wakes at COMMIT */

static const char SQL_OFFSETS_LOAD[] = "SELECT partition, next_offset FROM ingest_offsets "
                                       "WHERE group_id = $1 AND topic = $2 AND partition = ANY($3::int[])";

/* Messages in one statement: the values are ONE parameter (a text[]), expanded in SQL, with each
 * message's version (ts, partition, offset) beside it (bp_apply_txn computes it: ts_eff, the greatest
 * timestamp on the partition so far, so that a later offset always wins within a partition). When
 * the same object_id comes more than once (in one message or several) the newest version wins, then
 * the last occurrence in its message. Against what is stored:
 *  - a message whose version is below its batch's tombstone (the batch was deleted after it: it is
 *    late, or replayed) is "dead": its batch row is not recreated, and each of its objects counts as
 *    deleted as of the message's version (the object went into that batch, and the batch was deleted
 *    later; an older version of it elsewhere goes, a newer one stays);
 *  - otherwise the batch row is created or touched (and its older tombstone removed), and each object
 *    is upserted when its version is greater than both the stored row's and its tombstone's (a newer
 *    write removes the tombstone). An existing object takes the new data and batch only then.
 * Deletes and upserts both keep the greatest version, so a replay of the topic ends in the same state.
 * Each message's text is parsed into jsonb once: OFFSET 0 keeps PostgreSQL from pulling the cast up
 * into every expression that names d (it parsed each message three times, a fifth of the statement's
 * time: BENCHMARKS.md). The tombstone checks are joins inside the one statement, never a round trip
 * per object. Objects are written in object_id order so that concurrent writers lock rows in the same
 * order.
 * It returns the objects it INSERTED (not those it updated, skipped as older or left to a tombstone) as
 * (message ordinal in $1, object ordinal in its "objects"), both 1-based: the worker computes their
 * counter terms itself (count_txn); xmax is 0 only on a row version that no one updated or locked, i.e.
 * a row this INSERT created (ON CONFLICT DO UPDATE leaves our xid there). */
static const char SQL_APPLY[] =
    "WITH msg AS MATERIALIZED (\n"
    "  SELECT m.d, m.d->>'batch_id' AS batch_id, u.ts, u.part, u.off, u.mi,\n"
    "         bt.batch_id IS NULL OR (bt.src_ts, bt.src_partition, bt.src_offset) < (u.ts, u.part, u.off) AS live\n"
    "  FROM unnest($1::text[], $2::bigint[], $3::int[], $4::bigint[]) WITH ORDINALITY AS u(v, ts, part, off, mi)\n"
    "  CROSS JOIN LATERAL (SELECT u.v::jsonb AS d OFFSET 0) m\n"
    "  LEFT JOIN batch_tombstones bt ON bt.batch_id = m.d->>'batch_id'),\n"
    "bat AS (\n"
    "  INSERT INTO batches AS b (batch_id) SELECT DISTINCT batch_id FROM msg WHERE live ORDER BY 1\n"
    "  ON CONFLICT (batch_id) DO UPDATE SET updated_at = now()),\n"
    "bat_back AS (\n"
    "  DELETE FROM batch_tombstones t USING msg m WHERE m.live AND t.batch_id = m.batch_id),\n"
    "src AS (\n"
    "  SELECT DISTINCT ON (e.o->>'object_id') e.o->>'object_id' AS object_id, m.batch_id,\n"
    "         e.o->'data' AS data, m.ts, m.part, m.off, m.live, m.mi, e.n\n"
    "  FROM msg m CROSS JOIN LATERAL jsonb_array_elements(m.d->'objects') WITH ORDINALITY AS e(o, n)\n"
    "  ORDER BY e.o->>'object_id', m.ts DESC, m.part DESC, m.off DESC, e.n DESC),\n"
    "cur AS MATERIALIZED (\n"
    "  SELECT s.*, ot.object_id IS NOT NULL AS tombed,\n"
    "         ot.object_id IS NULL OR (ot.src_ts, ot.src_partition, ot.src_offset) < (s.ts, s.part, s.off) AS beats\n"
    "  FROM src s LEFT JOIN object_tombstones ot ON ot.object_id = s.object_id),\n"
    "up AS (\n"
    "  INSERT INTO objects AS t (object_id, batch_id, data, src_ts, src_partition, src_offset)\n"
    "  SELECT object_id, batch_id, data, ts, part, off FROM cur WHERE live AND beats ORDER BY object_id\n"
    "  ON CONFLICT (object_id) DO UPDATE SET\n"
    "    batch_id = EXCLUDED.batch_id, data = EXCLUDED.data, src_ts = EXCLUDED.src_ts,\n"
    "    src_partition = EXCLUDED.src_partition, src_offset = EXCLUDED.src_offset,\n"
    "    updated_at = CASE WHEN t.data IS DISTINCT FROM EXCLUDED.data OR t.batch_id <> EXCLUDED.batch_id\n"
    "                      THEN now() ELSE t.updated_at END\n"
    "  WHERE (t.src_ts, t.src_partition, t.src_offset)\n"
    "      < (EXCLUDED.src_ts, EXCLUDED.src_partition, EXCLUDED.src_offset)\n"
    "  RETURNING t.object_id, t.xmax::text = '0' AS inserted),\n"
    "tomb_gone AS (\n"
    "  DELETE FROM object_tombstones t USING cur c\n"
    "  WHERE c.live AND c.tombed AND c.beats AND t.object_id = c.object_id),\n"
    "dead_gone AS (\n"
    "  DELETE FROM objects t USING cur c\n"
    "  WHERE NOT c.live AND t.object_id = c.object_id\n"
    "    AND (t.src_ts, t.src_partition, t.src_offset) < (c.ts, c.part, c.off)),\n"
    "dead_tomb AS (\n"
    "  INSERT INTO object_tombstones AS t (object_id, src_ts, src_partition, src_offset)\n"
    "  SELECT object_id, ts, part, off FROM cur WHERE NOT live ORDER BY object_id\n"
    "  ON CONFLICT (object_id) DO UPDATE SET src_ts = EXCLUDED.src_ts, src_partition = EXCLUDED.src_partition,\n"
    "    src_offset = EXCLUDED.src_offset, deleted_at = now()\n"
    "  WHERE (t.src_ts, t.src_partition, t.src_offset)\n"
    "      < (EXCLUDED.src_ts, EXCLUDED.src_partition, EXCLUDED.src_offset))\n"
    "SELECT c.mi, c.n FROM up JOIN cur c ON c.object_id = up.object_id WHERE up.inserted";

/* The counter terms of the objects the transaction inserted (migration 008): added to this backend's
 * slot if $1 is still the set of sparse keys; else nothing is added and the current set comes back. */
static const char SQL_COUNT_ADD[] = "SELECT applied, array_to_json(current)::text "
                                    "FROM bp_count_add_terms($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])";
static const char SQL_SPARSE_LOAD[] = "SELECT coalesce(json_agg(key), '[]')::text FROM count_keys";

/* A dead letter's record for its receipt, in the transaction that moves the offset past the message
 * (migration 009). A row already there (the same offset dead-lettered again after a reset of the
 * group's offsets) takes the latest letter. One statement per letter: letters are rare. */
static const char SQL_DEAD_LETTER[] =
    "INSERT INTO dead_letters AS d (group_id, topic, partition, \"offset\", reason, sqlstate, dlq_topic,"
    " dlq_partition, dlq_offset, batch_id, request_id, traceparent)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    " ON CONFLICT (group_id, topic, partition, \"offset\") DO UPDATE SET reason = EXCLUDED.reason,"
    " sqlstate = EXCLUDED.sqlstate, dlq_topic = EXCLUDED.dlq_topic, dlq_partition = EXCLUDED.dlq_partition,"
    " dlq_offset = EXCLUDED.dlq_offset, batch_id = EXCLUDED.batch_id, request_id = EXCLUDED.request_id,"
    " traceparent = EXCLUDED.traceparent, dead_at = now()";

/* Forget the records older than $3 days, and raise each partition's horizon past the offsets forgotten
 * (below it a receipt says the outcome is no longer known rather than "applied"). */
static const char SQL_DEAD_LETTERS_PURGE[] =
    "WITH gone AS (DELETE FROM dead_letters WHERE group_id = $1 AND topic = $2"
    " AND dead_at < now() - make_interval(days => $3::int) RETURNING partition, \"offset\")"
    " INSERT INTO receipt_horizons AS h (group_id, topic, partition, recorded_from)"
    " SELECT $1, $2, partition, max(\"offset\") + 1 FROM gone GROUP BY partition ORDER BY partition"
    " ON CONFLICT (group_id, topic, partition) DO UPDATE"
    " SET recorded_from = greatest(h.recorded_from, EXCLUDED.recorded_from)";

/* Delete messages: the rule lives in SQL functions (migration 006) that the API's DELETE uses too. */
static const char SQL_DELETE_OBJECT[] = "SELECT bp_delete_object($1, $2, $3, $4)";
static const char SQL_DELETE_BATCH[] = "SELECT bp_delete_batch($1, $2, $3, $4, $5)";

static const struct {
    const char *name;
    const char *sql;
    int nparams;
    Oid types[12];
} statements[] = {
    {"bp_offsets_create", SQL_OFFSETS_CREATE, 3, {OID_TEXT, OID_TEXT, OID_INT4_ARRAY}},
    {"bp_offsets_lock", SQL_OFFSETS_LOCK, 3, {OID_TEXT, OID_TEXT, OID_INT4_ARRAY}},
    {"bp_offsets_set", SQL_OFFSETS_SET, 6,
     {OID_TEXT, OID_TEXT, OID_INT4_ARRAY, OID_INT8_ARRAY, OID_INT8_ARRAY, OID_TEXT}},
    {"bp_offsets_load", SQL_OFFSETS_LOAD, 3, {OID_TEXT, OID_TEXT, OID_INT4_ARRAY}},
    {"bp_apply", SQL_APPLY, 4, {OID_TEXT_ARRAY, OID_INT8_ARRAY, OID_INT4_ARRAY, OID_INT8_ARRAY}},
    {"bp_delete_object", SQL_DELETE_OBJECT, 4, {OID_TEXT, OID_INT8, OID_INT4, OID_INT8}},
    {"bp_delete_batch", SQL_DELETE_BATCH, 5, {OID_TEXT, OID_BOOL, OID_INT8, OID_INT4, OID_INT8}},
    {"bp_dead_letter", SQL_DEAD_LETTER, 12,
     {OID_TEXT, OID_TEXT, OID_INT4, OID_INT8, OID_TEXT, OID_TEXT, OID_TEXT, OID_INT4, OID_INT8, OID_TEXT, OID_TEXT,
      OID_TEXT}},
    {"bp_dead_letters_purge", SQL_DEAD_LETTERS_PURGE, 3, {OID_TEXT, OID_TEXT, OID_INT4}},
};

bp_apply_t *bp_apply_new(const bp_config_t *cfg)
{
    bp_apply_t *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->cfg = cfg;
    if ((a->counts = bp_count_txn_new()) == NULL) {
        bp_apply_free(a);
        return NULL;
    }
    return a;
}

void bp_apply_free(bp_apply_t *a)
{
    if (a == NULL)
        return;
    PQfinish(a->conn);
    bp_count_txn_free(a->counts);
    free(a);
}

static void drop_conn(bp_apply_t *a)
{
    PQfinish(a->conn);
    a->conn = NULL;
}

/* Classify a failed result; a lost connection is dropped so that the next attempt reconnects. */
static bp_err_t failed(bp_apply_t *a, const PGresult *res, const char *what, char *err, size_t errlen)
{
    bp_err_t e = bp_pg_classify(a->conn, res);
    a->fault = bp_pg_fault(a->conn, res);
    bp_pg_result_error(err, errlen, what, a->conn, res);
    if (e == BP_ERR_PG_DOWN)
        drop_conn(a);
    return e;
}

static bp_err_t exec_simple(bp_apply_t *a, const char *sql, char *err, size_t errlen)
{
    PGresult *res = PQexec(a->conn, sql);
    bp_err_t e = BP_OK;
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        e = failed(a, res, sql, err, errlen);
    PQclear(res);
    return e;
}

/* Read count_keys into a->counts: the sparse keys the worker computes terms with until told otherwise. */
static bp_err_t sparse_load(bp_apply_t *a, char *err, size_t errlen)
{
    PGresult *res = PQexec(a->conn, SQL_SPARSE_LOAD);
    bp_err_t e = BP_OK;
    int rc;
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        e = failed(a, res, "reading count_keys", err, errlen);
    } else if ((rc = bp_count_txn_set_sparse(a->counts, PQgetvalue(res, 0, 0))) != BP_COUNT_OK) {
        snprintf(err, errlen, "reading count_keys: %s", rc == BP_COUNT_NOMEM ? "out of memory" : "not a JSON array");
        e = rc == BP_COUNT_NOMEM ? BP_ERR_NOMEM : BP_ERR_PG_TRANSIENT;
    }
    PQclear(res);
    return e;
}

static bp_err_t ensure_conn(bp_apply_t *a, char *err, size_t errlen)
{
    if (a->conn != NULL && PQstatus(a->conn) == CONNECTION_OK) {
        PGTransactionStatusType ts = PQtransactionStatus(a->conn);
        if (ts == PQTRANS_IDLE)
            return BP_OK;
        if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR) {
            PQclear(PQexec(a->conn, "ROLLBACK"));
            if (PQstatus(a->conn) == CONNECTION_OK && PQtransactionStatus(a->conn) == PQTRANS_IDLE)
                return BP_OK;
        }
    }
    drop_conn(a);
    /* our defaults first: anything the operator's connection string sets wins over them. Keepalives
     * find a server that vanished without closing the connection in about a minute. */
    const char *keys[] = {"connect_timeout", "keepalives_idle", "keepalives_interval", "keepalives_count",
                          "application_name", "client_encoding", "dbname", NULL};
    const char *vals[] = {PG_CONNECT_TIMEOUT_S, "30", "10", "3", "batchpipe-ingest", "UTF8", a->cfg->pg_dsn,
                          NULL};
    a->conn = PQconnectdbParams(keys, vals, 1);
    if (a->conn == NULL || PQstatus(a->conn) != CONNECTION_OK) {
        bp_pg_result_error(err, errlen, "PostgreSQL connect", a->conn, NULL);
        drop_conn(a);
        a->fault = BP_PG_FAULT_CONNECTION;
        return BP_ERR_PG_DOWN;
    }
    bp_err_t e = exec_simple(a, "SET lock_timeout = '" PG_LOCK_TIMEOUT "'", err, errlen);
    if (e == BP_OK) {
        /* a statement that runs away (a trigger, a lock-free wait, a huge message) fails instead of
         * holding the partitions: it then counts as an attempt like any other failure */
        char ms[32];
        snprintf(ms, sizeof(ms), "%lld", a->cfg->pg_statement_timeout_ms);
        const char *params[1] = {ms};
        PGresult *res = PQexecParams(a->conn, "SELECT set_config('statement_timeout', $1, false)", 1, NULL,
                                     params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            e = failed(a, res, "setting statement_timeout", err, errlen);
        PQclear(res);
    }
    for (size_t i = 0; e == BP_OK && i < sizeof(statements) / sizeof(statements[0]); i++) {
        PGresult *res = PQprepare(a->conn, statements[i].name, statements[i].sql, statements[i].nparams,
                                  statements[i].types);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            e = failed(a, res, statements[i].name, err, errlen);
        PQclear(res);
    }
    if (e == BP_OK && a->cfg->count_in_worker) {
        const Oid types[5] = {OID_TEXT_ARRAY, OID_TEXT_ARRAY, OID_TEXT_ARRAY, OID_TEXT_ARRAY, OID_INT8_ARRAY};
        PGresult *res = PQprepare(a->conn, "bp_count_add", SQL_COUNT_ADD, 5, types);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            e = failed(a, res, "bp_count_add (is migration 008 applied?)", err, errlen);
        PQclear(res);
        if (e == BP_OK)
            e = sparse_load(a, err, errlen);
    }
    if (e != BP_OK) {
        drop_conn(a);
        return e;
    }
    bp_log_info("connected to PostgreSQL");
    return BP_OK;
}

bp_err_t bp_apply_load_offsets(bp_apply_t *a, rd_kafka_topic_partition_list_t *parts, char *err,
                               size_t errlen)
{
    if (parts->cnt == 0)
        return BP_OK;
    bp_err_t e = ensure_conn(a, err, errlen);
    if (e != BP_OK)
        return e;
    int64_t *ids = malloc((size_t)parts->cnt * sizeof(*ids));
    char *arr = NULL;
    PGresult *res = NULL;
    if (ids == NULL) {
        snprintf(err, errlen, "out of memory");
        return BP_ERR_NOMEM;
    }
    for (int i = 0; i < parts->cnt; i++)
        ids[i] = parts->elems[i].partition;
    if ((arr = bp_pg_int_array_text(ids, (size_t)parts->cnt)) == NULL) {
        snprintf(err, errlen, "out of memory");
        e = BP_ERR_NOMEM;
        goto cleanup;
    }
    const char *params[3] = {a->cfg->group_id, a->cfg->topic, arr};
    res = PQexecPrepared(a->conn, "bp_offsets_load", 3, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        e = failed(a, res, "reading ingest_offsets", err, errlen);
        goto cleanup;
    }
    for (int i = 0; i < parts->cnt; i++)
        parts->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
    for (int r = 0; r < PQntuples(res); r++) {
        int32_t p = (int32_t)strtol(PQgetvalue(res, r, 0), NULL, 10);
        int64_t next = strtoll(PQgetvalue(res, r, 1), NULL, 10);
        for (int i = 0; i < parts->cnt; i++)
            if (parts->elems[i].partition == p)
                parts->elems[i].offset = next;
    }
cleanup:
    PQclear(res);
    free(arr);
    free(ids);
    return e;
}

/* The partitions of one transaction, sorted, with where each stands. */
typedef struct txn_part {
    int32_t partition;
    int64_t locked_next; /* next_offset read under the lock */
    int64_t next;        /* after the messages of this attempt */
    int64_t last_ts;     /* the greatest message timestamp up to next (ingest_offsets.last_ts) */
} txn_part_t;

static int cmp_part(const void *x, const void *y)
{
    int32_t a = ((const txn_part_t *)x)->partition, b = ((const txn_part_t *)y)->partition;
    return (a > b) - (a < b);
}

static txn_part_t *find_part(txn_part_t *parts, size_t n, int32_t partition)
{
    txn_part_t key = {.partition = partition};
    return bsearch(&key, parts, n, sizeof(*parts), cmp_part);
}

/* Lock the rows of parts[0..n) and fill locked_next/next. */
static bp_err_t lock_offsets(bp_apply_t *a, txn_part_t *parts, size_t n, char *err, size_t errlen)
{
    int64_t *ids = malloc(n * sizeof(*ids));
    char *arr = NULL;
    PGresult *res = NULL;
    bp_err_t e = BP_OK;
    if (ids == NULL)
        goto nomem;
    for (size_t i = 0; i < n; i++)
        ids[i] = parts[i].partition;
    if ((arr = bp_pg_int_array_text(ids, n)) == NULL)
        goto nomem;
    const char *params[3] = {a->cfg->group_id, a->cfg->topic, arr};
    res = PQexecPrepared(a->conn, "bp_offsets_create", 3, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        e = failed(a, res, "creating ingest_offsets rows", err, errlen);
        goto cleanup;
    }
    PQclear(res);
    res = PQexecPrepared(a->conn, "bp_offsets_lock", 3, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        e = failed(a, res, "locking ingest_offsets", err, errlen);
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++)
        parts[i].locked_next = parts[i].next = parts[i].last_ts = 0;
    for (int r = 0; r < PQntuples(res); r++) {
        txn_part_t *tp = find_part(parts, n, (int32_t)strtol(PQgetvalue(res, r, 0), NULL, 10));
        if (tp != NULL) {
            tp->locked_next = tp->next = strtoll(PQgetvalue(res, r, 1), NULL, 10);
            tp->last_ts = strtoll(PQgetvalue(res, r, 2), NULL, 10);
        }
    }
    goto cleanup;
nomem:
    snprintf(err, errlen, "out of memory");
    e = BP_ERR_NOMEM;
cleanup:
    PQclear(res);
    free(arr);
    free(ids);
    return e;
}

/* Advance the rows of the partitions that moved (next_offset and last_ts). */
static bp_err_t set_offsets(bp_apply_t *a, const txn_part_t *parts, size_t n, char *err, size_t errlen)
{
    int64_t *ids = malloc(n * sizeof(*ids));
    int64_t *nexts = malloc(n * sizeof(*nexts));
    int64_t *lasts = malloc(n * sizeof(*lasts));
    char *ids_arr = NULL, *next_arr = NULL, *last_arr = NULL;
    bp_err_t e = BP_OK;
    size_t moved = 0;
    if (ids == NULL || nexts == NULL || lasts == NULL)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        if (parts[i].next > parts[i].locked_next) {
            ids[moved] = parts[i].partition;
            lasts[moved] = parts[i].last_ts;
            nexts[moved++] = parts[i].next;
        }
    }
    if (moved > 0) {
        if ((ids_arr = bp_pg_int_array_text(ids, moved)) == NULL || (next_arr = bp_pg_int_array_text(nexts, moved)) == NULL ||
            (last_arr = bp_pg_int_array_text(lasts, moved)) == NULL)
            goto nomem;
        char channel[BP_PG_CHANNEL_LEN];
        bp_pg_offsets_channel(a->cfg->group_id, a->cfg->topic, channel, sizeof(channel));
        const char *params[6] = {a->cfg->group_id, a->cfg->topic, ids_arr, next_arr, last_arr, channel};
        PGresult *res = PQexecPrepared(a->conn, "bp_offsets_set", 6, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            e = failed(a, res, "advancing ingest_offsets", err, errlen);
        PQclear(res);
    }
    goto cleanup;
nomem:
    snprintf(err, errlen, "out of memory");
    e = BP_ERR_NOMEM;
cleanup:
    free(ids_arr);
    free(next_arr);
    free(last_arr);
    free(ids);
    free(nexts);
    free(lasts);
    return e;
}

/* A failure that belongs to the messages of the statement, not to the database or the transaction:
 * their data (bp_pg.c says which SQLSTATEs), or, once the worker isolates messages after repeated
 * failures, anything that is neither a lost connection nor an operator's problem nor a concurrent
 * transaction. NULL if not, else the prefix of the reason. */
static const char *message_fault(const bp_apply_t *a, const PGresult *res)
{
    bp_pg_fault_t f = bp_pg_fault(a->conn, res);
    if (f == BP_PG_FAULT_DATA)
        return "PostgreSQL refused the data";
    if (f == BP_PG_FAULT_OTHER && a->isolating)
        return "PostgreSQL failed on this message alone, after its transaction failed repeatedly";
    return NULL;
}

/* The values of set[0..k) as a text[] in PostgreSQL's binary array format: one copy of each value,
 * no escaping. Returns a malloc'd buffer and its length in *len, or NULL without memory. */
static char *text_array_binary(bp_ingest_msg_t *const *set, size_t k, int *len)
{
    const char **v = malloc((k ? k : 1) * sizeof(*v));
    size_t *lens = malloc((k ? k : 1) * sizeof(*lens));
    char *buf = NULL;
    if (v != NULL && lens != NULL) {
        for (size_t i = 0; i < k; i++) {
            v[i] = set[i]->rkm->payload;
            lens[i] = set[i]->rkm->len;
        }
        buf = bp_pg_text_array_binary(v, lens, k, len);
    }
    free(v);
    free(lens);
    return buf;
}

/* ---- counting in the worker (migration 008, docs/QUERIES.md#counting) ---- */

/* The rows of a bp_apply result (message ordinal, object ordinal) for set[0..k): their terms go into
 * the transaction's count (bp_count_txn_add says what else may come back). */
static int count_statement(bp_apply_t *a, bp_ingest_msg_t *const *set, size_t k, const PGresult *res)
{
    size_t rows = (size_t)PQntuples(res);
    int64_t *pairs = malloc((2 * rows + 1) * sizeof(*pairs));
    if (pairs == NULL)
        return BP_COUNT_NOMEM;
    for (size_t r = 0; r < rows; r++) {
        pairs[2 * r] = strtoll(PQgetvalue(res, (int)r, 0), NULL, 10);
        pairs[2 * r + 1] = strtoll(PQgetvalue(res, (int)r, 1), NULL, 10);
    }
    int rc = bp_count_txn_add(a->counts, set, k, pairs, rows);
    free(pairs);
    return rc;
}

/* Send the transaction's terms to bp_count_add_terms. *applied: whether they were added; if not, a
 * key became sparse meanwhile: the set came back and the terms were computed again with it. */
static bp_err_t count_send(bp_apply_t *a, int *applied, char *err, size_t errlen)
{
    bp_count_params_t p;
    bp_err_t e = BP_OK;
    PGresult *res = NULL;
    int rc = bp_count_txn_params(a->counts, &p);
    *applied = 0;
    if (rc != BP_COUNT_OK)
        goto counting;
    res = PQexecPrepared(a->conn, "bp_count_add", 5, (const char *const *)p.values, p.lengths, p.formats, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        e = failed(a, res, "adding the counter terms", err, errlen);
        goto cleanup;
    }
    *applied = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    if (*applied || (rc = bp_count_txn_set_sparse(a->counts, PQgetvalue(res, 0, 1))) == BP_COUNT_OK)
        goto cleanup;
counting:
    snprintf(err, errlen, "computing counter terms: %s", rc == BP_COUNT_NOMEM ? "out of memory" : "unexpected data");
    e = rc == BP_COUNT_NOMEM ? BP_ERR_NOMEM : BP_ERR_PG_TRANSIENT;
cleanup:
    PQclear(res);
    bp_count_params_free(&p);
    return e;
}

/* Add the terms of every object the transaction inserted to the counters, in one statement. If a key
 * became sparse since the terms were computed, they are computed again with the keys read then and
 * sent again (the transaction holds its lock on objects by now: the set cannot change again before it
 * commits, but a few tries are allowed rather than trusting that). */
static bp_err_t count_txn(bp_apply_t *a, char *err, size_t errlen)
{
    if (!a->cfg->count_in_worker || bp_count_txn_objects(a->counts) == 0)
        return BP_OK;
    for (int attempt = 0; attempt < 3; attempt++) {
        int applied;
        bp_err_t e = count_send(a, &applied, err, errlen);
        if (e != BP_OK || applied)
            return e;
        bp_log_info("the sparse keys changed during the transaction: counted its %zu objects again",
                    bp_count_txn_objects(a->counts));
    }
    snprintf(err, errlen, "adding the counter terms: the sparse keys kept changing");
    return BP_ERR_PG_TRANSIENT;
}

typedef enum { SET_APPLIED, SET_REFUSED, SET_FAILED } set_result_t;

/* Why PostgreSQL refused a message: the reason line into why, its SQLSTATE into state (6 bytes; the
 * receipt and the dead_letters row show it apart from the text). */
static void refused_why(const bp_apply_t *a, const PGresult *res, const char *fault, char *why, size_t whylen,
                        char *state)
{
    bp_pg_result_error(why, whylen, fault, a->conn, res);
    const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    snprintf(state, 6, "%s", code != NULL && strlen(code) == 5 ? code : "");
}

/* One delete message with the rule's SQL function, as of the message's version. A batch delete
 * without cascade that finds objects does nothing, and says so in the log. Same results as apply_set. */
static set_result_t apply_delete(bp_apply_t *a, const bp_ingest_msg_t *m, char *why, size_t whylen, char *state,
                                 bp_err_t *e, char *err, size_t errlen)
{
    char ts[24], part[16], off[24];
    snprintf(ts, sizeof(ts), "%lld", (long long)m->v_ts);
    snprintf(part, sizeof(part), "%d", (int)m->v_partition);
    snprintf(off, sizeof(off), "%lld", (long long)m->v_offset);
    PGresult *res;
    if (m->del_object_id != NULL) {
        const char *params[4] = {m->del_object_id, ts, part, off};
        res = PQexecPrepared(a->conn, "bp_delete_object", 4, params, NULL, NULL, 0);
    } else {
        const char *params[5] = {m->del_batch_id, m->del_cascade ? "true" : "false", ts, part, off};
        res = PQexecPrepared(a->conn, "bp_delete_batch", 5, params, NULL, NULL, 0);
    }
    set_result_t r = SET_FAILED;
    const char *fault;
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        r = SET_APPLIED;
        if (m->del_object_id == NULL && strcmp(PQgetvalue(res, 0, 0), "not empty") == 0) {
            json_t *f = bp_ingest_msg_fields(m, a->cfg->topic);
            bp_log_fields(BP_LOG_INFO, f, "delete of batch %s without cascade at offset %lld did nothing: the "
                          "batch has objects", m->del_batch_id, (long long)m->offset);
            json_decref(f);
        }
    } else if ((fault = message_fault(a, res)) != NULL) {
        refused_why(a, res, fault, why, whylen, state);
        r = SET_REFUSED;
    } else {
        *e = failed(a, res, "applying a delete", err, errlen);
    }
    PQclear(res);
    return r;
}

/* Write the valid messages set[0..k) with one statement (a delete message comes alone: k = 1).
 * SET_APPLIED; SET_REFUSED when PostgreSQL refuses the data (why in why; the transaction is then in
 * error: roll back to a savepoint); SET_FAILED for anything else (*e and err set). */
static set_result_t apply_set(bp_apply_t *a, bp_ingest_msg_t *const *set, size_t k, char *why, size_t whylen,
                              char *state, bp_err_t *e, char *err, size_t errlen)
{
    if (k == 1 && set[0]->kind == BP_MSG_DELETE)
        return apply_delete(a, set[0], why, whylen, state, e, err, errlen);
    int64_t *nums = malloc(3 * k * sizeof(*nums));
    char *ts = NULL, *parts = NULL, *offs = NULL, *values = NULL;
    int values_len = 0;
    set_result_t r = SET_FAILED;
    if (nums == NULL)
        goto nomem;
    for (size_t i = 0; i < k; i++) {
        nums[i] = set[i]->v_ts;
        nums[k + i] = set[i]->v_partition;
        nums[2 * k + i] = set[i]->v_offset;
    }
    if ((ts = bp_pg_int_array_text(nums, k)) == NULL || (parts = bp_pg_int_array_text(nums + k, k)) == NULL ||
        (offs = bp_pg_int_array_text(nums + 2 * k, k)) == NULL ||
        (values = text_array_binary(set, k, &values_len)) == NULL)
        goto nomem;
    const char *params[4] = {values, ts, parts, offs};
    int lengths[4] = {values_len, 0, 0, 0};
    int formats[4] = {1, 0, 0, 0};
    PGresult *res = PQexecPrepared(a->conn, "bp_apply", 4, params, lengths, formats, 0);
    const char *fault = NULL;
    int rc;
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        r = SET_APPLIED;
        if (a->cfg->count_in_worker && (rc = count_statement(a, set, k, res)) != BP_COUNT_OK) {
            if (rc == BP_COUNT_OVERFLOW) {
                /* what 007's trigger did with it: SQLSTATE 22003 on the statement */
                snprintf(why, whylen, "PostgreSQL refused the data: value overflows numeric format (a string "
                         "value that reads as a number, counted by the typed rule)");
                snprintf(state, 6, "22003");
                r = SET_REFUSED;
            } else {
                snprintf(err, errlen, "computing counter terms: %s",
                         rc == BP_COUNT_NOMEM ? "out of memory" : "unexpected data");
                *e = rc == BP_COUNT_NOMEM ? BP_ERR_NOMEM : BP_ERR_PG_TRANSIENT;
                r = SET_FAILED;
            }
        }
    } else if ((fault = message_fault(a, res)) != NULL) {
        refused_why(a, res, fault, why, whylen, state);
        r = SET_REFUSED;
    } else {
        *e = failed(a, res, "applying batches", err, errlen);
    }
    PQclear(res);
    goto cleanup;
nomem:
    snprintf(err, errlen, "out of memory");
    *e = BP_ERR_NOMEM;
cleanup:
    free(nums);
    free(ts);
    free(parts);
    free(offs);
    free(values);
    return r;
}

/* One message under its own savepoint: applied, or refused for its data (then m->pg_reason says why
 * and only its savepoint is rolled back). BP_OK in both cases; another error aborts the transaction. */
static bp_err_t apply_one(bp_apply_t *a, bp_ingest_msg_t *m, char *err, size_t errlen)
{
    bp_err_t e = exec_simple(a, "SAVEPOINT bp_msg", err, errlen);
    if (e != BP_OK)
        return e;
    char why[1024], state[6];
    switch (apply_set(a, &m, 1, why, sizeof(why), state, &e, err, errlen)) {
    case SET_APPLIED:
        m->outcome = BP_MSG_APPLIED;
        return exec_simple(a, "RELEASE SAVEPOINT bp_msg", err, errlen);
    case SET_REFUSED:
        free(m->pg_reason);
        if ((m->pg_reason = strdup(why)) == NULL) {
            snprintf(err, errlen, "out of memory");
            return BP_ERR_NOMEM;
        }
        memcpy(m->sqlstate, state, sizeof(m->sqlstate));
        m->outcome = BP_MSG_DEAD;
        return exec_simple(a, "ROLLBACK TO SAVEPOINT bp_msg; RELEASE SAVEPOINT bp_msg", err, errlen);
    case SET_FAILED:
        break;
    }
    return e;
}

/* Write the valid messages set[0..k) (in order). The fast path writes them all with one statement; if
 * PostgreSQL refuses one of them, that statement is undone and each message is written under its own
 * savepoint, so that only the refused ones are dead-lettered. An isolating attempt goes one by one at
 * once. Returns BP_OK or a transaction-level error. */
static bp_err_t apply_valid(bp_apply_t *a, bp_ingest_msg_t **set, size_t k, char *err, size_t errlen)
{
    bp_err_t e = BP_OK;
    if (k > 1 && !a->isolating) {
        char why[1024], state[6];
        if ((e = exec_simple(a, "SAVEPOINT bp_all", err, errlen)) != BP_OK)
            return e;
        switch (apply_set(a, set, k, why, sizeof(why), state, &e, err, errlen)) {
        case SET_APPLIED:
            for (size_t i = 0; i < k; i++)
                set[i]->outcome = BP_MSG_APPLIED;
            return exec_simple(a, "RELEASE SAVEPOINT bp_all", err, errlen);
        case SET_REFUSED:
            bp_log_info("PostgreSQL refused one of %zu messages (%s): writing them one by one", k, why);
            e = exec_simple(a, "ROLLBACK TO SAVEPOINT bp_all; RELEASE SAVEPOINT bp_all", err, errlen);
            if (e != BP_OK)
                return e;
            break;
        case SET_FAILED:
            return e;
        }
    }
    for (size_t i = 0; i < k && e == BP_OK; i++)
        e = apply_one(a, set[i], err, errlen);
    return e;
}

/* Write set[0..k) in order: each run of batches with one statement (apply_valid), each delete message
 * on its own between them, so that a partition's deletes and writes keep their order in the log. */
static bp_err_t apply_in_runs(bp_apply_t *a, bp_ingest_msg_t **set, size_t k, char *err, size_t errlen)
{
    bp_err_t e = BP_OK;
    for (size_t i = 0; i < k && e == BP_OK;) {
        size_t run = 1;
        if (set[i]->kind == BP_MSG_BATCH)
            while (i + run < k && set[i + run]->kind == BP_MSG_BATCH)
                run++;
        e = apply_valid(a, set + i, run, err, errlen);
        i += run;
    }
    return e;
}

/* COMMIT, and make sure it was one: in a failed transaction PostgreSQL answers COMMIT with ROLLBACK. */
static bp_err_t commit(bp_apply_t *a, char *err, size_t errlen)
{
    PGresult *res = PQexec(a->conn, "COMMIT");
    bp_err_t e = BP_OK;
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        e = failed(a, res, "COMMIT", err, errlen);
    else if (strcmp(PQcmdStatus(res), "COMMIT") != 0) {
        snprintf(err, errlen, "COMMIT: the transaction was rolled back");
        e = BP_ERR_PG_TRANSIENT;
    }
    PQclear(res);
    return e;
}

/* Log what a committed transaction did to the messages that are worth a line. Called right after the
 * COMMIT that made them so. Each applied message gets an info line with its topic, partition, offset
 * and request id (BP_LOG_APPLIED): an operator follows a batch from the POST to PostgreSQL, and the
 * crash test checks that no (partition, offset) is ever applied twice. */
static void log_outcomes(const bp_apply_t *a, const bp_ingest_msg_t *msgs, size_t n, long long took_ms)
{
    bp_ingest_msg_tally_t t = bp_ingest_msg_tally(msgs, n);
    int log_applied = a->cfg->log_applied && bp_log_enabled(BP_LOG_INFO);
    for (size_t i = 0; i < n; i++) {
        const bp_ingest_msg_t *m = &msgs[i];
        if (m->outcome == BP_MSG_APPLIED) {
            if (log_applied) {
                json_t *f = bp_ingest_msg_fields(m, a->cfg->topic);
                bp_log_fields(BP_LOG_INFO, f, "applied a batch of %zu objects", m->objects);
                json_decref(f);
            }
        } else if (m->outcome == BP_MSG_DEAD) {
            json_t *f = bp_ingest_msg_fields(m, a->cfg->topic);
            const char *why = m->invalid ? m->invalid : m->pg_reason ? m->pg_reason : "?";
            if (f != NULL)
                json_object_set_new(f, "dlq_reason", json_string(why));
            bp_log_fields(BP_LOG_WARN, f, "dead-lettered offset %lld of %s [%d] to %s: %s",
                          (long long)m->offset, a->cfg->topic, (int)m->partition, a->cfg->dlq_topic, why);
            json_decref(f);
        }
    }
    if (t.skipped > 0)
        bp_log_info("skipped %zu messages already applied by this group (offset below next_offset)",
                    t.skipped);
    bp_log_debug("committed %zu messages: %zu applied (%zu objects), %zu skipped, %zu dead-lettered, "
                 "in %lld ms",
                 n, t.applied, t.objects, t.skipped, t.dead_invalid + t.dead_refused, took_ms);
}

#ifdef BP_TEST_SPLIT_OFFSETS
/* TEST ONLY, compiled in with -DBP_TEST_SPLIT_OFFSETS=ON and never in a real build: the broken design
 * that commits the data and then, in a transaction of its own, the offsets. A kill in the window
 * between the two makes the next owner apply the same messages again; the crash test must see it
 * (docs/RELIABILITY.md). */
#define SPLIT_WINDOW_US 100000

static bp_err_t split_commit_data(bp_apply_t *a, const bp_ingest_msg_t *msgs, size_t n, long long started,
                                  char *err, size_t errlen)
{
    bp_err_t e = commit(a, err, errlen);
    if (e != BP_OK)
        return e;
    log_outcomes(a, msgs, n, bp_clock_ms() - started);
    usleep(SPLIT_WINDOW_US);
    return exec_simple(a, "BEGIN", err, errlen);
}
#endif

/* Record the dead letter of m, which the broker acked at where, for its receipt. */
static bp_err_t record_dead_letter(bp_apply_t *a, const bp_ingest_msg_t *m, bp_dlq_where_t where, char *err,
                                   size_t errlen)
{
    char part[16], off[24], dpart[16], doff[24];
    snprintf(part, sizeof(part), "%d", (int)m->partition);
    snprintf(off, sizeof(off), "%lld", (long long)m->offset);
    snprintf(dpart, sizeof(dpart), "%d", (int)where.partition);
    snprintf(doff, sizeof(doff), "%lld", (long long)where.offset);
    /* the batch is known for a valid message only: its key is then its batch_id (message.c checks it) */
    char *key = NULL;
    const char *batch_id = NULL;
    if (m->invalid == NULL && m->kind == BP_MSG_DELETE) {
        batch_id = m->del_batch_id;
    } else if (m->invalid == NULL && m->rkm->key != NULL) {
        if ((key = strndup(m->rkm->key, m->rkm->key_len)) == NULL) {
            snprintf(err, errlen, "out of memory");
            return BP_ERR_NOMEM;
        }
        batch_id = key;
    }
    /* a text PostgreSQL refuses would fail every retry of the transaction: the reason is the one field
     * that may quote what a producer sent, so it is made valid UTF-8 here whatever its source */
    char *reason = strdup(m->invalid ? m->invalid : m->pg_reason ? m->pg_reason : "?");
    if (reason == NULL) {
        free(key);
        snprintf(err, errlen, "out of memory");
        return BP_ERR_NOMEM;
    }
    bp_utf8_sanitize(reason);
    const char *params[12] = {a->cfg->group_id, a->cfg->topic, part, off, reason,
                              m->sqlstate[0] ? m->sqlstate : NULL, a->cfg->dlq_topic, dpart, doff, batch_id,
                              m->request_id[0] ? m->request_id : NULL, m->traceparent[0] ? m->traceparent : NULL};
    PGresult *res = PQexecPrepared(a->conn, "bp_dead_letter", 12, params, NULL, NULL, 0);
    bp_err_t e = BP_OK;
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        e = failed(a, res, "recording a dead letter", err, errlen);
    PQclear(res);
    free(reason);
    free(key);
    return e;
}

bp_err_t bp_apply_purge_dead_letters(bp_apply_t *a, long long days, long long *purged, char *err, size_t errlen)
{
    *purged = 0;
    bp_err_t e = ensure_conn(a, err, errlen);
    if (e != BP_OK)
        return e;
    char d[24];
    snprintf(d, sizeof(d), "%lld", days);
    const char *params[3] = {a->cfg->group_id, a->cfg->topic, d};
    PGresult *res = PQexecPrepared(a->conn, "bp_dead_letters_purge", 3, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        e = failed(a, res, "purging dead-letter records", err, errlen);
    else
        *purged = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return e;
}

bp_pg_fault_t bp_apply_last_fault(const bp_apply_t *a)
{
    return a->fault;
}

/* The version m is applied with, from where its partition stands (tp, advanced past m): ts_eff =
 * the greatest of m's timestamp and every timestamp before it on the partition. Within a partition a
 * later offset therefore always has a greater version, whatever the publishers' clocks said; across
 * partitions the timestamps decide (LogAppendTime on our topics: the broker's clock). Every message
 * that is not skipped moves the clamp, dead letters too: it depends on the log alone, so a replay
 * computes the same versions. */
static void set_version(bp_ingest_msg_t *m, txn_part_t *tp)
{
    if (m->ts_ms > tp->last_ts)
        tp->last_ts = m->ts_ms;
    /* a replayed dead letter is applied as of its original place in the log (never over newer writes
     * or deletes); its own timestamp still moves the partition's clamp above */
    m->v_ts = m->has_origin ? m->origin_ts : tp->last_ts;
    m->v_partition = m->has_origin ? m->origin_partition : m->partition;
    m->v_offset = m->has_origin ? m->origin_offset : m->offset;
}

bp_err_t bp_apply_txn(bp_apply_t *a, bp_dlq_t *dlq, bp_ingest_msg_t *msgs, size_t n, int isolate,
                      bp_part_offset_t *out, size_t *nout, char *err, size_t errlen)
{
    long long started = bp_clock_ms();
    a->fault = BP_PG_FAULT_NONE;
    a->isolating = isolate;
    size_t nparts = 0, ndead = 0;
    *nout = 0;
    txn_part_t *parts = malloc((n ? n : 1) * sizeof(*parts));
    bp_ingest_msg_t **set = malloc((n ? n : 1) * sizeof(*set));
    size_t *letters = malloc((n ? n : 1) * sizeof(*letters)); /* letters[i]: msgs[i]'s, if dead */
    if (parts == NULL || set == NULL || letters == NULL) {
        free(parts);
        free(set);
        free(letters);
        snprintf(err, errlen, "out of memory");
        return BP_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        msgs[i].outcome = BP_MSG_PENDING;
        msgs[i].sqlstate[0] = '\0';
        parts[nparts++].partition = msgs[i].partition;
    }
    qsort(parts, nparts, sizeof(*parts), cmp_part);
    size_t uniq = 0;
    for (size_t i = 0; i < nparts; i++)
        if (uniq == 0 || parts[uniq - 1].partition != parts[i].partition)
            parts[uniq++] = parts[i];
    nparts = uniq;

    bp_err_t e = ensure_conn(a, err, errlen);
    if (e != BP_OK)
        goto done;
    bp_count_txn_begin(a->counts);
    /* with counting in the worker, the INSERT trigger leaves the inserted rows to it (migration 008) */
    if ((e = exec_simple(a, a->cfg->count_in_worker ? "BEGIN; SET LOCAL batchpipe.counted_by = 'worker'" : "BEGIN",
                         err, errlen)) != BP_OK ||
        (e = lock_offsets(a, parts, nparts, err, errlen)) != BP_OK)
        goto fail;
    /* which messages to write: not those below their partition's next_offset (applied before),
     * not the invalid ones (dead letters) */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bp_ingest_msg_t *m = &msgs[i];
        txn_part_t *tp = find_part(parts, nparts, m->partition);
        if (m->offset < tp->next) {
            m->outcome = BP_MSG_SKIPPED;
            continue;
        }
        tp->next = m->offset + 1;
        set_version(m, tp);
        if (m->invalid != NULL)
            m->outcome = BP_MSG_DEAD;
        else
            set[k++] = m;
    }
    if (k > 0 && ((e = apply_in_runs(a, set, k, err, errlen)) != BP_OK || (e = count_txn(a, err, errlen)) != BP_OK))
        goto fail;
    /* dead letters in source order, whatever made them dead */
    for (size_t i = 0; i < n; i++) {
        bp_ingest_msg_t *m = &msgs[i];
        if (m->outcome != BP_MSG_DEAD)
            continue;
        char origin[64];
        snprintf(origin, sizeof(origin), "%lld:%d:%lld", (long long)m->v_ts, (int)m->v_partition,
                 (long long)m->v_offset);
        if ((e = bp_dlq_send(dlq, m->rkm, m->invalid ? m->invalid : m->pg_reason, origin, &letters[i], err,
                             errlen)) != BP_OK)
            goto fail;
        ndead++;
    }
    /* The dead letters must be on the broker before the offset moves past their messages. Their
     * records follow in this transaction, with where each letter went (from its delivery report): the
     * order is letter acked -> record -> offset -> COMMIT. A failure anywhere after the ack rolls the
     * record back with the offset, and the retry sends the letter again (the topic may then hold it
     * twice; the record names the later one): nothing acked is ever without its record, and no
     * record names a letter the broker did not ack. */
    if (ndead > 0 && (e = bp_dlq_wait(dlq, DLQ_WAIT_MS, err, errlen)) != BP_OK)
        goto fail;
    for (size_t i = 0; i < n && ndead > 0; i++)
        if (msgs[i].outcome == BP_MSG_DEAD &&
            (e = record_dead_letter(a, &msgs[i], bp_dlq_letter_where(dlq, letters[i]), err, errlen)) != BP_OK)
            goto fail;
#ifdef BP_TEST_SPLIT_OFFSETS
    if ((e = split_commit_data(a, msgs, n, started, err, errlen)) != BP_OK)
        goto fail;
#endif
    if ((e = set_offsets(a, parts, nparts, err, errlen)) != BP_OK || (e = commit(a, err, errlen)) != BP_OK)
        goto fail;
    for (size_t i = 0; i < nparts; i++) {
        out[i].partition = parts[i].partition;
        out[i].next_offset = parts[i].next;
    }
    *nout = nparts;
    if (ndead > 0)
        bp_dlq_done(dlq);
#ifndef BP_TEST_SPLIT_OFFSETS
    log_outcomes(a, msgs, n, bp_clock_ms() - started);
#endif
    goto done;
fail:
    if (ndead > 0)
        bp_dlq_forget(dlq);
    if (a->conn != NULL && PQstatus(a->conn) == CONNECTION_OK)
        PQclear(PQexec(a->conn, "ROLLBACK"));
    for (size_t i = 0; i < n; i++)
        msgs[i].outcome = BP_MSG_PENDING;
done:
    free(parts);
    free(set);
    free(letters);
    return e;
}
