/* bp_kafka.c - shared librdkafka setup: configuration, logging bridge, topic creation.
 * Every rd_kafka_conf_set is checked; errors land in the caller's buffer. */
#include "bp_kafka.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bp_log.h"

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    /* syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug */
    bp_log_level_t lvl = level <= 3 ? BP_LOG_ERROR : level == 4 ? BP_LOG_WARN : level <= 6 ? BP_LOG_INFO
                                                                                              : BP_LOG_DEBUG;
    bp_log(lvl, "librdkafka %s: %s: %s", rk ? rd_kafka_name(rk) : "-", fac, buf);
}

int bp_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *err, size_t errlen)
{
    char why[512];
    if (rd_kafka_conf_set(conf, name, value, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "kafka setting %s=%s: %s", name, value, why);
        return -1;
    }
    return 0;
}

rd_kafka_conf_t *bp_kafka_conf_new(const bp_config_t *cfg, const char *client_id, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (bp_kafka_conf_set(conf, "bootstrap.servers", cfg->kafka_brokers, err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "client.id", client_id, err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "log.connection.close", "false", err, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    return conf;
}

int bp_kafka_create_topic(rd_kafka_t *rk, const char *topic, int partitions, int rf, int timeout_ms, char *err,
                          size_t errlen)
{
    char why[512];
    int rc = -1;
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, rf, why, sizeof(why));
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_event_t *ev = NULL;
    if (nt == NULL) {
        snprintf(err, errlen, "topic %s: %s", topic, why);
        goto cleanup;
    }
    if (rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, why, sizeof(why)) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, why, sizeof(why)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "topic %s: %s", topic, why);
        goto cleanup;
    }
    rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
    ev = rd_kafka_queue_poll(q, timeout_ms + 2000);
    if (ev == NULL) {
        snprintf(err, errlen, "topic %s: no answer from the broker within %d ms", topic, timeout_ms);
        goto cleanup;
    }
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "topic %s: %s", topic, rd_kafka_event_error_string(ev));
        goto cleanup;
    }
    size_t n = 0;
    const rd_kafka_topic_result_t **res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            snprintf(err, errlen, "topic %s: %s", topic, rd_kafka_topic_result_error_string(res[i]));
            goto cleanup;
        }
    }
    rc = 0;
cleanup:
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_AdminOptions_destroy(opts);
    if (nt != NULL)
        rd_kafka_NewTopic_destroy(nt);
    return rc;
}

bp_err_t bp_kafka_classify(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return BP_OK;
    case RD_KAFKA_RESP_ERR__FATAL:
        return BP_ERR_FATAL;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return BP_ERR_QUEUE_FULL;
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        return BP_ERR_TIMEOUT;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return BP_ERR_INVALID;
    default:
        return BP_ERR_KAFKA_DOWN;
    }
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int bp_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, char *err, size_t errlen)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (rkt == NULL) {
        snprintf(err, errlen, "topic %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
        return -2;
    }
    long long deadline = mono_ms() + timeout_ms;
    int n;
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        long long left = deadline - mono_ms();
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, left > 0 ? (int)left : 1);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "%s", rd_kafka_err2str(e));
            n = -1;
            break;
        }
        rd_kafka_resp_err_t te = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        int cnt = md->topic_cnt == 1 ? md->topics[0].partition_cnt : 0;
        rd_kafka_metadata_destroy(md);
        if (te == RD_KAFKA_RESP_ERR_NO_ERROR && cnt > 0) {
            n = cnt;
            break;
        }
        if (te == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || te == RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "topic %s does not exist", topic);
            n = 0;
            break;
        }
        if (mono_ms() + 200 >= deadline) { /* e.g. LEADER_NOT_AVAILABLE that did not pass */
            snprintf(err, errlen, "topic %s: %s", topic, rd_kafka_err2str(te));
            n = -2;
            break;
        }
        struct timespec pause = {0, 200 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    rd_kafka_topic_destroy(rkt);
    return n;
}

int bp_kafka_watermarks(rd_kafka_t *rk, const char *topic, int n, int64_t *low, int64_t *high, int timeout_ms,
                        char *err, size_t errlen)
{
    long long deadline = mono_ms() + timeout_ms;
    for (int p = 0; p < n; p++) {
        long long left = deadline - mono_ms();
        rd_kafka_resp_err_t e =
            rd_kafka_query_watermark_offsets(rk, topic, p, &low[p], &high[p], left > 0 ? (int)left : 1);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "watermarks of %s partition %d: %s", topic, p, rd_kafka_err2str(e));
            return -1;
        }
    }
    return 0;
}
