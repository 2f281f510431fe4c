/* dlq.c - dead-letter producer: idempotent, one "round" of letters per transaction, and a wait that
 * returns only when the broker acked every letter of the round (the delivery report is the proof). */
#include "dlq.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bp_clock.h"
#include "bp_kafka.h"
#include "bp_log.h"

#define DLQ_MESSAGE_TIMEOUT_MS "10000" /* a letter not acked by then fails the round: the txn is retried */
#define DLQ_MESSAGE_MAX_BYTES "67108864"

/* A letter's opaque: its round in the high 32 bits (reports of older rounds are ignored), its index
 * in the round in the low 32 (its delivery report says where it went: the receipt records it). */
#define LETTER_OPAQUE(round, i) ((void *)(((uintptr_t)(round) << 32) | (uintptr_t)(i)))
#define LETTER_ROUND(op) ((uint32_t)((uintptr_t)(op) >> 32))
#define LETTER_INDEX(op) ((uint32_t)((uintptr_t)(op) & 0xffffffffu))

struct bp_dlq {
    const bp_config_t *cfg;
    rd_kafka_t *rk;
    uint32_t round;
    size_t sent, acked, failed;
    bp_dlq_where_t *where; /* where[i]: letter i of the round, from its delivery report */
    size_t where_cap;
    rd_kafka_resp_err_t first_err;
    char first_errstr[256];
    int fatal;
};

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
    bp_dlq_t *d = opaque;
    if (LETTER_ROUND(rkm->_private) != d->round)
        return;
    if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        uint32_t i = LETTER_INDEX(rkm->_private);
        if (i < d->sent)
            d->where[i] = (bp_dlq_where_t){rkm->partition, rkm->offset};
        d->acked++;
        return;
    }
    if (d->failed++ == 0) {
        d->first_err = rkm->err;
        snprintf(d->first_errstr, sizeof(d->first_errstr), "%s", rd_kafka_err2str(rkm->err));
    }
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    bp_dlq_t *d = opaque;
    if (bp_kafka_log_error(rk, err, reason, "dead-letter producer"))
        d->fatal = 1;
}

bp_dlq_t *bp_dlq_new(const bp_config_t *cfg, char *err, size_t errlen)
{
    bp_dlq_t *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->cfg = cfg;
    d->round = 1;
    rd_kafka_conf_t *conf = bp_kafka_conf_new(cfg, "batchpipe-ingest-dlq", err, errlen);
    if (conf == NULL || bp_kafka_conf_set(conf, "enable.idempotence", "true", err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "message.timeout.ms", DLQ_MESSAGE_TIMEOUT_MS, err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "message.max.bytes", DLQ_MESSAGE_MAX_BYTES, err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "linger.ms", "0", err, errlen) != 0) {
        if (conf != NULL)
            rd_kafka_conf_destroy(conf);
        free(d);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_opaque(conf, d);
    d->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (d->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        free(d);
        return NULL;
    }
    return d;
}

/* Add a header; value of len bytes (not NUL-terminated). */
static int add_header(rd_kafka_headers_t *h, const char *name, const void *value, size_t len)
{
    return rd_kafka_header_add(h, name, -1, value, (ssize_t)len) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

bp_err_t bp_dlq_send(bp_dlq_t *d, const rd_kafka_message_t *rkm, const char *reason, const char *origin,
                     size_t *letter, char *err, size_t errlen)
{
    if (d->sent == d->where_cap) {
        size_t cap = d->where_cap ? 2 * d->where_cap : 16;
        bp_dlq_where_t *where = realloc(d->where, cap * sizeof(*where));
        if (where == NULL) {
            snprintf(err, errlen, "dead letters: out of memory");
            return BP_ERR_NOMEM;
        }
        d->where = where;
        d->where_cap = cap;
    }
    rd_kafka_headers_t *src = NULL;
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    char part[16], off[24];
    snprintf(part, sizeof(part), "%d", (int)rkm->partition);
    snprintf(off, sizeof(off), "%lld", (long long)rkm->offset);
    const char *topic = rd_kafka_topic_name(rkm->rkt);
    const void *rid = NULL;
    size_t rid_len = 0;
    if (rd_kafka_message_headers(rkm, &src) != RD_KAFKA_RESP_ERR_NO_ERROR)
        src = NULL;
    if (src != NULL && rd_kafka_header_get_last(src, BP_HDR_REQUEST_ID, &rid, &rid_len) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        add_header(h, BP_HDR_REQUEST_ID, rid, rid_len) != 0)
        goto nomem;
    /* a replayed message that fails again says so in its new letter */
    if (src != NULL && rd_kafka_header_get_last(src, BP_HDR_DLQ_REPLAYED_FROM, &rid, &rid_len) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        add_header(h, BP_HDR_DLQ_REPLAYED_FROM, rid, rid_len) != 0)
        goto nomem;
    /* the trace goes on with the letter (and with its replay) */
    if (src != NULL && rd_kafka_header_get_last(src, BP_HDR_TRACEPARENT, &rid, &rid_len) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        add_header(h, BP_HDR_TRACEPARENT, rid, rid_len) != 0)
        goto nomem;
    /* the letter keeps the original's timestamp: a replay is then ordered as the original was
     * ("latest wins" by message timestamp), not as of the moment it was dead-lettered */
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(rkm, &tstype);
    if (add_header(h, BP_HDR_DLQ_REASON, reason, strlen(reason)) != 0 ||
        add_header(h, BP_HDR_DLQ_TOPIC, topic, strlen(topic)) != 0 ||
        add_header(h, BP_HDR_DLQ_PARTITION, part, strlen(part)) != 0 ||
        add_header(h, BP_HDR_DLQ_OFFSET, off, strlen(off)) != 0 ||
        add_header(h, BP_HDR_ORIGIN, origin, strlen(origin)) != 0)
        goto nomem;
    rd_kafka_resp_err_t e = rd_kafka_producev(
        d->rk, RD_KAFKA_V_TOPIC(d->cfg->dlq_topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_KEY(rkm->key, rkm->key_len), RD_KAFKA_V_VALUE(rkm->payload, rkm->len),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_TIMESTAMP(ts > 0 ? ts : 0), RD_KAFKA_V_OPAQUE(LETTER_OPAQUE(d->round, d->sent)),
        RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(h); /* ownership passes only on success */
        snprintf(err, errlen, "dead-letter produce to %s: %s", d->cfg->dlq_topic, rd_kafka_err2str(e));
        return bp_kafka_classify(e);
    }
    d->where[d->sent] = (bp_dlq_where_t){-1, -1};
    *letter = d->sent++;
    return BP_OK;
nomem:
    rd_kafka_headers_destroy(h);
    snprintf(err, errlen, "dead-letter headers: out of memory");
    return BP_ERR_NOMEM;
}

static void next_round(bp_dlq_t *d)
{
    d->round++;
    d->sent = d->acked = d->failed = 0;
    d->first_err = RD_KAFKA_RESP_ERR_NO_ERROR;
    d->first_errstr[0] = '\0';
}

bp_dlq_where_t bp_dlq_letter_where(const bp_dlq_t *d, size_t letter)
{
    if (letter >= d->sent)
        return (bp_dlq_where_t){-1, -1};
    return d->where[letter];
}

bp_err_t bp_dlq_wait(bp_dlq_t *d, int timeout_ms, char *err, size_t errlen)
{
    long long deadline = bp_clock_ms() + timeout_ms;
    while (d->acked + d->failed < d->sent && !d->fatal) {
        long long left = deadline - bp_clock_ms();
        if (left <= 0)
            break;
        rd_kafka_poll(d->rk, left < 100 ? (int)left : 100);
    }
    bp_err_t rc = BP_OK;
    if (d->fatal) {
        snprintf(err, errlen, "dead-letter producer: fatal error");
        rc = BP_ERR_FATAL;
    } else if (d->failed > 0) {
        snprintf(err, errlen, "dead-letter produce to %s failed for %zu of %zu: %s", d->cfg->dlq_topic,
                 d->failed, d->sent, d->first_errstr);
        rc = bp_kafka_classify(d->first_err);
        if (bp_err_class(rc) == BP_CLASS_PERMANENT)
            rc = BP_ERR_KAFKA_DOWN; /* nothing else to do with the letter than to try again */
    } else if (d->acked < d->sent) {
        snprintf(err, errlen, "dead-letter produce to %s: %zu of %zu not acknowledged within %d ms",
                 d->cfg->dlq_topic, d->sent - d->acked, d->sent, timeout_ms);
        rc = BP_ERR_TIMEOUT;
    }
    if (rc != BP_OK) {
        rd_kafka_purge(d->rk, RD_KAFKA_PURGE_F_QUEUE);
        next_round(d);
    }
    /* on success the round stays until bp_dlq_done: bp_dlq_letter_where reads its positions */
    return rc;
}

void bp_dlq_done(bp_dlq_t *d)
{
    next_round(d);
}

void bp_dlq_forget(bp_dlq_t *d)
{
    if (d->sent > d->acked + d->failed)
        rd_kafka_purge(d->rk, RD_KAFKA_PURGE_F_QUEUE);
    next_round(d);
    rd_kafka_poll(d->rk, 0);
}

int bp_dlq_fatal(const bp_dlq_t *d)
{
    return d->fatal;
}

void bp_dlq_free(bp_dlq_t *d, int timeout_ms)
{
    if (d == NULL)
        return;
    rd_kafka_flush(d->rk, timeout_ms);
    int left = rd_kafka_outq_len(d->rk);
    if (left > 0)
        bp_log_warn("dead-letter producer: %d messages or requests still queued at exit", left);
    rd_kafka_destroy(d->rk);
    free(d->where);
    free(d);
}
