/* kafka_util.c - shared pieces of the CLI's Kafka subcommands (kafka_util.h): a quiet client, topic
 * metadata and watermarks, argument parsing. */
#include "kafka_util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bp_clock.h"
#include "bp_kafka.h"
#include "bp_log.h"

/* librdkafka logs every refused connection; a command line tool says what failed once, itself. */
static void quiet_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)level;
    bp_log_debug("librdkafka %s: %s: %s", rk ? rd_kafka_name(rk) : "-", fac, buf);
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
    char why[256];
    int n = bp_kafka_partition_count(rk, topic, timeout_ms, why, sizeof(why));
    if (n == 0)
        snprintf(err, errlen, "topic %s does not exist (create it with batchpipe topics)", topic);
    else if (n == -1)
        snprintf(err, errlen, "no answer from the Kafka brokers at %s within %d s (%s)", brokers, timeout_ms / 1000,
                 why);
    else if (n < 0)
        snprintf(err, errlen, "%s", why);
    return n > 0 ? n : -1;
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

