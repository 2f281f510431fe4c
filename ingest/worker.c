/* worker.c - the consumer loop of the ingest worker: joins the group with cooperative-sticky
 * assignment, logs its assignment, and (with the write path) applies what it consumes. */
#include "worker.h"

#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "bp_kafka.h"
#include "bp_log.h"

struct bp_worker {
    const bp_config_t *cfg;
    volatile sig_atomic_t *stop;
    rd_kafka_t *rk;
};

static void log_partitions(const char *what, const rd_kafka_topic_partition_list_t *parts)
{
    char buf[1024];
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; i < parts->cnt && off < sizeof(buf) - 16; i++)
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%d", i ? "," : "", parts->elems[i].partition);
    bp_info("%s %d partitions of %s: [%s]", what, parts->cnt, parts->cnt ? parts->elems[0].topic : "-", buf);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                         void *opaque)
{
    rd_kafka_error_t *error = NULL;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        log_partitions("assigned", parts);
        error = rd_kafka_incremental_assign(rk, parts);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        log_partitions("revoked", parts);
        error = rd_kafka_incremental_unassign(rk, parts);
    } else {
        bp_error("rebalance failed: %s", rd_kafka_err2str(err));
        error = rd_kafka_incremental_unassign(rk, parts);
    }
    if (error != NULL) {
        bp_error("rebalance: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
}

bp_worker_t *bp_worker_new(const bp_config_t *cfg, volatile sig_atomic_t *stop, char *err, size_t errlen)
{
    bp_worker_t *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->cfg = cfg;
    w->stop = stop;
    rd_kafka_conf_t *conf = bp_kafka_conf_new(cfg, "batchpipe-ingest", err, errlen);
    if (conf == NULL ||
        bp_kafka_conf_set(conf, "group.id", cfg->group_id, err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "partition.assignment.strategy", "cooperative-sticky", err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "enable.auto.commit", "false", err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, errlen) != 0) {
        if (conf != NULL)
            rd_kafka_conf_destroy(conf);
        free(w);
        return NULL;
    }
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_opaque(conf, w);
    w->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
    if (w->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        free(w);
        return NULL;
    }
    rd_kafka_poll_set_consumer(w->rk);
    return w;
}

int bp_worker_run(bp_worker_t *w)
{
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, w->cfg->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(w->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        bp_error("subscribe to %s: %s", w->cfg->topic, rd_kafka_err2str(err));
        return -1;
    }
    bp_info("joining group %s on topic %s", w->cfg->group_id, w->cfg->topic);
    while (!*w->stop) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(w->rk, 100);
        if (msg == NULL)
            continue;
        if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR && msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            bp_warn("consumer: %s", rd_kafka_message_errstr(msg));
        rd_kafka_message_destroy(msg);
    }
    return 0;
}

void bp_worker_free(bp_worker_t *w)
{
    if (w == NULL)
        return;
    bp_info("leaving group %s", w->cfg->group_id);
    rd_kafka_consumer_close(w->rk);
    rd_kafka_destroy(w->rk);
    free(w);
}
