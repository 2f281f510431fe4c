/* watermarks.c - the thread behind watermarks.h: one librdkafka consumer handle (no group, no
 * subscription) that asks the broker for the watermarks of the topic and the dead-letter topic every
 * two seconds, and a mutex-guarded cache that readers copy. */
#include "watermarks.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "bp_clock.h"
#include "bp_kafka.h"
#include "bp_log.h"
#include "bp_periodic.h"

#define WATERMARKS_INTERVAL_MS 2000 /* between the end of a round and the start of the next */
#define METADATA_TIMEOUT_MS 2000    /* one metadata request (partitions of a topic) */
#define QUERY_TIMEOUT_MS 1000       /* watermarks, per partition of a topic */

struct bp_watermarks {
    const bp_config_t *cfg; /* borrowed */
    rd_kafka_t *rk;         /* used by the thread only (and destroyed after it ended) */
    bp_periodic_t bg;       /* the thread; its mutex (bg.mu, "mu" below) guards the members that say so */
    int kicked;             /* under mu: a round is wanted now (bp_watermarks_kick) */
    uint64_t rounds_started; /* under mu: rounds started so far (the number of the current or last one) */
    uint64_t fetched_round; /* under mu: the number of the round the cached values come from */
    /* the cache, under mu */
    bp_watermarks_state_t state;
    uint64_t fetched_ms; /* monotonic time of the round the values come from; 0: none yet */
    char error[256];
    bp_watermarks_topic_t topic, dlq;
    int logged_down; /* the broker's absence was logged (once until it is back) */
    int replication_known;
    uint64_t described_ms; /* monotonic time of the round that described the topics */
    bp_kafka_topic_info_t topic_info, dlq_info;
    int logged_replication; /* a replication problem was logged (once until it is gone) */
    struct gauge_arg {
        bp_watermarks_t *w;
        int dlq, below; /* which topic, which count */
    } gauge_args[4];
};

static void topic_free(bp_watermarks_topic_t *t)
{
    free(t->parts);
    memset(t, 0, sizeof(*t));
}

/* One topic's partitions and watermarks into out. Returns 0 when the broker answered the metadata
 * request (out->error then says what went wrong with the topic, if anything), -1 with err when it did
 * not (out untouched). */
static int fetch_topic(bp_watermarks_t *w, const char *name, bp_watermarks_topic_t *out, char *err,
                       size_t errlen)
{
    bp_watermarks_topic_t t = {0, NULL, ""};
    char why[sizeof(t.error)] = ""; /* it may end up in t.error */
    int n = bp_kafka_partition_count(w->rk, name, METADATA_TIMEOUT_MS, why, sizeof(why));
    if (n == -1) {
        snprintf(err, errlen, "no metadata from the broker within %d ms: %s", METADATA_TIMEOUT_MS, why);
        return -1;
    }
    int64_t *low = NULL, *high = NULL;
    if (n > 0) {
        low = calloc((size_t)n, sizeof(*low));
        high = calloc((size_t)n, sizeof(*high));
    }
    if (n <= 0) {
        memcpy(t.error, why, sizeof(t.error)); /* the topic is missing, or has no leader */
    } else if (low == NULL || high == NULL || (t.parts = calloc((size_t)n, sizeof(*t.parts))) == NULL) {
        snprintf(t.error, sizeof(t.error), "out of memory");
    } else {
        t.n = (size_t)n;
        int ok = bp_kafka_watermarks(w->rk, name, n, low, high, QUERY_TIMEOUT_MS * n, t.error, sizeof(t.error)) == 0;
        /* partitions are numbered 0..n-1 */
        for (int i = 0; i < n; i++)
            t.parts[i] = (bp_watermark_t){i, ok ? low[i] : -1, ok ? high[i] : -1};
    }
    free(low);
    free(high);
    topic_free(out);
    *out = t;
    return 0;
}

/* One round: both topics, then the cache. */
static void refresh(bp_watermarks_t *w)
{
    bp_watermarks_topic_t topic = {0, NULL, ""}, dlq = {0, NULL, ""};
    char err[256] = "";
    int ok = fetch_topic(w, w->cfg->topic, &topic, err, sizeof(err)) == 0 &&
             fetch_topic(w, w->cfg->dlq_topic, &dlq, err, sizeof(err)) == 0;
    pthread_mutex_lock(&w->bg.mu);
    if (ok) {
        topic_free(&w->topic);
        topic_free(&w->dlq);
        w->topic = topic;
        w->dlq = dlq;
        memset(&topic, 0, sizeof(topic));
        memset(&dlq, 0, sizeof(dlq));
        w->fetched_ms = (uint64_t)bp_clock_ms();
        w->fetched_round = w->rounds_started;
        w->state = BP_WM_UP;
        w->error[0] = '\0';
    } else {
        w->state = BP_WM_DOWN;
        snprintf(w->error, sizeof(w->error), "%s", err);
    }
    pthread_mutex_unlock(&w->bg.mu);
    topic_free(&topic);
    topic_free(&dlq);
    if (!ok && !w->logged_down && !bp_periodic_stopping(&w->bg)) {
        bp_log_warn("stats: cannot read the topics' watermarks: %s", err);
        w->logged_down = 1;
    } else if (ok && w->logged_down) {
        bp_log_info("stats: the topics' watermarks are readable again");
        w->logged_down = 0;
    }
}

/* Both topics' replication (a metadata request and a DescribeConfigs each), then the cache. */
static void describe(bp_watermarks_t *w)
{
    bp_kafka_topic_info_t topic, dlq;
    char err[256] = "";
    int ok = bp_kafka_topic_describe(w->rk, w->cfg->topic, METADATA_TIMEOUT_MS, &topic, err, sizeof(err)) == 0 &&
             bp_kafka_topic_describe(w->rk, w->cfg->dlq_topic, METADATA_TIMEOUT_MS, &dlq, err, sizeof(err)) == 0;
    pthread_mutex_lock(&w->bg.mu);
    w->replication_known = ok;
    if (ok) {
        w->topic_info = topic;
        w->dlq_info = dlq;
        w->described_ms = (uint64_t)bp_clock_ms();
    }
    pthread_mutex_unlock(&w->bg.mu);
    if (!ok)
        return;
    int trouble = topic.under_replicated + topic.below_min_isr + dlq.under_replicated + dlq.below_min_isr;
    if (trouble > 0 && !w->logged_replication) {
        bp_log_warn("kafka: %s has %d partitions under-replicated, %d below min.insync.replicas (%d); "
                    "%s has %d and %d",
                    w->cfg->topic, topic.under_replicated, topic.below_min_isr, topic.min_isr,
                    w->cfg->dlq_topic, dlq.under_replicated, dlq.below_min_isr);
        w->logged_replication = 1;
    } else if (trouble == 0 && w->logged_replication) {
        bp_log_info("kafka: every partition of %s and %s has its replicas in sync again", w->cfg->topic,
                    w->cfg->dlq_topic);
        w->logged_replication = 0;
    }
}

static void *thread_main(void *arg)
{
    bp_watermarks_t *w = arg;
    while (!bp_periodic_stopping(&w->bg)) {
        pthread_mutex_lock(&w->bg.mu);
        w->kicked = 0; /* this round serves the kicks so far */
        w->rounds_started++;
        pthread_mutex_unlock(&w->bg.mu);
        refresh(w);
        if (!bp_periodic_stopping(&w->bg))
            describe(w);
        bp_periodic_sleep(&w->bg, WATERMARKS_INTERVAL_MS, &w->kicked);
    }
    return NULL;
}

static rd_kafka_t *client_new(const bp_config_t *cfg, char *err, size_t errlen)
{
    char why[512];
    rd_kafka_conf_t *conf = bp_kafka_conf_new(cfg, "batchpipe-api-stats", err, errlen);
    if (conf == NULL)
        return NULL;
    /* a consumer handle: it asks for metadata of the topics without ever creating them */
    if (bp_kafka_conf_set(conf, "allow.auto.create.topics", "false", err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "enable.auto.commit", "false", err, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "stats Kafka client: %s", why);
    }
    return rk;
}

bp_watermarks_t *bp_watermarks_new(const bp_config_t *cfg, char *err, size_t errlen)
{
    bp_watermarks_t *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->cfg = cfg;
    w->state = BP_WM_STARTING;
    bp_periodic_init(&w->bg);
    w->rk = client_new(cfg, err, errlen);
    if (w->rk == NULL)
        goto fail;
    if (bp_periodic_start(&w->bg, thread_main, w) != 0) {
        snprintf(err, errlen, "cannot start the stats thread");
        goto fail;
    }
    return w;
fail:
    bp_watermarks_free(w);
    return NULL;
}

uint64_t bp_watermarks_kick(bp_watermarks_t *w)
{
    if (w == NULL)
        return UINT64_MAX;
    pthread_mutex_lock(&w->bg.mu);
    w->kicked = 1;
    /* a round under way may have asked the broker before the kick: the next one did not */
    uint64_t target = w->rounds_started + 1;
    bp_periodic_wake(&w->bg);
    pthread_mutex_unlock(&w->bg.mu);
    return target;
}

int bp_watermarks_partition(bp_watermarks_t *w, int32_t partition, int64_t *low, int64_t *high,
                            uint64_t *round)
{
    int rc = -1;
    *low = *high = -1;
    *round = 0;
    if (w == NULL)
        return -1;
    pthread_mutex_lock(&w->bg.mu);
    *round = w->fetched_round;
    if (w->state == BP_WM_UP && w->topic.n > 0) {
        if (partition < 0 || (size_t)partition >= w->topic.n) {
            rc = 0;
        } else if (w->topic.parts[partition].high >= 0) {
            *low = w->topic.parts[partition].low;
            *high = w->topic.parts[partition].high;
            rc = 1;
        }
    }
    pthread_mutex_unlock(&w->bg.mu);
    return rc;
}

void bp_watermarks_stop(bp_watermarks_t *w)
{
    if (w != NULL)
        bp_periodic_stop(&w->bg);
}

void bp_watermarks_free(bp_watermarks_t *w)
{
    if (w == NULL)
        return;
    bp_periodic_destroy(&w->bg); /* the thread ended: the client is ours alone */
    if (w->rk != NULL)
        rd_kafka_destroy_flags(w->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    topic_free(&w->topic);
    topic_free(&w->dlq);
    free(w);
}

static int topic_copy(const bp_watermarks_topic_t *src, bp_watermarks_topic_t *dst)
{
    *dst = *src;
    dst->parts = NULL;
    if (src->n == 0)
        return 0;
    dst->parts = malloc(src->n * sizeof(*dst->parts));
    if (dst->parts == NULL)
        return -1;
    memcpy(dst->parts, src->parts, src->n * sizeof(*dst->parts));
    return 0;
}

int bp_watermarks_snapshot(bp_watermarks_t *w, bp_watermarks_snapshot_t *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&w->bg.mu);
    out->state = w->state;
    out->age_ms = w->fetched_ms != 0 ? (int64_t)((uint64_t)bp_clock_ms() - w->fetched_ms) : -1;
    snprintf(out->error, sizeof(out->error), "%s", w->error);
    int rc = topic_copy(&w->topic, &out->topic) == 0 && topic_copy(&w->dlq, &out->dlq) == 0 ? 0 : -1;
    pthread_mutex_unlock(&w->bg.mu);
    if (rc != 0) {
        bp_watermarks_snapshot_free(out);
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

void bp_watermarks_snapshot_free(bp_watermarks_snapshot_t *s)
{
    topic_free(&s->topic);
    topic_free(&s->dlq);
}

void bp_watermarks_replication(bp_watermarks_t *w, bp_watermarks_replication_t *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&w->bg.mu);
    out->known = w->replication_known;
    out->age_ms = w->described_ms != 0 ? (int64_t)((uint64_t)bp_clock_ms() - w->described_ms) : -1;
    out->topic = w->topic_info;
    out->dlq = w->dlq_info;
    pthread_mutex_unlock(&w->bg.mu);
}

static double gauge_value(void *arg)
{
    struct gauge_arg *g = arg;
    bp_watermarks_replication_t r;
    bp_watermarks_replication(g->w, &r);
    if (!r.known)
        return -1;
    const bp_kafka_topic_info_t *t = g->dlq ? &r.dlq : &r.topic;
    return g->below ? t->below_min_isr : t->under_replicated;
}

void bp_watermarks_register_metrics(bp_watermarks_t *w, bp_metrics_t *metrics)
{
    for (int i = 0; i < 4; i++) {
        struct gauge_arg *g = &w->gauge_args[i];
        *g = (struct gauge_arg){w, i & 1, i >> 1};
        char name[256], labels[300];
        snprintf(labels, sizeof(labels), "topic=\"%s\"",
                 bp_metrics_escape(g->dlq ? w->cfg->dlq_topic : w->cfg->topic, name, sizeof(name)));
        if (g->below)
            bp_metrics_gauge_fn(metrics, "bp_kafka_partitions_below_min_isr",
                                "Partitions with fewer in-sync replicas than min.insync.replicas (writes refused; "
                                "-1: unknown).", labels, gauge_value, g);
        else
            bp_metrics_gauge_fn(metrics, "bp_kafka_partitions_under_replicated",
                                "Partitions with fewer in-sync replicas than replicas (-1: unknown).", labels,
                                gauge_value, g);
    }
}
