/* worker.c - the consumer loop of the ingest worker: joins the group with cooperative-sticky
 * assignment, starts each partition where PostgreSQL says, buffers messages into transactions (closed
 * as soon as nothing more is waiting: group commit that adapts to the load) and hands them to the
 * writer (apply.c), retrying transient failures with backoff while it keeps polling. */
#include "worker.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "apply.h"
#include "bp_clock.h"
#include "bp_kafka.h"
#include "bp_log.h"
#include "dlq.h"
#include "message.h"
#include "stats.h"

#define RETRY_BACKOFF_MIN_MS 100
#define SESSION_TIMEOUT_MS "10000" /* a killed worker's partitions move on after this */
#define HEARTBEAT_MS "1000"        /* rebalances reach every member within about a second */
#define AUTO_COMMIT_MS "1000"      /* how stale the group's offsets in Kafka (lag tools) may be */
#define POLL_SLICE_MS 100          /* longest consumer poll, so that stop and deadlines are noticed */
#define PG_CHECK_IDLE_MS 5000      /* an idle worker checks PostgreSQL this often (readiness) */
#define PURGE_EVERY_MS 600000      /* ...and purges dead-letter records past BP_RECEIPT_RETENTION_DAYS */

struct bp_worker {
    const bp_config_t *cfg;
    volatile sig_atomic_t *stop;
    bp_ingest_stats_t *stats; /* borrowed: metrics and readiness for the health port */
    rd_kafka_t *rk;
    bp_apply_t *apply;
    bp_dlq_t *dlq;
    bp_payload_limits_t limits;

    /* the transaction being filled: messages in consumption order (per partition in offset order) */
    bp_ingest_msg_t *buf;
    bp_part_offset_t *done; /* as many entries as buf: the writer's committed offsets */
    size_t n, cap;
    size_t bytes;
    long long first_at; /* when buf[0] arrived */

    uint8_t *owned; /* owned[p]: partition p of the topic is assigned to us */
    size_t nowned;
    int paused;     /* the assignment is paused while a failed transaction waits for its retry */
    int fatal;      /* a fatal error was seen: stop and exit non-zero */
    int closed;     /* the group was left */
    long long stop_at; /* when the stop flag was first seen, or 0 */
    uint64_t rng;
    long long pg_check_at;  /* when an idle worker next checks PostgreSQL */
    int pg_check_failures;  /* PostgreSQL checks failed in a row (at assignment or idle) */
    long long purge_at;     /* when an idle worker next purges old dead-letter records */
};

static long long backoff_ms(bp_worker_t *w, int attempt);

/* True once a stop was asked for; remembers when it was first seen (the shutdown clock starts). */
static int stopping(bp_worker_t *w)
{
    if (*w->stop && w->stop_at == 0) {
        w->stop_at = bp_clock_ms();
        bp_ingest_stats_stopping(w->stats);
        bp_log_info("stopping: finishing the transaction in hand");
    }
    return w->stop_at != 0;
}

/* Until when a stopping worker may keep trying to commit what it holds: half the shutdown budget;
 * the other half is for leaving the group. */
static long long flush_deadline(const bp_worker_t *w)
{
    return w->stop_at + w->cfg->shutdown_timeout_ms / 2;
}

/* ---------------------------------------------------------------------------------------------
 * The buffer.
 */

static void buffer_clear(bp_worker_t *w)
{
    for (size_t i = 0; i < w->n; i++)
        bp_ingest_msg_clear(&w->buf[i]);
    w->n = 0;
    w->bytes = 0;
}

/* Take rkm into the transaction being filled. Returns 0, or -1 without memory (rkm destroyed). */
static int buffer_add(bp_worker_t *w, rd_kafka_message_t *rkm)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64; /* grows to what transactions really hold */
        bp_ingest_msg_t *nb = realloc(w->buf, cap * sizeof(*nb));
        if (nb != NULL)
            w->buf = nb;
        bp_part_offset_t *nd = nb ? realloc(w->done, cap * sizeof(*nd)) : NULL;
        if (nd == NULL) {
            rd_kafka_message_destroy(rkm);
            return -1;
        }
        w->done = nd;
        w->cap = cap;
    }
    size_t len = rkm->len;
    if (bp_ingest_msg_init(&w->buf[w->n], rkm, &w->limits) != BP_OK)
        return -1;
    if (w->n == 0)
        w->first_at = bp_clock_ms();
    w->n++;
    w->bytes += len;
    return 0;
}

static int in_list(const rd_kafka_topic_partition_list_t *parts, int32_t partition)
{
    for (int i = 0; i < parts->cnt; i++)
        if (parts->elems[i].partition == partition)
            return 1;
    return 0;
}

/* Forget buffered messages of partitions that are no longer ours: their new owner applies them. */
static void buffer_drop(bp_worker_t *w, const rd_kafka_topic_partition_list_t *parts)
{
    size_t kept = 0, dropped = 0;
    w->bytes = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (in_list(parts, w->buf[i].partition)) {
            bp_ingest_msg_clear(&w->buf[i]);
            dropped++;
            continue;
        }
        w->buf[kept] = w->buf[i];
        w->bytes += w->buf[kept].rkm->len;
        kept++;
    }
    w->n = kept;
    if (dropped > 0)
        bp_log_info("dropped %zu buffered messages of revoked partitions (not applied; their new owner will)",
                    dropped);
}

/* ---------------------------------------------------------------------------------------------
 * Group membership.
 */

static void set_owned(bp_worker_t *w, const rd_kafka_topic_partition_list_t *parts, uint8_t value)
{
    for (int i = 0; i < parts->cnt; i++) {
        size_t p = (size_t)parts->elems[i].partition;
        if (p >= w->nowned) {
            if (!value)
                continue;
            size_t n = p + 64;
            uint8_t *no = realloc(w->owned, n);
            if (no == NULL)
                continue; /* only costs a Kafka offset commit (lag display) for this partition */
            memset(no + w->nowned, 0, n - w->nowned);
            w->owned = no;
            w->nowned = n;
        }
        w->owned[p] = value;
    }
}

static int is_owned(const bp_worker_t *w, int32_t partition)
{
    return partition >= 0 && (size_t)partition < w->nowned && w->owned[partition];
}

static void log_partitions(const char *what, const rd_kafka_topic_partition_list_t *parts, int with_offsets)
{
    char buf[1024];
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; i < parts->cnt && off < sizeof(buf) - 32; i++) {
        const rd_kafka_topic_partition_t *p = &parts->elems[i];
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%d", i ? "," : "", p->partition);
        if (with_offsets && off < sizeof(buf) - 32) {
            if (p->offset >= 0)
                off += (size_t)snprintf(buf + off, sizeof(buf) - off, "@%lld", (long long)p->offset);
            else
                off += (size_t)snprintf(buf + off, sizeof(buf) - off, "@%s",
                                        p->offset == RD_KAFKA_OFFSET_BEGINNING ? "beginning" : "committed");
        }
    }
    bp_log_info("%s %d partitions of %s: [%s]", what, parts->cnt, parts->cnt ? parts->elems[0].topic : "-",
                buf);
}

/* Record the outcome of a PostgreSQL interaction outside a transaction (readiness) and schedule the
 * next idle check: soon, with backoff, after a failure; PG_CHECK_IDLE_MS after a success. */
static void pg_checked(bp_worker_t *w, bp_err_t e)
{
    bp_ingest_stats_pg(w->stats, e);
    if (e == BP_OK) {
        w->pg_check_failures = 0;
        w->pg_check_at = bp_clock_ms() + PG_CHECK_IDLE_MS;
    } else {
        w->pg_check_at = bp_clock_ms() + backoff_ms(w, w->pg_check_failures);
        if (w->pg_check_failures < 30)
            w->pg_check_failures++;
    }
}

/* While nothing is buffered, read the owned partitions' ingest_offsets rows now and then: /readyz then
 * follows PostgreSQL even without traffic, and each partition's lag starts from the committed truth
 * (also when PostgreSQL could not be read at assignment). A read outside any transaction, so polling
 * the consumer around it is safe. */
static void check_pg_idle(bp_worker_t *w)
{
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(16);
    for (size_t p = 0; p < w->nowned; p++)
        if (w->owned[p])
            rd_kafka_topic_partition_list_add(parts, w->cfg->topic, (int32_t)p);
    if (parts->cnt == 0) { /* nothing to be ready for: no need to bother the database */
        w->pg_check_at = bp_clock_ms() + PG_CHECK_IDLE_MS;
        rd_kafka_topic_partition_list_destroy(parts);
        return;
    }
    char err[1024];
    int failures = w->pg_check_failures;
    bp_err_t e = bp_apply_load_offsets(w->apply, parts, err, sizeof(err));
    if (e == BP_OK) {
        bp_ingest_stats_positions(w->stats, parts);
        if (failures > 0)
            bp_log_info("PostgreSQL answers again");
    } else if (failures == 0) {
        bp_log_warn("PostgreSQL check failed (%s: %s): not ready until it answers", bp_err_str(e), err);
    }
    pg_checked(w, e);
    rd_kafka_topic_partition_list_destroy(parts);
    /* only while idle, between transactions: the purge never delays a batch. Any worker of the group
     * may do it; two at once delete disjoint rows or nothing. */
    if (e == BP_OK && w->cfg->receipt_retention_days > 0 && bp_clock_ms() >= w->purge_at) {
        long long purged = 0;
        w->purge_at = bp_clock_ms() + PURGE_EVERY_MS;
        if (bp_apply_purge_dead_letters(w->apply, w->cfg->receipt_retention_days, &purged, err, sizeof(err)) != BP_OK)
            bp_log_warn("purging dead-letter records failed (%s); trying again later", err);
        else if (purged > 0)
            bp_log_info("purged %lld dead-letter records older than %lld days (BP_RECEIPT_RETENTION_DAYS)",
                        purged, w->cfg->receipt_retention_days);
    }
}

static void assign(bp_worker_t *w, rd_kafka_topic_partition_list_t *parts)
{
    char err[1024];
    bp_err_t e = bp_apply_load_offsets(w->apply, parts, err, sizeof(err));
    if (parts->cnt > 0)
        pg_checked(w, e);
    if (e != BP_OK) {
        /* Kafka's committed offsets trail PostgreSQL's (they are committed after it), so starting
         * there is safe: what was applied already is skipped under the row lock. */
        bp_log_warn("cannot read ingest_offsets (%s: %s): starting from the group's offsets in Kafka",
                    bp_err_str(e), err);
        for (int i = 0; i < parts->cnt; i++)
            parts->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
    }
    log_partitions("assigned", parts, 1);
    rd_kafka_error_t *error = rd_kafka_incremental_assign(w->rk, parts);
    if (error != NULL) {
        bp_log_error("assign: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        return;
    }
    set_owned(w, parts, 1);
    bp_ingest_stats_assigned(w->stats, parts);
    if (e == BP_OK) {
        /* bring the group's Kafka offsets (lag tools) to PostgreSQL's at once: a predecessor may
         * have died after its last commit but before the auto-commit sent it */
        rd_kafka_topic_partition_list_t *known = rd_kafka_topic_partition_list_new(parts->cnt);
        for (int i = 0; i < parts->cnt; i++)
            if (parts->elems[i].offset >= 0)
                rd_kafka_topic_partition_list_add(known, parts->elems[i].topic, parts->elems[i].partition)
                    ->offset = parts->elems[i].offset;
        if (known->cnt > 0 && rd_kafka_offsets_store(w->rk, known) != RD_KAFKA_RESP_ERR_NO_ERROR)
            bp_log_debug("storing start offsets for the Kafka commit failed");
        rd_kafka_topic_partition_list_destroy(known);
    }
    if (w->paused) /* a retry is pending: new partitions wait for it like the others */
        rd_kafka_pause_partitions(w->rk, parts);
}

static void unassign(bp_worker_t *w, rd_kafka_topic_partition_list_t *parts, const char *what)
{
    log_partitions(what, parts, 0);
    buffer_drop(w, parts);
    set_owned(w, parts, 0);
    bp_ingest_stats_revoked(w->stats, parts, what);
    rd_kafka_error_t *error = rd_kafka_incremental_unassign(w->rk, parts);
    if (error != NULL) {
        bp_log_error("unassign: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                         void *opaque)
{
    bp_worker_t *w = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        assign(w, parts);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        unassign(w, parts, rd_kafka_assignment_lost(rk) ? "lost" : "revoked");
    } else {
        bp_log_error("rebalance failed: %s", rd_kafka_err2str(err));
        unassign(w, parts, "revoked");
    }
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    bp_worker_t *w = opaque;
    if (bp_kafka_log_error(rk, err, reason, "consumer"))
        w->fatal = 1;
}

static void offset_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        bp_log_debug("offset commit to Kafka (for lag tools only): %s", rd_kafka_err2str(err));
}

/* Apply and pause the whole assignment (pause=1) or resume it. */
static void pause_all(bp_worker_t *w, int pause)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(w->rk, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR && parts != NULL) {
        if (pause)
            rd_kafka_pause_partitions(w->rk, parts);
        else
            rd_kafka_resume_partitions(w->rk, parts);
    }
    if (parts != NULL)
        rd_kafka_topic_partition_list_destroy(parts);
    w->paused = pause;
}

/* ---------------------------------------------------------------------------------------------
 * The loop.
 */

/* A message with err set: log it; a fatal one stops the worker. */
static void consumer_error(bp_worker_t *w, const rd_kafka_message_t *rkm)
{
    if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        return;
    if (rkm->err == RD_KAFKA_RESP_ERR__FATAL) {
        /* the same line as error_cb's: the original error from rd_kafka_fatal_error */
        if (bp_kafka_log_error(w->rk, rkm->err, rd_kafka_message_errstr(rkm), "consumer"))
            w->fatal = 1;
        return;
    }
    json_t *f = NULL;
    if (rkm->rkt != NULL)
        f = json_pack("{s:s, s:i, s:I}", "topic", rd_kafka_topic_name(rkm->rkt), "partition",
                      (int)rkm->partition, "offset", (json_int_t)rkm->offset);
    bp_log_fields(BP_LOG_WARN, f, "consumer: %s", rd_kafka_message_errstr(rkm));
    json_decref(f);
}

/* Poll once (up to timeout_ms) and buffer what comes. Returns 1 if a message was buffered, 0 if
 * not, -1 without memory. */
static int poll_once(bp_worker_t *w, int timeout_ms)
{
    rd_kafka_message_t *rkm = rd_kafka_consumer_poll(w->rk, timeout_ms);
    if (rkm == NULL)
        return 0;
    if (rkm->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        consumer_error(w, rkm);
        rd_kafka_message_destroy(rkm);
        return 0;
    }
    if (buffer_add(w, rkm) != 0) {
        bp_log_error("out of memory while buffering a message");
        return -1;
    }
    return 1;
}

/* Keep the group membership alive (rebalances served, revoked partitions dropped) for ms. */
static int wait_polling(bp_worker_t *w, long long ms)
{
    long long until = bp_clock_ms() + ms;
    for (;;) {
        if (stopping(w) && until > flush_deadline(w))
            until = flush_deadline(w);
        long long left = until - bp_clock_ms();
        if (left <= 0 || w->fatal)
            return 0;
        /* partitions are paused: nothing new should come, but what does is kept in order */
        if (poll_once(w, left < POLL_SLICE_MS ? (int)left : POLL_SLICE_MS) < 0)
            return -1;
    }
}

static long long backoff_ms(bp_worker_t *w, int attempt)
{
    long long cap = w->cfg->retry_backoff_max_ms, d = RETRY_BACKOFF_MIN_MS;
    for (int i = 0; i < attempt && d < cap; i++)
        d *= 2;
    if (d > cap)
        d = cap;
    /* jitter in [d/2, d]: workers that failed together do not retry together */
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return d / 2 + (long long)(w->rng % (uint64_t)(d / 2 + 1));
}

/* Tell Kafka how far PostgreSQL is (only for lag tools: the worker never reads these back while
 * PostgreSQL answers). The offsets are stored and librdkafka's auto-commit sends them within
 * AUTO_COMMIT_MS: unlike rd_kafka_commit(), its timer does not commit while a rebalance is under way.
 * In librdkafka 2.0.2 a commit that meets a rebalance fails with ILLEGAL_GENERATION and the member
 * then drops its whole assignment as lost (librdkafka issue #4059), which made every rebalance
 * move all partitions. Only partitions still ours are stored. */
static void commit_to_kafka(bp_worker_t *w, size_t nout)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)nout);
    for (size_t i = 0; i < nout; i++)
        if (is_owned(w, w->done[i].partition))
            rd_kafka_topic_partition_list_add(list, w->cfg->topic, w->done[i].partition)->offset =
                w->done[i].next_offset;
    if (list->cnt > 0) {
        rd_kafka_resp_err_t e = rd_kafka_offsets_store(w->rk, list);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            bp_log_debug("storing offsets for the Kafka commit: %s", rd_kafka_err2str(e));
    }
    rd_kafka_topic_partition_list_destroy(list);
}

/* Apply the buffer in one transaction; on a failure pause, back off while polling, and try again the
 * same messages (minus those of revoked partitions), in order, until it commits. A failure a message
 * may cause (bp_pg_fault_bounded) is retried BP_TXN_MAX_ATTEMPTS times; then each message is tried
 * alone and the one that fails alone is dead-lettered, so that no message can stall its partition
 * (and every other partition of this worker) for good. A lost connection and failures only an
 * operator can fix are retried without limit.
 * Returns 0 (buffer empty), or -1 on a fatal error. A stopping worker gives up at its deadline:
 * what it held is then not committed and the next owner applies it. */
static int flush(bp_worker_t *w)
{
    int rc = 0;
    long long bounded = 0; /* failed attempts that count toward the bound */
    for (int attempt = 0; w->n > 0; attempt++) {
        char err[1024];
        size_t nout = 0;
        double started = bp_clock_s();
        int isolate = bounded >= w->cfg->txn_max_attempts;
        bp_err_t e = bp_apply_txn(w->apply, w->dlq, w->buf, w->n, isolate, w->done, &nout, err, sizeof(err));
        if (e == BP_OK) {
            bp_ingest_stats_txn_committed(w->stats, w->buf, w->n, w->done, nout, bp_clock_s() - started);
            w->pg_check_failures = 0;
            w->pg_check_at = bp_clock_ms() + PG_CHECK_IDLE_MS;
            if (isolate)
                bp_log_info("committed %zu messages one by one after %lld failed attempts", w->n, bounded);
            commit_to_kafka(w, nout);
            buffer_clear(w);
            break;
        }
        bp_err_class_t cls = bp_err_class(e);
        json_t *f = bp_ingest_msg_fields(&w->buf[0], w->cfg->topic);
        if (f != NULL) {
            json_object_set_new(f, "error", json_string(bp_err_str(e)));
            json_object_set_new(f, "error_class", json_string(cls == BP_CLASS_RETRIABLE   ? "retriable"
                                                             : cls == BP_CLASS_PERMANENT ? "permanent"
                                                                                         : "fatal"));
        }
        if (cls == BP_CLASS_FATAL || bp_dlq_fatal(w->dlq)) {
            bp_log_fields(BP_LOG_ERROR, f, "cannot apply %zu messages: %s: %s", w->n, bp_err_str(e), err);
            json_decref(f);
            w->fatal = 1;
            bp_ingest_stats_fatal(w->stats);
            rc = -1;
            break;
        }
        long long delay = backoff_ms(w, attempt);
        if (stopping(w) && bp_clock_ms() + delay > flush_deadline(w)) {
            bp_log_fields(BP_LOG_WARN, f,
                          "stopping: %zu messages not applied (%s: %s); the next worker applies them", w->n,
                          bp_err_str(e), err);
            json_decref(f);
            buffer_clear(w);
            break;
        }
        /* a failure only an operator can fix (a missing table, a permission) is retried without
         * limit, but loudly; one a message may cause counts toward the bound */
        bp_pg_fault_t fault = bp_apply_last_fault(w->apply);
        const char *then = "";
        if (bp_pg_fault_bounded(fault) && ++bounded == w->cfg->txn_max_attempts)
            then = "; then each message alone, and the one that fails alone is dead-lettered";
        bp_ingest_stats_txn_retry(w->stats, e);
        bp_log_fields(fault == BP_PG_FAULT_OPERATOR ? BP_LOG_ERROR : BP_LOG_WARN, f,
                      "transaction of %zu messages failed (%s: %s); retry %d in %lld ms%s", w->n, bp_err_str(e),
                      err, attempt + 1, delay, then);
        json_decref(f);
        if (!w->paused)
            pause_all(w, 1);
        if (wait_polling(w, delay) != 0 || w->fatal) {
            rc = -1;
            break;
        }
    }
    if (w->paused)
        pause_all(w, 0);
    bp_ingest_stats_txn_settled(w->stats);
    return rc;
}

/* Leave the group within the shutdown budget (revoking our partitions on the way). */
static void close_consumer(bp_worker_t *w)
{
    bp_log_info("leaving group %s", w->cfg->group_id);
    long long deadline = (w->stop_at ? w->stop_at : bp_clock_ms()) + w->cfg->shutdown_timeout_ms * 9 / 10;
    rd_kafka_queue_t *q = rd_kafka_queue_new(w->rk);
    rd_kafka_error_t *error = rd_kafka_consumer_close_queue(w->rk, q);
    if (error != NULL) {
        bp_log_warn("leaving group: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else {
        while (!rd_kafka_consumer_closed(w->rk)) {
            long long left = deadline - bp_clock_ms();
            if (left <= 0) {
                bp_log_warn("leaving group: not done within the shutdown timeout; the broker will expire us");
                break;
            }
            /* events, not callbacks: the queue may also carry fetched messages, which have none */
            rd_kafka_event_t *ev = rd_kafka_queue_poll(q, left < POLL_SLICE_MS ? (int)left : POLL_SLICE_MS);
            if (ev == NULL)
                continue;
            if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE)
                rebalance_cb(w->rk, rd_kafka_event_error(ev), rd_kafka_event_topic_partition_list(ev), w);
            rd_kafka_event_destroy(ev);
        }
    }
    rd_kafka_queue_destroy(q);
    w->closed = 1;
}

bp_worker_t *bp_worker_new(const bp_config_t *cfg, bp_ingest_stats_t *stats, volatile sig_atomic_t *stop,
                           char *err, size_t errlen)
{
    bp_worker_t *w = calloc(1, sizeof(*w));
    rd_kafka_conf_t *conf = NULL;
    if (w == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->cfg = cfg;
    w->stop = stop;
    w->stats = stats;
    w->limits = (bp_payload_limits_t){cfg->max_objects, cfg->max_pairs, cfg->max_id_len, cfg->max_key_len,
                                      cfg->max_string_len};
    w->rng = ((uint64_t)getpid() << 32) ^ (uint64_t)bp_clock_ms() ^ 0x9e3779b97f4a7c15ULL;
    if ((w->apply = bp_apply_new(cfg)) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if ((w->dlq = bp_dlq_new(cfg, err, errlen)) == NULL)
        goto fail;
    conf = bp_kafka_conf_new(cfg, "batchpipe-ingest", err, errlen);
    if (conf == NULL || bp_kafka_conf_set(conf, "group.id", cfg->group_id, err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "partition.assignment.strategy", "cooperative-sticky", err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "enable.auto.commit", "true", err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "auto.commit.interval.ms", AUTO_COMMIT_MS, err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "enable.auto.offset.store", "false", err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "session.timeout.ms", SESSION_TIMEOUT_MS, err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "heartbeat.interval.ms", HEARTBEAT_MS, err, errlen) != 0)
        goto fail;
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_offset_commit_cb(conf, offset_commit_cb);
    rd_kafka_conf_set_opaque(conf, w);
    w->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
    if (w->rk == NULL)
        goto fail;
    rd_kafka_poll_set_consumer(w->rk);
    bp_ingest_stats_set_consumer(stats, w->rk);
    return w;
fail:
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    bp_dlq_free(w->dlq, 0);
    bp_apply_free(w->apply);
    free(w);
    return NULL;
}

int bp_worker_run(bp_worker_t *w)
{
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, w->cfg->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(w->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        bp_log_error("subscribe to %s: %s", w->cfg->topic, rd_kafka_err2str(err));
        return -1;
    }
    bp_log_info("joining group %s on topic %s", w->cfg->group_id, w->cfg->topic);
    int rc = 0;
    /* Group commit that adapts to the load: a transaction closes as soon as the consumer has nothing
     * more buffered (after BP_TXN_LINGER_MS, 0 by default), so a lone message is applied at once;
     * under load what arrives while a transaction runs is waiting when it ends, and the next one
     * fills up to BP_TXN_MAX_MESSAGES / BP_TXN_MAX_BYTES without any wait. BP_TXN_MAX_MS bounds how
     * long a transaction fills while messages keep coming. */
    long long linger = w->cfg->txn_linger_ms < w->cfg->txn_max_ms ? w->cfg->txn_linger_ms : w->cfg->txn_max_ms;
    while (!stopping(w) && !w->fatal) {
        if (w->n == 0 && bp_clock_ms() >= w->pg_check_at)
            check_pg_idle(w);
        int timeout = POLL_SLICE_MS;
        if (w->n > 0) { /* 0 without a linger: only what the consumer holds already */
            long long left = w->first_at + linger - bp_clock_ms();
            timeout = left <= 0 ? 0 : left < POLL_SLICE_MS ? (int)left : POLL_SLICE_MS;
        }
        int got = poll_once(w, timeout);
        if (got < 0) {
            rc = -1;
            break;
        }
        long long age = w->n > 0 ? bp_clock_ms() - w->first_at : 0;
        int full = w->n >= (size_t)w->cfg->txn_max_messages || w->bytes >= (size_t)w->cfg->txn_max_bytes;
        int quiet = w->n > 0 && got == 0 && age >= linger; /* nothing more is waiting */
        int due = w->n > 0 && age >= w->cfg->txn_max_ms;  /* a steady stream: bound the latency */
        if ((full || quiet || due) && flush(w) != 0) {
            rc = -1;
            break;
        }
    }
    if (w->fatal) {
        rc = -1;
        bp_ingest_stats_fatal(w->stats);
    }
    if (rc == 0 && w->n > 0 && flush(w) != 0) /* stopping: the transaction in hand */
        rc = -1;
    buffer_clear(w);
    if (!w->fatal)
        close_consumer(w);
    return rc;
}

void bp_worker_free(bp_worker_t *w)
{
    if (w == NULL)
        return;
    if (!w->closed && !w->fatal)
        close_consumer(w);
    buffer_clear(w);
    /* the health port must not read watermarks of a freed consumer */
    bp_ingest_stats_set_consumer(w->stats, NULL);
    /* consumer_close was done above (or must be skipped after a fatal error) */
    rd_kafka_destroy_flags(w->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    bp_dlq_free(w->dlq, 1000);
    bp_apply_free(w->apply);
    free(w->buf);
    free(w->done);
    free(w->owned);
    free(w);
}
