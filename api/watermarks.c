/* watermarks.c - the thread behind watermarks.h: one librdkafka consumer handle (no group, no
 * subscription) that asks the broker for the watermarks of the topic and the dead-letter topic every
 * two seconds, and a mutex-guarded cache that readers copy. */
#include "watermarks.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "bp_kafka.h"
#include "bp_log.h"

#define WATERMARKS_INTERVAL_MS 2000 /* between the end of a round and the start of the next */
#define METADATA_TIMEOUT_MS 2000    /* one metadata request (partitions of a topic) */
#define QUERY_TIMEOUT_MS 1000       /* one partition's watermarks */

struct bp_watermarks {
    const bp_config_t *cfg; /* borrowed */
    rd_kafka_t *rk;         /* used by the thread only (and destroyed after it ended) */
    pthread_t tid;
    int started;
    atomic_int stop;
    pthread_mutex_t mu;
    pthread_cond_t wake; /* signalled by bp_watermarks_stop */
    /* the cache, under mu */
    bp_watermarks_state_t state;
    uint64_t fetched_ms; /* monotonic time of the round the values come from; 0: none yet */
    char error[256];
    bp_watermarks_topic_t topic, dlq;
    int logged_down; /* the broker's absence was logged (once until it is back) */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void topic_free(bp_watermarks_topic_t *t)
{
    free(t->parts);
    memset(t, 0, sizeof(*t));
}

static int by_partition(const void *a, const void *b)
{
    int32_t x = ((const bp_watermark_t *)a)->partition, y = ((const bp_watermark_t *)b)->partition;
    return (x > y) - (x < y);
}

/* One topic's partitions and watermarks into out. Returns 0 when the broker answered the metadata
 * request (out->error then names a partition that did not answer, if any), -1 with err when it did
 * not (out untouched). */
static int fetch_topic(bp_watermarks_t *w, const char *name, bp_watermarks_topic_t *out, char *err,
                       size_t errlen)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(w->rk, name, NULL);
    if (rkt == NULL) {
        snprintf(err, errlen, "topic %s: %s", name, rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(w->rk, 0, rkt, &md, METADATA_TIMEOUT_MS);
    rd_kafka_topic_destroy(rkt);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "no metadata from the broker within %d ms: %s", METADATA_TIMEOUT_MS,
                 rd_kafka_err2str(e));
        return -1;
    }
    bp_watermarks_topic_t t = {0, NULL, ""};
    const struct rd_kafka_metadata_topic *mt = md->topic_cnt == 1 ? &md->topics[0] : NULL;
    if (mt == NULL || mt->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(t.error, sizeof(t.error), "topic %s: %s", name,
                 mt != NULL ? rd_kafka_err2str(mt->err) : "not in the broker's answer");
    } else if (mt->partition_cnt > 0) {
        t.parts = calloc((size_t)mt->partition_cnt, sizeof(*t.parts));
        if (t.parts == NULL) {
            snprintf(t.error, sizeof(t.error), "out of memory");
        } else {
            t.n = (size_t)mt->partition_cnt;
            for (size_t i = 0; i < t.n; i++)
                t.parts[i] = (bp_watermark_t){mt->partitions[i].id, -1, -1};
            qsort(t.parts, t.n, sizeof(*t.parts), by_partition);
        }
    }
    rd_kafka_metadata_destroy(md);
    /* after one partition fails the others would most likely wait out their timeouts too */
    for (size_t i = 0; i < t.n && t.error[0] == '\0' && !atomic_load(&w->stop); i++) {
        int64_t lo = -1, hi = -1;
        e = rd_kafka_query_watermark_offsets(w->rk, name, t.parts[i].partition, &lo, &hi, QUERY_TIMEOUT_MS);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(t.error, sizeof(t.error), "topic %s partition %d: %s", name, (int)t.parts[i].partition,
                     rd_kafka_err2str(e));
            break;
        }
        t.parts[i].low = lo;
        t.parts[i].high = hi;
    }
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
    pthread_mutex_lock(&w->mu);
    if (ok) {
        topic_free(&w->topic);
        topic_free(&w->dlq);
        w->topic = topic;
        w->dlq = dlq;
        memset(&topic, 0, sizeof(topic));
        memset(&dlq, 0, sizeof(dlq));
        w->fetched_ms = now_ms();
        w->state = BP_WM_UP;
        w->error[0] = '\0';
    } else {
        w->state = BP_WM_DOWN;
        snprintf(w->error, sizeof(w->error), "%s", err);
    }
    pthread_mutex_unlock(&w->mu);
    topic_free(&topic);
    topic_free(&dlq);
    if (!ok && !w->logged_down && !atomic_load(&w->stop)) {
        bp_warn("stats: cannot read the topics' watermarks: %s", err);
        w->logged_down = 1;
    } else if (ok && w->logged_down) {
        bp_info("stats: the topics' watermarks are readable again");
        w->logged_down = 0;
    }
}

static void *thread_main(void *arg)
{
    bp_watermarks_t *w = arg;
    while (!atomic_load(&w->stop)) {
        refresh(w);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += WATERMARKS_INTERVAL_MS / 1000;
        until.tv_nsec += (long)(WATERMARKS_INTERVAL_MS % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&w->mu);
        while (!atomic_load(&w->stop) && pthread_cond_timedwait(&w->wake, &w->mu, &until) != ETIMEDOUT)
            ;
        pthread_mutex_unlock(&w->mu);
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
    atomic_init(&w->stop, 0);
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->wake, &ca);
    pthread_condattr_destroy(&ca);
    w->rk = client_new(cfg, err, errlen);
    if (w->rk == NULL)
        goto fail;
    if (pthread_create(&w->tid, NULL, thread_main, w) != 0) {
        snprintf(err, errlen, "cannot start the stats thread");
        goto fail;
    }
    w->started = 1;
    return w;
fail:
    bp_watermarks_free(w);
    return NULL;
}

void bp_watermarks_stop(bp_watermarks_t *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    atomic_store(&w->stop, 1);
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mu);
}

void bp_watermarks_free(bp_watermarks_t *w)
{
    if (w == NULL)
        return;
    bp_watermarks_stop(w);
    if (w->started)
        pthread_join(w->tid, NULL);
    if (w->rk != NULL)
        rd_kafka_destroy_flags(w->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    topic_free(&w->topic);
    topic_free(&w->dlq);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->mu);
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
    pthread_mutex_lock(&w->mu);
    out->state = w->state;
    out->age_ms = w->fetched_ms != 0 ? (int64_t)(now_ms() - w->fetched_ms) : -1;
    snprintf(out->error, sizeof(out->error), "%s", w->error);
    int rc = topic_copy(&w->topic, &out->topic) == 0 && topic_copy(&w->dlq, &out->dlq) == 0 ? 0 : -1;
    pthread_mutex_unlock(&w->mu);
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
