/* kafka_util.c - shared pieces of the CLI's Kafka subcommands (kafka_util.h): a quiet client, topic
 * metadata and watermarks, argument parsing. */
#include "kafka_util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bp_kafka.h"
#include "bp_log.h"

long long cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* librdkafka logs every refused connection; a command line tool says what failed once, itself. */
static void quiet_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)level;
    bp_debug("librdkafka %s: %s: %s", rk ? rd_kafka_name(rk) : "-", fac, buf);
}

rd_kafka_conf_t *cli_kafka_conf(const bp_config_t *cfg, const char *const *extra, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = bp_kafka_conf_new(cfg, "batchpipe-cli", err, errlen);
    if (conf == NULL)
        return NULL;
    rd_kafka_conf_set_log_cb(conf, quiet_log_cb);
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i += 2) {
        if (bp_kafka_conf_set(conf, extra[i], extra[i + 1], err, errlen) != 0) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    return conf;
}

rd_kafka_t *cli_kafka_new(const bp_config_t *cfg, rd_kafka_type_t type, const char *const *extra, char *err,
                          size_t errlen)
{
    rd_kafka_conf_t *conf = cli_kafka_conf(cfg, extra, err, errlen);
    if (conf == NULL)
        return NULL;
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, errlen);
    if (rk == NULL)
        rd_kafka_conf_destroy(conf);
    return rk;
}

int cli_kafka_partitions(rd_kafka_t *rk, const char *brokers, const char *topic, int timeout_ms, char *err,
                         size_t errlen)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (rkt == NULL) {
        snprintf(err, errlen, "topic %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    long long deadline = cli_now_ms() + timeout_ms;
    int n = -1;
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        long long left = deadline - cli_now_ms();
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, left > 0 ? (int)left : 1);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "no answer from the Kafka brokers at %s within %d s (%s)", brokers,
                     timeout_ms / 1000, rd_kafka_err2str(e));
            break;
        }
        rd_kafka_resp_err_t te =
            md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        int cnt = md->topic_cnt == 1 ? md->topics[0].partition_cnt : 0;
        rd_kafka_metadata_destroy(md);
        if (te == RD_KAFKA_RESP_ERR_NO_ERROR && cnt > 0) {
            n = cnt;
            break;
        }
        if (te == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || (te == RD_KAFKA_RESP_ERR_NO_ERROR && cnt == 0)) {
            snprintf(err, errlen, "topic %s does not exist (create it with batchpipe topics)", topic);
            break;
        }
        if (cli_now_ms() + 200 >= deadline) { /* e.g. LEADER_NOT_AVAILABLE that did not pass */
            snprintf(err, errlen, "topic %s: %s", topic, rd_kafka_err2str(te));
            break;
        }
        struct timespec pause = {0, 200 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    rd_kafka_topic_destroy(rkt);
    return n;
}

int cli_kafka_watermarks(rd_kafka_t *rk, const char *topic, int n, int64_t *low, int64_t *high,
                         int timeout_ms, char *err, size_t errlen)
{
    long long deadline = cli_now_ms() + timeout_ms;
    for (int p = 0; p < n; p++) {
        long long left = deadline - cli_now_ms();
        rd_kafka_resp_err_t e =
            rd_kafka_query_watermark_offsets(rk, topic, p, &low[p], &high[p], left > 0 ? (int)left : 1);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "watermarks of %s partition %d: %s", topic, p, rd_kafka_err2str(e));
            return -1;
        }
    }
    return 0;
}

int cli_parse_letter_ref(const char *s, int32_t *partition, int64_t *offset)
{
    const char *colon = strchr(s, ':');
    if (colon == NULL || colon == s || colon - s > 10)
        return -1;
    char part[12];
    memcpy(part, s, (size_t)(colon - s));
    part[colon - s] = '\0';
    long long p = 0, o = 0;
    if (cli_parse_ll(part, 0, INT32_MAX, &p) != 0 || cli_parse_ll(colon + 1, 0, INT64_MAX, &o) != 0)
        return -1;
    *partition = (int32_t)p;
    *offset = (int64_t)o;
    return 0;
}

