/* bp_kafka.c - shared librdkafka setup: configuration, logging bridge, topic creation.
 * Every rd_kafka_conf_set is checked; errors land in the caller's buffer. */
#include "bp_kafka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bp_clock.h"
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

/* Admin options with both timeouts set; NULL with err. Free with rd_kafka_AdminOptions_destroy. */
static rd_kafka_AdminOptions_t *admin_options(rd_kafka_t *rk, rd_kafka_admin_op_t op, int timeout_ms, char *err,
                                              size_t errlen)
{
    char why[512];
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, op);
    if (rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, why, sizeof(why)) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        (op == RD_KAFKA_ADMIN_OP_CREATETOPICS &&
         rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, why, sizeof(why)) != RD_KAFKA_RESP_ERR_NO_ERROR)) {
        snprintf(err, errlen, "%s", why);
        rd_kafka_AdminOptions_destroy(opts);
        return NULL;
    }
    return opts;
}

/* Wait for the one result event of an admin call on q; NULL with err (the call's own error included). */
static rd_kafka_event_t *admin_result(rd_kafka_queue_t *q, const char *topic, int timeout_ms, char *err,
                                      size_t errlen)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 2000);
    if (ev == NULL) {
        snprintf(err, errlen, "topic %s: no answer from the broker within %d ms", topic, timeout_ms);
        return NULL;
    }
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "topic %s: %s", topic, rd_kafka_event_error_string(ev));
        rd_kafka_event_destroy(ev);
        return NULL;
    }
    return ev;
}

int bp_kafka_create_topic(rd_kafka_t *rk, const char *topic, int partitions, int rf, const char *const *names,
                          const char *const *values, size_t nconfigs, int timeout_ms, char *err, size_t errlen)
{
    char why[512];
    int rc = -1;
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, rf, why, sizeof(why));
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_event_t *ev = NULL;
    if (nt == NULL) {
        snprintf(err, errlen, "topic %s: %s", topic, why);
        goto cleanup;
    }
    for (size_t i = 0; i < nconfigs; i++) {
        if (rd_kafka_NewTopic_set_config(nt, names[i], values[i]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "topic %s: cannot set %s=%s", topic, names[i], values[i]);
            goto cleanup;
        }
    }
    if ((opts = admin_options(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS, timeout_ms, why, sizeof(why))) == NULL) {
        snprintf(err, errlen, "topic %s: %s", topic, why);
        goto cleanup;
    }
    rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
    if ((ev = admin_result(q, topic, timeout_ms, err, errlen)) == NULL)
        goto cleanup;
    size_t n = 0;
    const rd_kafka_topic_result_t **res = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    rc = 1;
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
        if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            rc = 0;
        } else if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "topic %s: %s", topic, rd_kafka_topic_result_error_string(res[i]));
            rc = -1;
            goto cleanup;
        }
    }
cleanup:
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    if (opts != NULL)
        rd_kafka_AdminOptions_destroy(opts);
    if (nt != NULL)
        rd_kafka_NewTopic_destroy(nt);
    return rc;
}

/* DescribeConfigs of topic: the result event (free with rd_kafka_event_destroy) and its entries in
 * *entries / *n (they live in the event). NULL with err. */
static rd_kafka_event_t *describe_configs(rd_kafka_t *rk, const char *topic, int timeout_ms,
                                          const rd_kafka_ConfigEntry_t ***entries, size_t *n, char *err,
                                          size_t errlen)
{
    char why[512];
    rd_kafka_event_t *ev = NULL;
    rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opts = admin_options(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, timeout_ms, why, sizeof(why));
    if (opts == NULL) {
        snprintf(err, errlen, "topic %s: %s", topic, why);
        goto cleanup;
    }
    long long deadline = bp_clock_ms() + timeout_ms;
    for (;;) {
        long long left = deadline - bp_clock_ms();
        rd_kafka_DescribeConfigs(rk, &res, 1, opts, q);
        if ((ev = admin_result(q, topic, left > 100 ? (int)left : 100, err, errlen)) == NULL)
            goto cleanup;
        size_t nres = 0;
        const rd_kafka_ConfigResource_t **rs =
            rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &nres);
        if (nres == 1 && rd_kafka_ConfigResource_error(rs[0]) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            *entries = rd_kafka_ConfigResource_configs(rs[0], n);
            break;
        }
        /* A topic created a moment ago is in the metadata before every broker's config view has it
         * (seen on a fresh KRaft broker): unknown is worth asking again until the deadline. */
        int unknown = nres == 1 && rd_kafka_ConfigResource_error(rs[0]) == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        if (!unknown || bp_clock_ms() + 200 >= deadline) {
            snprintf(err, errlen, "topic %s: its configuration: %s", topic,
                     nres != 1 ? "no answer" : rd_kafka_ConfigResource_error_string(rs[0]));
            rd_kafka_event_destroy(ev);
            ev = NULL;
            goto cleanup;
        }
        rd_kafka_event_destroy(ev);
        ev = NULL;
        struct timespec pause = {0, 200 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
cleanup:
    if (opts != NULL)
        rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(q);
    rd_kafka_ConfigResource_destroy(res);
    return ev;
}

int bp_kafka_topic_describe(rd_kafka_t *rk, const char *topic, int timeout_ms, bp_kafka_topic_info_t *out,
                            char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->min_isr = -1;
    long long deadline = bp_clock_ms() + timeout_ms;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (rkt == NULL) {
        snprintf(err, errlen, "topic %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    const struct rd_kafka_metadata *md = NULL;
    int rc = -1;
    for (;;) {
        long long left = deadline - bp_clock_ms();
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, left > 0 ? (int)left : 1);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "no metadata from the brokers: %s", rd_kafka_err2str(e));
            md = NULL;
            goto cleanup;
        }
        rd_kafka_resp_err_t te = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        out->brokers = md->broker_cnt;
        if (te == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || (te == RD_KAFKA_RESP_ERR_NO_ERROR && md->topics[0].partition_cnt == 0)) {
            rc = 0; /* missing */
            goto cleanup;
        }
        if (te == RD_KAFKA_RESP_ERR_NO_ERROR)
            break;
        if (bp_clock_ms() + 200 >= deadline) { /* e.g. LEADER_NOT_AVAILABLE just after creation */
            snprintf(err, errlen, "topic %s: %s", topic, rd_kafka_err2str(te));
            goto cleanup;
        }
        rd_kafka_metadata_destroy(md);
        md = NULL;
        struct timespec pause = {0, 200 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    const rd_kafka_metadata_topic_t *t = &md->topics[0];
    out->partitions = t->partition_cnt;
    out->replication = t->partitions[0].replica_cnt;
    for (int i = 0; i < t->partition_cnt; i++) {
        if (t->partitions[i].replica_cnt < out->replication)
            out->replication = t->partitions[i].replica_cnt;
        if (t->partitions[i].isr_cnt < t->partitions[i].replica_cnt)
            out->under_replicated++;
    }
    long long left = deadline - bp_clock_ms();
    const rd_kafka_ConfigEntry_t **entries = NULL;
    size_t n = 0;
    rd_kafka_event_t *ev = describe_configs(rk, topic, left > 100 ? (int)left : 100, &entries, &n, err, errlen);
    if (ev == NULL)
        goto cleanup;
    for (size_t i = 0; i < n; i++) {
        const char *name = rd_kafka_ConfigEntry_name(entries[i]);
        const char *value = rd_kafka_ConfigEntry_value(entries[i]);
        if (value == NULL)
            continue;
        if (strcmp(name, "min.insync.replicas") == 0)
            out->min_isr = atoi(value);
        else if (strcmp(name, "message.timestamp.type") == 0)
            snprintf(out->timestamp_type, sizeof(out->timestamp_type), "%s", value);
    }
    rd_kafka_event_destroy(ev);
    for (int i = 0; i < t->partition_cnt; i++) {
        if (out->min_isr > 0 && t->partitions[i].isr_cnt < out->min_isr)
            out->below_min_isr++;
    }
    rc = 0;
cleanup:
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc;
}

int bp_kafka_topic_set_configs(rd_kafka_t *rk, const char *topic, const char *const *names,
                               const char *const *values, size_t n, int timeout_ms, char *err, size_t errlen)
{
    char why[512];
    int rc = -1;
    long long deadline = bp_clock_ms() + timeout_ms;
    const rd_kafka_ConfigEntry_t **entries = NULL;
    size_t nentries = 0;
    rd_kafka_event_t *described = describe_configs(rk, topic, timeout_ms, &entries, &nentries, err, errlen);
    if (described == NULL)
        return -1;
    rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_event_t *ev = NULL;
    /* what is set on the topic itself stays set, unless it is one of the changes */
    for (size_t i = 0; i < nentries; i++) {
        const char *name = rd_kafka_ConfigEntry_name(entries[i]);
        const char *value = rd_kafka_ConfigEntry_value(entries[i]);
        if (rd_kafka_ConfigEntry_source(entries[i]) != RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG)
            continue;
        int changed = 0;
        for (size_t k = 0; k < n && !changed; k++)
            changed = strcmp(name, names[k]) == 0;
        if (changed)
            continue;
        if (value == NULL) { /* a sensitive value the broker does not show: resending would erase it */
            snprintf(err, errlen, "topic %s: its config %s is sensitive and cannot be kept; set it by hand", topic, name);
            goto cleanup;
        }
        if (rd_kafka_ConfigResource_set_config(res, name, value) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "topic %s: cannot keep %s=%s", topic, name, value);
            goto cleanup;
        }
    }
    for (size_t k = 0; k < n; k++) {
        if (rd_kafka_ConfigResource_set_config(res, names[k], values[k]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "topic %s: cannot set %s=%s", topic, names[k], values[k]);
            goto cleanup;
        }
    }
    long long left = deadline - bp_clock_ms();
    int t = left > 1000 ? (int)left : 1000;
    if ((opts = admin_options(rk, RD_KAFKA_ADMIN_OP_ALTERCONFIGS, t, why, sizeof(why))) == NULL) {
        snprintf(err, errlen, "topic %s: %s", topic, why);
        goto cleanup;
    }
    rd_kafka_AlterConfigs(rk, &res, 1, opts, q);
    if ((ev = admin_result(q, topic, t, err, errlen)) == NULL)
        goto cleanup;
    size_t nres = 0;
    const rd_kafka_ConfigResource_t **rs =
        rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &nres);
    if (nres != 1 || rd_kafka_ConfigResource_error(rs[0]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "topic %s: changing its configuration: %s", topic,
                 nres != 1 ? "no answer" : rd_kafka_ConfigResource_error_string(rs[0]));
        goto cleanup;
    }
    rc = 0;
cleanup:
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    if (opts != NULL)
        rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(q);
    rd_kafka_ConfigResource_destroy(res);
    rd_kafka_event_destroy(described);
    return rc;
}

int bp_kafka_log_error(rd_kafka_t *rk, int err, const char *reason, const char *who)
{
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof(why));
        bp_log_error("%s: fatal error %s: %s", who, rd_kafka_err2name(orig), why);
        return 1;
    }
    bp_log_warn("%s: %s: %s", who, rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
    return 0;
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

int bp_kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, char *err, size_t errlen)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (rkt == NULL) {
        snprintf(err, errlen, "topic %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
        return -2;
    }
    long long deadline = bp_clock_ms() + timeout_ms;
    int n;
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        long long left = deadline - bp_clock_ms();
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
        if (bp_clock_ms() + 200 >= deadline) { /* e.g. LEADER_NOT_AVAILABLE that did not pass */
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
    long long deadline = bp_clock_ms() + timeout_ms;
    for (int p = 0; p < n; p++) {
        long long left = deadline - bp_clock_ms();
        rd_kafka_resp_err_t e =
            rd_kafka_query_watermark_offsets(rk, topic, p, &low[p], &high[p], left > 0 ? (int)left : 1);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "watermarks of %s partition %d: %s", topic, p, rd_kafka_err2str(e));
            return -1;
        }
    }
    return 0;
}
