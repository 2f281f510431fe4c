/* stats.c - the ingest worker's Prometheus series and readiness state. Counters and histograms are the
 * registry's atomics (series looked up once, here); the readiness flags are atomics too; the table of
 * assigned partitions and their committed positions is under a mutex, held briefly by both threads. */
#include "stats.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define POS_UNKNOWN (-1) /* committed position not known (PostgreSQL could not be read at assignment) */

static const double txn_message_buckets[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 10000, 100000};
static const double txn_object_buckets[] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000};
#define NBUCKETS(b) (sizeof(b) / sizeof((b)[0]))

typedef struct part_pos {
    int32_t partition;
    int64_t committed; /* next offset committed to PostgreSQL, or POS_UNKNOWN */
} part_pos_t;

struct bp_ingest_stats {
    char *topic;
    char topic_label[512]; /* escaped once */

    bp_metric_t *applied, *objects, *skipped, *dead_invalid, *dead_refused;
    bp_metric_t *retry_retriable, *retry_permanent;
    bp_metric_t *txn_messages, *txn_objects, *txn_seconds;
    bp_metric_t *assigned_gauge;
    bp_metric_t *moved_assigned, *moved_revoked, *moved_lost;

    atomic_int pg;        /* 1, 0, -1: see bp_ingest_readiness_t */
    atomic_int pg_err;
    atomic_int retrying;
    atomic_int retry_err;
    atomic_int stopping;
    atomic_int fatal;

    pthread_mutex_t lock; /* guards parts, nparts, cap, rk */
    part_pos_t *parts;
    size_t nparts, cap;
    rd_kafka_t *rk;
};

static double gauge_ready(void *arg)
{
    bp_ingest_readiness_t r;
    bp_ingest_stats_readiness(arg, &r);
    return bp_ingest_stats_ready(&r) ? 1 : 0;
}

bp_ingest_stats_t *bp_ingest_stats_new(bp_metrics_t *m, const char *topic)
{
    bp_ingest_stats_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    if ((s->topic = strdup(topic)) == NULL) {
        free(s);
        return NULL;
    }
    bp_metrics_escape(topic, s->topic_label, sizeof(s->topic_label));
    pthread_mutex_init(&s->lock, NULL);
    atomic_init(&s->pg, -1);

    s->applied = bp_metrics_counter(m, "bp_ingest_messages_applied_total",
                                    "Messages written to PostgreSQL (committed).", NULL);
    s->objects = bp_metrics_counter(m, "bp_ingest_objects_applied_total",
                                    "Objects of the applied messages (committed).", NULL);
    s->skipped =
        bp_metrics_counter(m, "bp_ingest_messages_skipped_total",
                           "Messages skipped because ingest_offsets says they were applied before.", NULL);
    const char *dead_help = "Messages sent to the dead-letter topic, by reason: invalid (not JSON, not a "
                            "valid batch) or refused (PostgreSQL refused the data).";
    s->dead_invalid = bp_metrics_counter(m, "bp_ingest_dead_letters_total", dead_help, "reason=\"invalid\"");
    s->dead_refused = bp_metrics_counter(m, "bp_ingest_dead_letters_total", dead_help, "reason=\"refused\"");
    const char *retry_help = "Transaction attempts that failed and are retried, by error class (permanent: "
                             "not the message's fault, e.g. a missing table; needs an operator).";
    s->retry_retriable = bp_metrics_counter(m, "bp_ingest_retries_total", retry_help, "class=\"retriable\"");
    s->retry_permanent = bp_metrics_counter(m, "bp_ingest_retries_total", retry_help, "class=\"permanent\"");
    s->txn_messages =
        bp_metrics_histogram(m, "bp_ingest_transaction_messages",
                             "Messages per committed transaction (applied, skipped and dead-lettered).", NULL,
                             txn_message_buckets, NBUCKETS(txn_message_buckets));
    s->txn_objects = bp_metrics_histogram(m, "bp_ingest_transaction_objects",
                                          "Objects written per committed transaction.", NULL,
                                          txn_object_buckets, NBUCKETS(txn_object_buckets));
    s->txn_seconds = bp_metrics_histogram(m, "bp_ingest_transaction_duration_seconds",
                                          "Time of a committed transaction attempt, from BEGIN to COMMIT "
                                          "(dead-letter acks included).",
                                          NULL, bp_metrics_latency_buckets, bp_metrics_latency_nbuckets);
    s->assigned_gauge =
        bp_metrics_gauge(m, "bp_ingest_assigned_partitions", "Partitions assigned to this worker now.", NULL);
    const char *moved_help = "Partitions received or given up in rebalances, by event (lost: taken away "
                             "without a handover).";
    s->moved_assigned = bp_metrics_counter(m, "bp_ingest_rebalance_partitions_total", moved_help,
                                           "event=\"assigned\"");
    s->moved_revoked = bp_metrics_counter(m, "bp_ingest_rebalance_partitions_total", moved_help,
                                          "event=\"revoked\"");
    s->moved_lost =
        bp_metrics_counter(m, "bp_ingest_rebalance_partitions_total", moved_help, "event=\"lost\"");
    bp_metrics_gauge_fn(m, "bp_ingest_ready", "1 when /readyz answers 200, else 0.", NULL, gauge_ready, s);
    return s;
}

void bp_ingest_stats_free(bp_ingest_stats_t *s)
{
    if (s == NULL)
        return;
    pthread_mutex_destroy(&s->lock);
    free(s->parts);
    free(s->topic);
    free(s);
}

void bp_ingest_stats_set_consumer(bp_ingest_stats_t *s, rd_kafka_t *rk)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    s->rk = rk;
    pthread_mutex_unlock(&s->lock);
}

/* --- the partition table (callers hold the lock) ------------------------------------------------ */

static part_pos_t *find(bp_ingest_stats_t *s, int32_t partition)
{
    for (size_t i = 0; i < s->nparts; i++)
        if (s->parts[i].partition == partition)
            return &s->parts[i];
    return NULL;
}

static int64_t position_of(int64_t offset)
{
    if (offset >= 0)
        return offset;
    return offset == RD_KAFKA_OFFSET_BEGINNING ? 0 : POS_UNKNOWN;
}

static void set_position(bp_ingest_stats_t *s, int32_t partition, int64_t committed, int add)
{
    part_pos_t *p = find(s, partition);
    if (p == NULL) {
        if (!add)
            return; /* not ours (any more) */
        if (s->nparts == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 16;
            part_pos_t *np = realloc(s->parts, cap * sizeof(*np));
            if (np == NULL)
                return; /* only costs this partition's lag series */
            s->parts = np;
            s->cap = cap;
        }
        p = &s->parts[s->nparts++];
        p->partition = partition;
    }
    p->committed = committed;
}

void bp_ingest_stats_assigned(bp_ingest_stats_t *s, const rd_kafka_topic_partition_list_t *parts)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < parts->cnt; i++)
        set_position(s, parts->elems[i].partition, position_of(parts->elems[i].offset), 1);
    bp_gauge_set(s->assigned_gauge, (double)s->nparts);
    pthread_mutex_unlock(&s->lock);
    bp_counter_add(s->moved_assigned, (uint64_t)parts->cnt);
}

void bp_ingest_stats_revoked(bp_ingest_stats_t *s, const rd_kafka_topic_partition_list_t *parts,
                             const char *event)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < parts->cnt; i++) {
        part_pos_t *p = find(s, parts->elems[i].partition);
        if (p != NULL)
            *p = s->parts[--s->nparts];
    }
    bp_gauge_set(s->assigned_gauge, (double)s->nparts);
    pthread_mutex_unlock(&s->lock);
    bp_counter_add(strcmp(event, "lost") == 0 ? s->moved_lost : s->moved_revoked, (uint64_t)parts->cnt);
}

void bp_ingest_stats_positions(bp_ingest_stats_t *s, const rd_kafka_topic_partition_list_t *parts)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < parts->cnt; i++) {
        int64_t pos = position_of(parts->elems[i].offset);
        if (pos != POS_UNKNOWN)
            set_position(s, parts->elems[i].partition, pos, 0);
    }
    pthread_mutex_unlock(&s->lock);
}

/* --- transactions ------------------------------------------------------------------------------- */

void bp_ingest_stats_txn_committed(bp_ingest_stats_t *s, const bp_ingest_msg_t *msgs, size_t n,
                                   const bp_part_offset_t *done, size_t ndone, double seconds)
{
    if (s == NULL)
        return;
    bp_ingest_msg_tally_t t = bp_ingest_msg_tally(msgs, n);
    bp_counter_add(s->applied, t.applied);
    bp_counter_add(s->objects, t.objects);
    bp_counter_add(s->skipped, t.skipped);
    bp_counter_add(s->dead_invalid, t.dead_invalid);
    bp_counter_add(s->dead_refused, t.dead_refused);
    bp_histogram_observe(s->txn_messages, (double)n);
    bp_histogram_observe(s->txn_objects, (double)t.objects);
    bp_histogram_observe(s->txn_seconds, seconds);
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < ndone; i++)
        set_position(s, done[i].partition, done[i].next_offset, 0);
    pthread_mutex_unlock(&s->lock);
    atomic_store(&s->pg, 1);
    atomic_store(&s->retrying, 0);
}

static int is_pg_error(bp_err_t e)
{
    return e == BP_ERR_PG_DOWN || e == BP_ERR_PG_TRANSIENT || e == BP_ERR_PG_DATA;
}

void bp_ingest_stats_txn_retry(bp_ingest_stats_t *s, bp_err_t e)
{
    if (s == NULL)
        return;
    bp_counter_add(bp_err_class(e) == BP_CLASS_PERMANENT ? s->retry_permanent : s->retry_retriable, 1);
    atomic_store(&s->retry_err, (int)e);
    atomic_store(&s->retrying, 1);
    if (is_pg_error(e)) {
        atomic_store(&s->pg_err, (int)e);
        atomic_store(&s->pg, 0);
    }
}

void bp_ingest_stats_txn_settled(bp_ingest_stats_t *s)
{
    if (s != NULL)
        atomic_store(&s->retrying, 0);
}

void bp_ingest_stats_pg(bp_ingest_stats_t *s, bp_err_t e)
{
    if (s == NULL)
        return;
    if (e != BP_OK)
        atomic_store(&s->pg_err, (int)e);
    atomic_store(&s->pg, e == BP_OK ? 1 : 0);
}

void bp_ingest_stats_stopping(bp_ingest_stats_t *s)
{
    if (s != NULL)
        atomic_store(&s->stopping, 1);
}

void bp_ingest_stats_fatal(bp_ingest_stats_t *s)
{
    if (s != NULL)
        atomic_store(&s->fatal, 1);
}

/* --- readers ------------------------------------------------------------------------------------ */

void bp_ingest_stats_readiness(bp_ingest_stats_t *s, bp_ingest_readiness_t *out)
{
    memset(out, 0, sizeof(*out));
    out->pg = -1;
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    out->assigned = (int)s->nparts;
    pthread_mutex_unlock(&s->lock);
    out->pg = atomic_load(&s->pg);
    out->pg_err = (bp_err_t)atomic_load(&s->pg_err);
    out->retrying = atomic_load(&s->retrying);
    out->retry_err = (bp_err_t)atomic_load(&s->retry_err);
    out->stopping = atomic_load(&s->stopping);
    out->fatal = atomic_load(&s->fatal);
}

int bp_ingest_stats_ready(const bp_ingest_readiness_t *r)
{
    return r->assigned > 0 && r->pg == 1 && !r->retrying && !r->stopping && !r->fatal;
}

static int cmp_pos(const void *x, const void *y)
{
    int32_t a = ((const part_pos_t *)x)->partition, b = ((const part_pos_t *)y)->partition;
    return (a > b) - (a < b);
}

void bp_ingest_stats_render_lag(bp_ingest_stats_t *s, FILE *out)
{
    if (s == NULL)
        return;
    fprintf(out, "# HELP bp_ingest_consumer_lag Messages of an assigned partition not yet committed to "
                 "PostgreSQL: the broker's high watermark (as last fetched) minus the committed next "
                 "offset.\n# TYPE bp_ingest_consumer_lag gauge\n");
    pthread_mutex_lock(&s->lock);
    /* sorted for a stable output; the table is small (at most the partitions of one topic) */
    if (s->nparts > 1)
        qsort(s->parts, s->nparts, sizeof(*s->parts), cmp_pos);
    for (size_t i = 0; i < s->nparts && s->rk != NULL; i++) {
        const part_pos_t *p = &s->parts[i];
        int64_t lo = RD_KAFKA_OFFSET_INVALID, hi = RD_KAFKA_OFFSET_INVALID;
        if (p->committed == POS_UNKNOWN)
            continue;
        /* cached, never a request to the broker; hi is unknown until a fetch of the partition answered */
        rd_kafka_resp_err_t err = rd_kafka_get_watermark_offsets(s->rk, s->topic, p->partition, &lo, &hi);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR || hi < 0)
            continue;
        /* messages below the log start (retention) will never be applied: not lag */
        int64_t from = lo >= 0 && lo > p->committed ? lo : p->committed;
        int64_t lag = hi > from ? hi - from : 0;
        fprintf(out, "bp_ingest_consumer_lag{topic=\"%s\",partition=\"%d\"} %lld\n", s->topic_label,
                (int)p->partition, (long long)lag);
    }
    pthread_mutex_unlock(&s->lock);
}
