/* producer.c - per-thread Kafka producer whose delivery reports are driven from the event loop.
 * librdkafka wakes the loop through a pipe; a 100 ms tick polls as a safety net and watches shutdown. */
#include "producer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bp_clock.h"
#include "bp_kafka.h"
#include "bp_log.h"

#define TICK_MS 100
#define POLL_ROUNDS_MAX 1000 /* rd_kafka_poll calls per wake-up; what is left waits for the tick */
#define STATS_INTERVAL "1000" /* ms between librdkafka's statistics (they tell which brokers are up) */
/* A broker seen up this recently still counts: the broker closes idle connections (and librdkafka
 * reconnects at once), which must not make /readyz flap. */
#define BROKER_UP_GRACE_MS 3000

/* Why a message got no ack: the label values of bp_produce_failures_total. */
typedef enum fail_reason {
    FAIL_QUEUE_FULL,
    FAIL_TOO_LARGE,
    FAIL_TIMEOUT,
    FAIL_BROKER,
    FAIL_FATAL,
    FAIL_SHUTDOWN,
    FAIL_NOMEM,
    FAIL__COUNT
} fail_reason_t;

static const char *const fail_names[FAIL__COUNT] = {"queue_full", "too_large", "timeout", "broker_error",
                                                    "fatal", "shutdown", "nomem"};

/* The registry's series this producer updates (cached: no lookup on the hot path). Shared series
 * (no thread label) are summed over the threads by the atomics of bp_metrics.c. */
typedef struct producer_metrics {
    bp_metric_t *latency;  /* histogram: delivery report time - bp_producer_send time, acked only */
    bp_metric_t *accepted; /* counters */
    bp_metric_t *rejected;
    bp_metric_t *failures[FAIL__COUNT];
    bp_metric_t *pending;     /* gauges of this thread, set by the loop thread itself */
    bp_metric_t *brokers_up;
    bp_metric_t *healthy;
} producer_metrics_t;

/* One message librdkafka holds. Freed by its delivery report (or at dispose, after rd_kafka_destroy). */
typedef struct delivery {
    h2o_linklist_t link;          /* in bp_producer.deliveries */
    h2o_timeout_entry_t deadline; /* linked until the verdict */
    bp_producer_t *p;
    bp_produce_cb cb;
    void *opaque;
    uint64_t enqueued_us; /* monotonic, for the latency histogram */
    int decided;          /* cb was called */
} delivery_t;

struct bp_producer {
    bp_api_thread_t *t; /* borrowed: the thread that owns this producer */
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    rd_kafka_queue_t *mainq; /* the queue the delivery reports and errors arrive on */
    int pipe_rd, pipe_wr;    /* librdkafka writes a byte to pipe_wr when mainq becomes non-empty */
    h2o_socket_t *pipe_sock; /* owns pipe_rd once created */
    h2o_timeout_t tick;
    h2o_timeout_entry_t tick_entry;
    h2o_timeout_t deadline; /* BP_PRODUCE_TIMEOUT_MS, one entry per waiting message */
    int timeouts_ready;
    h2o_linklist_t deliveries;
    size_t outstanding;       /* entries in deliveries */
    uint64_t stop_seen_ms;    /* monotonic time the stop flag was first seen; 0 before */
    char timeout_reason[128]; /* "the broker did not acknowledge within N ms" */
    atomic_int healthy;
    atomic_ullong accepted, rejected, failures, pending;
    atomic_int brokers_up;       /* brokers in state UP in the last statistics; -1 before the first */
    atomic_ullong broker_up_ms;  /* monotonic ms when a broker was last seen up; 0 never */
    producer_metrics_t m;
};

static void count(atomic_ullong *c, long long delta)
{
    if (delta >= 0)
        atomic_fetch_add_explicit(c, (unsigned long long)delta, memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(c, (unsigned long long)-delta, memory_order_relaxed);
}

/* Give the message its one verdict; later calls do nothing. The delivery stays listed until its
 * delivery report (librdkafka still holds it). */
static fail_reason_t reason_of(bp_err_t err, rd_kafka_resp_err_t kerr)
{
    if (kerr == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || err == BP_ERR_INVALID)
        return FAIL_TOO_LARGE;
    switch (err) {
    case BP_ERR_QUEUE_FULL: return FAIL_QUEUE_FULL;
    case BP_ERR_TIMEOUT: return kerr == RD_KAFKA_RESP_ERR_NO_ERROR ? FAIL_TIMEOUT : FAIL_BROKER;
    case BP_ERR_FATAL: return FAIL_FATAL;
    case BP_ERR_NOMEM: return FAIL_NOMEM;
    case BP_ERR_KAFKA_DOWN: return kerr == RD_KAFKA_RESP_ERR_NO_ERROR ? FAIL_SHUTDOWN : FAIL_BROKER;
    default: return FAIL_BROKER;
    }
}

static void note_failure(bp_producer_t *p, bp_err_t err, rd_kafka_resp_err_t kerr)
{
    count(&p->failures, 1);
    bp_counter_add(p->m.failures[reason_of(err, kerr)], 1);
}

static void set_pending(bp_producer_t *p, long long delta)
{
    count(&p->pending, delta);
    bp_gauge_set(p->m.pending, (double)atomic_load_explicit(&p->pending, memory_order_relaxed));
}

static void decide(delivery_t *d, const bp_produce_result_t *res)
{
    if (d->decided)
        return;
    d->decided = 1;
    if (h2o_timeout_is_linked(&d->deadline))
        h2o_timeout_unlink(&d->deadline);
    if (res->err != BP_OK)
        note_failure(d->p, res->err, res->kafka_err);
    d->cb(d->opaque, res);
}

static bp_produce_result_t failed(bp_err_t err, rd_kafka_resp_err_t kerr, const char *reason)
{
    return (bp_produce_result_t){
        .err = err, .kafka_err = kerr, .reason = reason, .partition = -1, .offset = -1, .timestamp = -1};
}

/* Give every undecided message the same verdict (fatal error, shutdown). */
static void decide_all(bp_producer_t *p, const bp_produce_result_t *res)
{
    /* a callback cannot remove deliveries (only delivery reports do, and none are served here) */
    for (h2o_linklist_t *l = p->deliveries.next; l != &p->deliveries; l = l->next)
        decide(H2O_STRUCT_FROM_MEMBER(delivery_t, link, l), res);
}

static void on_fatal(bp_producer_t *p)
{
    if (!atomic_exchange(&p->healthy, 0))
        return;
    bp_gauge_set(p->m.healthy, 0);
    char why[512] = "";
    rd_kafka_resp_err_t e = rd_kafka_fatal_error(p->rk, why, sizeof(why));
    bp_log_error("thread %d: the Kafka producer hit a fatal error (%s: %s): answering its %zu waiting "
                 "requests 503 and refusing new ones; restart the process",
                 p->t->index, rd_kafka_err2name(e), why, p->outstanding);
    bp_produce_result_t res =
        failed(BP_ERR_FATAL, RD_KAFKA_RESP_ERR__FATAL, "the Kafka producer of this server hit a fatal error");
    decide_all(p, &res);
}

/* librdkafka's delivery report, served by rd_kafka_poll on the loop thread. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    bp_producer_t *p = opaque;
    delivery_t *d = m->_private;
    if (d == NULL)
        return;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_timestamp_type_t tstype;
        bp_produce_result_t res = {.err = BP_OK,
                                   .kafka_err = RD_KAFKA_RESP_ERR_NO_ERROR,
                                   .reason = "acknowledged",
                                   .partition = m->partition,
                                   .offset = m->offset,
                                   .timestamp = rd_kafka_message_timestamp(m, &tstype)};
        count(&p->accepted, 1);
        bp_counter_add(p->m.accepted, 1);
        bp_histogram_observe(p->m.latency, (double)(bp_clock_us() - d->enqueued_us) / 1e6);
        if (d->decided)
            bp_log_info("thread %d: the broker acknowledged a message after its request was answered "
                        "(partition %d, offset %lld)",
                        p->t->index, (int)m->partition, (long long)m->offset);
        decide(d, &res);
    } else {
        if (m->err == RD_KAFKA_RESP_ERR__FATAL)
            on_fatal(p);
        bp_produce_result_t res = failed(bp_kafka_classify(m->err), m->err, rd_kafka_err2str(m->err));
        decide(d, &res);
    }
    h2o_linklist_unlink(&d->link);
    p->outstanding--;
    set_pending(p, -1);
    free(d);
    (void)rk;
}

/* Errors librdkafka reports outside a message (broker down, fatal idempotence errors). */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    bp_producer_t *p = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        on_fatal(p);
        return;
    }
    bp_log_warn("thread %d: Kafka producer: %s: %s", p->t->index, rd_kafka_err2name((rd_kafka_resp_err_t)err),
                reason);
    (void)rk;
}

/* librdkafka's statistics (every STATS_INTERVAL ms, served by rd_kafka_poll on the loop thread): count
 * the brokers whose connection is up. The internal and logical (coordinator) brokers do not count.
 * Returns 0: librdkafka frees json. */
static int on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    bp_producer_t *p = opaque;
    json_t *doc = json_loadb(json, json_len, 0, NULL);
    json_t *brokers = json_object_get(doc, "brokers");
    if (!json_is_object(brokers)) {
        json_decref(doc);
        return 0;
    }
    int up = 0;
    const char *name;
    json_t *b;
    json_object_foreach(brokers, name, b) {
        const char *state = json_string_value(json_object_get(b, "state"));
        const char *source = json_string_value(json_object_get(b, "source"));
        if (source != NULL && (strcmp(source, "internal") == 0 || strcmp(source, "logical") == 0))
            continue;
        if (state != NULL && (strcmp(state, "UP") == 0 || strcmp(state, "UPDATE") == 0))
            up++;
    }
    json_decref(doc);
    int before = atomic_exchange(&p->brokers_up, up);
    if (up > 0)
        atomic_store(&p->broker_up_ms, (uint64_t)bp_clock_ms());
    if (up == 0 && before > 0)
        bp_log_warn("thread %d: no Kafka broker connection is up", p->t->index);
    else if (up > 0 && before == 0)
        bp_log_info("thread %d: a Kafka broker connection is up again", p->t->index);
    bp_gauge_set(p->m.brokers_up, up);
    (void)rk;
    (void)name;
    return 0;
}

/* Serve what is queued on the main queue: delivery reports and errors. Never blocks. */
static void serve(bp_producer_t *p)
{
    for (int i = 0; i < POLL_ROUNDS_MAX && rd_kafka_poll(p->rk, 0) > 0; i++)
        ;
}

static void on_pipe_readable(h2o_socket_t *sock, const char *err)
{
    bp_producer_t *p = sock->data;
    char buf[256];
    /* drain first: librdkafka writes only when the queue goes from empty to non-empty */
    while (read(p->pipe_rd, buf, sizeof(buf)) > 0)
        ;
    serve(p);
    (void)err;
}

/* While stopping, requests still waiting are answered halfway through the shutdown bound, so that
 * their answers reach the clients before the server gives up on in-flight requests. */
static void watch_shutdown(bp_producer_t *p)
{
    if (!*p->t->api->stop)
        return;
    uint64_t now = (uint64_t)bp_clock_ms();
    if (p->stop_seen_ms == 0)
        p->stop_seen_ms = now;
    if (now < p->stop_seen_ms + (uint64_t)p->t->api->cfg->shutdown_timeout_ms / 2)
        return;
    bp_produce_result_t res = failed(BP_ERR_KAFKA_DOWN, RD_KAFKA_RESP_ERR_NO_ERROR,
                                     "the server is shutting down and the broker has not acknowledged yet");
    decide_all(p, &res);
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    bp_producer_t *p = H2O_STRUCT_FROM_MEMBER(bp_producer_t, tick_entry, entry);
    serve(p);
    watch_shutdown(p);
    h2o_timeout_link(p->t->loop, &p->tick, &p->tick_entry);
}

static void on_deadline(h2o_timeout_entry_t *entry)
{
    delivery_t *d = H2O_STRUCT_FROM_MEMBER(delivery_t, deadline, entry);
    bp_produce_result_t res = failed(BP_ERR_TIMEOUT, RD_KAFKA_RESP_ERR_NO_ERROR, d->p->timeout_reason);
    decide(d, &res);
}

/* A send that queued nothing: free the value, count it, say why ("what" followed by "detail"). */
static bp_err_t refuse(bp_producer_t *p, char *value, bp_err_t e, char *err, size_t errlen, const char *what,
                       const char *detail)
{
    free(value);
    note_failure(p, e, RD_KAFKA_RESP_ERR_NO_ERROR);
    snprintf(err, errlen, "%s%s", what, detail);
    return e;
}

bp_err_t bp_producer_send(bp_producer_t *p, const char *key, size_t keylen, char *value, size_t valuelen,
                          const char *request_id, const char *traceparent, bp_produce_cb cb, void *opaque,
                          char *err, size_t errlen)
{
    if (!atomic_load(&p->healthy))
        return refuse(p, value, BP_ERR_FATAL, err, errlen,
                      "the Kafka producer of this server hit a fatal error", "");
    if (*p->t->api->stop)
        return refuse(p, value, BP_ERR_KAFKA_DOWN, err, errlen, "the server is shutting down", "");
    if (p->outstanding >= (size_t)p->t->api->cfg->produce_queue_max)
        return refuse(p, value, BP_ERR_QUEUE_FULL, err, errlen,
                      "too many batches are waiting for the broker's acknowledgement on this server", "");

    delivery_t *d = calloc(1, sizeof(*d));
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(3);
    if (d == NULL || hdrs == NULL) {
        free(d);
        if (hdrs != NULL)
            rd_kafka_headers_destroy(hdrs);
        return refuse(p, value, BP_ERR_NOMEM, err, errlen, "out of memory", "");
    }
    if (request_id != NULL)
        rd_kafka_header_add(hdrs, BP_HDR_REQUEST_ID, -1, request_id, -1);
    rd_kafka_header_add(hdrs, BP_HDR_CONTENT_TYPE, -1, "application/json", -1);
    if (traceparent != NULL)
        rd_kafka_header_add(hdrs, BP_HDR_TRACEPARENT, -1, traceparent, -1);
    d->p = p;
    d->cb = cb;
    d->opaque = opaque;
    d->deadline.cb = on_deadline;
    d->enqueued_us = bp_clock_us();

    /* F_FREE: librdkafka frees value once it is done, but only if producev succeeds */
    rd_kafka_resp_err_t e = rd_kafka_producev(
        p->rk, RD_KAFKA_V_RKT(p->rkt), RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_KEY(key, keylen),
        RD_KAFKA_V_VALUE(value, valuelen), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(hdrs);
        free(d);
        if (e == RD_KAFKA_RESP_ERR__FATAL)
            on_fatal(p);
        bp_err_t be = bp_kafka_classify(e);
        if (e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
            be = BP_ERR_INVALID;
        return refuse(p, value, be, err, errlen, "the Kafka producer refused the message: ",
                      rd_kafka_err2str(e));
    }
    h2o_linklist_insert(&p->deliveries, &d->link);
    p->outstanding++;
    set_pending(p, 1);
    h2o_timeout_link(p->t->loop, &p->deadline, &d->deadline);
    return BP_OK;
}

int bp_producer_healthy(const bp_producer_t *p)
{
    return p != NULL && atomic_load(&p->healthy);
}

void bp_producer_note_rejected(bp_producer_t *p)
{
    if (p != NULL) {
        count(&p->rejected, 1);
        bp_counter_add(p->m.rejected, 1);
    }
}

int bp_producer_brokers_up(const bp_producer_t *p)
{
    if (p == NULL)
        return 0;
    int up = atomic_load(&p->brokers_up);
    if (up > 0)
        return up;
    uint64_t last = atomic_load(&p->broker_up_ms);
    return last != 0 && (uint64_t)bp_clock_ms() < last + BROKER_UP_GRACE_MS ? 1 : up;
}

bp_producer_stats_t bp_producer_stats(const bp_producer_t *p)
{
    bp_producer_stats_t s = {0, 0, 0, 0};
    if (p == NULL)
        return s;
    s.accepted = atomic_load_explicit(&p->accepted, memory_order_relaxed);
    s.rejected = atomic_load_explicit(&p->rejected, memory_order_relaxed);
    s.failures = atomic_load_explicit(&p->failures, memory_order_relaxed);
    s.pending = atomic_load_explicit(&p->pending, memory_order_relaxed);
    return s;
}

/* ---------------------------------------------------------------------------------------------
 * The module: one producer per loop thread.
 */

static rd_kafka_conf_t *producer_conf(bp_producer_t *p, char *err, size_t errlen)
{
    const bp_config_t *cfg = p->t->api->cfg;
    char client_id[64], max_bytes[32], timeout[32], queue_max[32], linger[32];
    snprintf(client_id, sizeof(client_id), "batchpipe-api-%d", p->t->index);
    /* a message is the body as posted, or a single object wrapped in a few dozen bytes (api/write.c):
     * leave room above the body limit; the broker's own message.max.bytes has the last word */
    long long mmb = cfg->max_body_bytes + 1024 * 1024;
    snprintf(max_bytes, sizeof(max_bytes), "%lld", mmb < 1000000000 ? mmb : 1000000000);
    snprintf(timeout, sizeof(timeout), "%lld", cfg->produce_timeout_ms);
    snprintf(queue_max, sizeof(queue_max), "%lld", cfg->produce_queue_max);
    snprintf(linger, sizeof(linger), "%lld", cfg->produce_linger_ms);

    rd_kafka_conf_t *conf = bp_kafka_conf_new(cfg, client_id, err, errlen);
    if (conf == NULL)
        return NULL;
    if (bp_kafka_conf_set(conf, "enable.idempotence", "true", err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "acks", "all", err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "linger.ms", linger, err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "compression.type", "lz4", err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "message.max.bytes", max_bytes, err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "message.timeout.ms", timeout, err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "queue.buffering.max.messages", queue_max, err, errlen) != 0 ||
        bp_kafka_conf_set(conf, "statistics.interval.ms", STATS_INTERVAL, err, errlen) != 0 ||
        /* the Java client's default: a batch_id lands on the same partition whoever publishes it */
        bp_kafka_conf_set(conf, "partitioner", "murmur2_random", err, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_stats_cb(conf, on_stats);
    rd_kafka_conf_set_opaque(conf, p);
    return conf;
}

static void producer_dispose(bp_api_thread_t *t);

static void metrics_init(bp_producer_t *p)
{
    bp_metrics_t *reg = p->t->api->metrics;
    char labels[64];
    p->m.latency = bp_metrics_histogram(reg, "bp_produce_latency_seconds",
                                        "From handing a message to librdkafka to the broker's ack.", NULL,
                                        bp_metrics_latency_buckets, bp_metrics_latency_nbuckets);
    p->m.accepted = bp_metrics_counter(reg, "bp_produce_accepted_total",
                                       "Messages the broker acknowledged (late acks included).", NULL);
    p->m.rejected = bp_metrics_counter(reg, "bp_produce_rejected_total",
                                       "POSTs refused before producing (body, size, media type, query).", NULL);
    for (int i = 0; i < FAIL__COUNT; i++) {
        snprintf(labels, sizeof(labels), "reason=\"%s\"", fail_names[i]);
        p->m.failures[i] = bp_metrics_counter(reg, "bp_produce_failures_total",
                                              "Messages that got no ack in time, by reason.", labels);
    }
    snprintf(labels, sizeof(labels), "thread=\"%d\"", p->t->index);
    p->m.pending = bp_metrics_gauge(reg, "bp_produce_pending",
                                    "Messages of this thread waiting for their delivery report.", labels);
    p->m.brokers_up = bp_metrics_gauge(reg, "bp_kafka_brokers_up",
                                       "Brokers this thread's producer is connected to.", labels);
    p->m.healthy = bp_metrics_gauge(reg, "bp_producer_healthy",
                                    "1 while this thread's producer can publish.", labels);
    bp_gauge_set(p->m.pending, 0);
    bp_gauge_set(p->m.brokers_up, 0);
    bp_gauge_set(p->m.healthy, 1);
}

static int producer_init(bp_api_thread_t *t, char *err, size_t errlen)
{
    const bp_config_t *cfg = t->api->cfg;
    char why[512];
    int fds[2];
    bp_producer_t *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    p->t = t;
    p->pipe_rd = p->pipe_wr = -1;
    atomic_init(&p->healthy, 1);
    atomic_init(&p->brokers_up, -1);
    atomic_init(&p->broker_up_ms, 0);
    metrics_init(p);
    h2o_linklist_init_anchor(&p->deliveries);
    snprintf(p->timeout_reason, sizeof(p->timeout_reason), "the broker did not acknowledge within %lld ms",
             cfg->produce_timeout_ms);
    t->producer = p; /* from here on, producer_dispose cleans up */

    rd_kafka_conf_t *conf = producer_conf(p, err, errlen);
    if (conf == NULL)
        goto fail;
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (p->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "cannot create the Kafka producer: %s", why);
        goto fail;
    }
    p->rkt = rd_kafka_topic_new(p->rk, cfg->topic, NULL);
    if (p->rkt == NULL) {
        snprintf(err, errlen, "topic %s: %s", cfg->topic, rd_kafka_err2str(rd_kafka_last_error()));
        goto fail;
    }
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        goto fail;
    }
    p->pipe_rd = fds[0];
    p->pipe_wr = fds[1];
    p->mainq = rd_kafka_queue_get_main(p->rk);
    rd_kafka_queue_io_event_enable(p->mainq, p->pipe_wr, "1", 1);
    p->pipe_sock = h2o_evloop_socket_create(t->loop, p->pipe_rd, H2O_SOCKET_FLAG_DONT_READ);
    p->pipe_sock->data = p;
    h2o_socket_read_start(p->pipe_sock, on_pipe_readable);

    h2o_timeout_init(t->loop, &p->tick, TICK_MS);
    h2o_timeout_init(t->loop, &p->deadline, (uint64_t)cfg->produce_timeout_ms);
    p->timeouts_ready = 1;
    p->tick_entry.cb = on_tick;
    h2o_timeout_link(t->loop, &p->tick, &p->tick_entry);
    return 0;

fail:
    producer_dispose(t);
    return -1;
}

/* What is left of the shutdown bound, for the final flush. */
static int flush_budget_ms(const bp_producer_t *p)
{
    long long bound = p->t->api->cfg->shutdown_timeout_ms;
    if (p->stop_seen_ms == 0)
        return (int)bound;
    long long left = (long long)(p->stop_seen_ms + (uint64_t)bound) - bp_clock_ms();
    return left > 0 ? (int)left : 0;
}

static void producer_dispose(bp_api_thread_t *t)
{
    bp_producer_t *p = t->producer;
    if (p == NULL)
        return;
    if (p->rk != NULL) {
        int budget = flush_budget_ms(p);
        /* flush serves the delivery reports too: answers still owed are given here */
        (void)rd_kafka_flush(p->rk, budget);
        int left = rd_kafka_outq_len(p->rk);
        if (left > 0) {
            bp_log_warn("thread %d: %d Kafka messages still queued after the %d ms left for flushing: "
                        "dropping them (their requests were answered 503: maybe stored)",
                        t->index, left, budget);
            (void)rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            serve(p);
        } else {
            bp_log_info("thread %d: Kafka producer flushed", t->index);
        }
        if (p->mainq != NULL) {
            rd_kafka_queue_io_event_enable(p->mainq, -1, NULL, 0);
            rd_kafka_queue_destroy(p->mainq);
        }
        if (p->rkt != NULL)
            rd_kafka_topic_destroy(p->rkt);
        rd_kafka_destroy(p->rk);
    }
    /* librdkafka is gone: whatever it did not report on is ours to settle and free */
    bp_produce_result_t res = failed(BP_ERR_KAFKA_DOWN, RD_KAFKA_RESP_ERR_NO_ERROR,
                                     "the server is shutting down and the broker has not acknowledged yet");
    while (!h2o_linklist_is_empty(&p->deliveries)) {
        delivery_t *d = H2O_STRUCT_FROM_MEMBER(delivery_t, link, p->deliveries.next);
        decide(d, &res);
        h2o_linklist_unlink(&d->link);
        set_pending(p, -1);
        free(d);
    }
    p->outstanding = 0;
    bp_gauge_set(p->m.brokers_up, 0);
    if (p->timeouts_ready) {
        if (h2o_timeout_is_linked(&p->tick_entry))
            h2o_timeout_unlink(&p->tick_entry);
        h2o_timeout_dispose(t->loop, &p->tick);
        h2o_timeout_dispose(t->loop, &p->deadline);
    }
    if (p->pipe_sock != NULL)
        h2o_socket_close(p->pipe_sock); /* closes pipe_rd */
    else if (p->pipe_rd >= 0)
        close(p->pipe_rd);
    if (p->pipe_wr >= 0)
        close(p->pipe_wr);
    free(p);
    t->producer = NULL;
}

const bp_api_module_t bp_producer_module = {"producer", producer_init, producer_dispose};
