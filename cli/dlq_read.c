/* dlq_read.c - the dead-letter reader of batchpipe dlq (dlq_read.h). The consumer has a group.id
 * only because librdkafka's assign API needs one: it never subscribes (so it never joins a group),
 * never commits, and starts from explicit offsets. */
#include "dlq_read.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bp_clock.h"
#include "bp_kafka.h"
#include "bp_log.h"
#include "kafka_util.h"

#define READER_GROUP "batchpipe-cli-dlq-reader" /* never joined, never committed to */

struct cli_dlqr {
    const bp_config_t *cfg;
    rd_kafka_t *rk;
    int timeout_ms;
    int n;
    int64_t *low, *high;
};

/* ---------------------------------------------------------------------------------------------- */
/* letters */

static char *header_dup(rd_kafka_headers_t *h, const char *name, int *oom)
{
    const void *v = NULL;
    size_t len = 0;
    if (h == NULL || rd_kafka_header_get_last(h, name, &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR || v == NULL)
        return NULL;
    char *s = malloc(len + 1);
    if (s == NULL) {
        *oom = 1;
        return NULL;
    }
    memcpy(s, v, len);
    s[len] = '\0';
    return s;
}

static int64_t header_number(rd_kafka_headers_t *h, const char *name, int *oom)
{
    char *s = header_dup(h, name, oom);
    long long v = -1;
    if (s != NULL && cli_parse_ll(s, 0, INT64_MAX, &v) != 0)
        v = -1;
    free(s);
    return v;
}

int cli_dlqr_letter_parse(const rd_kafka_message_t *rkm, cli_dlqr_letter_t *letter)
{
    memset(letter, 0, sizeof(*letter));
    letter->partition = rkm->partition;
    letter->offset = rkm->offset;
    rd_kafka_timestamp_type_t tstype;
    letter->timestamp = rd_kafka_message_timestamp(rkm, &tstype);
    letter->dup_partition = -1;
    letter->dup_offset = -1;
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(rkm, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
        h = NULL;
    int oom = 0;
    letter->reason = header_dup(h, BP_HDR_DLQ_REASON, &oom);
    letter->request_id = header_dup(h, BP_HDR_REQUEST_ID, &oom);
    letter->src_topic = header_dup(h, BP_HDR_DLQ_TOPIC, &oom);
    letter->src_partition = header_number(h, BP_HDR_DLQ_PARTITION, &oom);
    letter->src_offset = header_number(h, BP_HDR_DLQ_OFFSET, &oom);
    if (oom) {
        cli_dlqr_letter_clear(letter);
        return -1;
    }
    return 0;
}

void cli_dlqr_letter_clear(cli_dlqr_letter_t *letter)
{
    free(letter->reason);
    free(letter->request_id);
    free(letter->src_topic);
    letter->reason = letter->request_id = letter->src_topic = NULL;
}

void cli_dlqr_letter_source(const cli_dlqr_letter_t *letter, char *buf, size_t buflen)
{
    if (letter->src_topic == NULL || letter->src_partition < 0 || letter->src_offset < 0)
        snprintf(buf, buflen, "-");
    else
        snprintf(buf, buflen, "%s/%" PRId64 "@%" PRId64, letter->src_topic, letter->src_partition,
                 letter->src_offset);
}

/* ---------------------------------------------------------------------------------------------- */
/* the sources seen in a scan: an open-addressing set of "topic/partition@offset" -> first letter */

typedef struct seen_entry {
    char *source;
    int32_t partition;
    int64_t offset;
} seen_entry_t;

typedef struct seen_set {
    seen_entry_t *slots;
    size_t cap, used;
} seen_set_t;

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static seen_entry_t *seen_slot(seen_entry_t *slots, size_t cap, const char *source)
{
    size_t i = (size_t)fnv1a(source) & (cap - 1);
    while (slots[i].source != NULL && strcmp(slots[i].source, source) != 0)
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

/* The first letter of source, or NULL after recording this one as the first. -1 out of memory. */
static int seen_check(seen_set_t *s, const char *source, int32_t partition, int64_t offset,
                      const seen_entry_t **first)
{
    *first = NULL;
    if ((s->used + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        seen_entry_t *slots = calloc(cap, sizeof(*slots));
        if (slots == NULL)
            return -1;
        for (size_t i = 0; i < s->cap; i++)
            if (s->slots[i].source != NULL)
                *seen_slot(slots, cap, s->slots[i].source) = s->slots[i];
        free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    seen_entry_t *e = seen_slot(s->slots, s->cap, source);
    if (e->source != NULL) {
        *first = e;
        return 0;
    }
    if ((e->source = strdup(source)) == NULL)
        return -1;
    e->partition = partition;
    e->offset = offset;
    s->used++;
    return 0;
}

static void seen_free(seen_set_t *s)
{
    for (size_t i = 0; i < s->cap; i++)
        free(s->slots[i].source);
    free(s->slots);
}

/* ---------------------------------------------------------------------------------------------- */
/* the reader */

cli_dlqr_t *cli_dlqr_new(const bp_config_t *cfg, int timeout_ms, char *err, size_t errlen)
{
    static const char *const extra[] = {"group.id",
                                        READER_GROUP,
                                        "enable.auto.commit",
                                        "false",
                                        "enable.auto.offset.store",
                                        "false",
                                        "enable.partition.eof",
                                        "true",
                                        "auto.offset.reset",
                                        "error",
                                        "allow.auto.create.topics",
                                        "false",
                                        NULL};
    cli_dlqr_t *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->cfg = cfg;
    r->timeout_ms = timeout_ms;
    if ((r->rk = cli_kafka_new(cfg, RD_KAFKA_CONSUMER, extra, err, errlen)) == NULL)
        goto fail;
    rd_kafka_poll_set_consumer(r->rk);
    if ((r->n = cli_kafka_partitions(r->rk, cfg->kafka_brokers, cfg->dlq_topic, timeout_ms, err, errlen)) < 0)
        goto fail;
    r->low = calloc((size_t)r->n, sizeof(*r->low));
    r->high = calloc((size_t)r->n, sizeof(*r->high));
    if (r->low == NULL || r->high == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (bp_kafka_watermarks(r->rk, cfg->dlq_topic, r->n, r->low, r->high, timeout_ms, err, errlen) != 0)
        goto fail;
    return r;
fail:
    cli_dlqr_free(r);
    return NULL;
}

void cli_dlqr_free(cli_dlqr_t *r)
{
    if (r == NULL)
        return;
    if (r->rk != NULL) {
        rd_kafka_consumer_close(r->rk);
        rd_kafka_destroy(r->rk);
    }
    free(r->low);
    free(r->high);
    free(r);
}

rd_kafka_t *cli_dlqr_handle(cli_dlqr_t *r)
{
    return r->rk;
}

int cli_dlqr_partition_count(const cli_dlqr_t *r)
{
    return r->n;
}

int64_t cli_dlqr_letter_estimate(const cli_dlqr_t *r)
{
    int64_t sum = 0;
    for (int p = 0; p < r->n; p++)
        sum += r->high[p] - r->low[p];
    return sum;
}

static int assign(cli_dlqr_t *r, rd_kafka_topic_partition_list_t *parts, char *err, size_t errlen)
{
    rd_kafka_resp_err_t e = rd_kafka_assign(r->rk, parts);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "reading %s: %s", r->cfg->dlq_topic, rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

static void pause_partition(cli_dlqr_t *r, int32_t partition)
{
    rd_kafka_topic_partition_list_t *one = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(one, r->cfg->dlq_topic, partition);
    (void)rd_kafka_pause_partitions(r->rk, one);
    rd_kafka_topic_partition_list_destroy(one);
}

/* A consumer error that ends the command (others, such as a lost connection, are retried by
 * librdkafka and only bounded by the timeout). */
static int is_fatal_consume_error(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR__FATAL || e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
           e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
           e == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET || e == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE;
}

/* One scan's state. */
typedef struct scan {
    cli_dlqr_t *r;
    long long per_partition;
    int unique_only;
    cli_dlqr_letter_fn fn;
    void *opaque;
    long long *passed;  /* letters of each partition passed to fn */
    char *done;         /* partitions read up to their start-time high watermark (or their limit) */
    int open_parts;     /* partitions not done */
    seen_set_t sources; /* the sources seen so far */
    size_t total;       /* letters read, duplicates included */
    long long last_progress;
} scan_t;

/* What the scan does after a message. */
typedef enum scan_action {
    SCAN_GO_ON = 0,
    SCAN_STOPPED, /* fn asked to stop */
    SCAN_FAILED,  /* err says why */
} scan_action_t;

static void close_partition(scan_t *s, int32_t p)
{
    s->done[p] = 1;
    s->open_parts--;
}

/* A message with its err set. */
static scan_action_t on_consume_error(scan_t *s, const rd_kafka_message_t *rkm, char *err, size_t errlen)
{
    const char *topic = s->r->cfg->dlq_topic;
    int32_t p = rkm->partition;
    if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (p >= 0 && p < s->r->n && !s->done[p]) {
            close_partition(s, p); /* reached the end: the start-time high watermark is behind us */
            s->last_progress = bp_clock_ms();
        }
        return SCAN_GO_ON;
    }
    if (is_fatal_consume_error(rkm->err)) {
        snprintf(err, errlen, "reading %s: %s", topic, rd_kafka_message_errstr(rkm));
        return SCAN_FAILED;
    }
    bp_log_debug("reading %s: %s", topic, rd_kafka_message_errstr(rkm));
    return SCAN_GO_ON;
}

/* Mark letter as a duplicate when its source was seen before in the scan. Returns whether it is passed
 * on, or -1 out of memory. */
static int check_source(scan_t *s, cli_dlqr_letter_t *letter)
{
    char source[512];
    cli_dlqr_letter_source(letter, source, sizeof(source));
    if (strcmp(source, "-") == 0)
        return 1;
    const seen_entry_t *first = NULL;
    if (seen_check(&s->sources, source, letter->partition, letter->offset, &first) != 0)
        return -1;
    if (first == NULL)
        return 1;
    letter->dup_partition = first->partition;
    letter->dup_offset = first->offset;
    return !s->unique_only;
}

/* A letter (rkm without error): parsed, checked against the sources seen, passed to fn. */
static scan_action_t on_letter(scan_t *s, const rd_kafka_message_t *rkm, char *err, size_t errlen)
{
    int32_t p = rkm->partition;
    s->last_progress = bp_clock_ms();
    if (p < 0 || p >= s->r->n || s->done[p] || rkm->offset >= s->r->high[p])
        return SCAN_GO_ON; /* not asked for, or beyond the start-time high watermark */
    s->total++;
    cli_dlqr_letter_t letter;
    if (cli_dlqr_letter_parse(rkm, &letter) != 0) {
        snprintf(err, errlen, "out of memory");
        return SCAN_FAILED;
    }
    int pass = check_source(s, &letter);
    int stop = 0;
    if (pass > 0) {
        s->passed[p]++;
        stop = s->fn(s->opaque, &letter, rkm);
    }
    cli_dlqr_letter_clear(&letter);
    if (pass < 0) {
        snprintf(err, errlen, "out of memory");
        return SCAN_FAILED;
    }
    if (stop)
        return SCAN_STOPPED;
    if (rkm->offset + 1 >= s->r->high[p] || (s->per_partition > 0 && s->passed[p] >= s->per_partition)) {
        close_partition(s, p);
        pause_partition(s->r, p);
    }
    return SCAN_GO_ON;
}

/* Every message the scan polls comes here; the caller destroys it. */
static scan_action_t on_message(scan_t *s, const rd_kafka_message_t *rkm, char *err, size_t errlen)
{
    if (rkm->err != RD_KAFKA_RESP_ERR_NO_ERROR)
        return on_consume_error(s, rkm, err, errlen);
    return on_letter(s, rkm, err, errlen);
}

/* Assign every partition that holds letters, from its beginning. Returns 0 or -1 with err. */
static int scan_start(scan_t *s, char *err, size_t errlen)
{
    cli_dlqr_t *r = s->r;
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(r->n);
    for (int p = 0; p < r->n; p++) {
        if (r->high[p] <= r->low[p]) {
            s->done[p] = 1;
            continue;
        }
        rd_kafka_topic_partition_list_add(parts, r->cfg->dlq_topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        s->open_parts++;
    }
    int rc = s->open_parts > 0 ? assign(r, parts, err, errlen) : 0;
    rd_kafka_topic_partition_list_destroy(parts);
    return rc;
}

int cli_dlqr_scan(cli_dlqr_t *r, long long per_partition, int unique_only, cli_dlqr_letter_fn fn,
                  void *opaque, size_t *total, char *err, size_t errlen)
{
    scan_t s = {.r = r, .per_partition = per_partition, .unique_only = unique_only, .fn = fn,
                .opaque = opaque};
    scan_action_t act = SCAN_FAILED;
    s.passed = calloc((size_t)r->n, sizeof(*s.passed));
    s.done = calloc((size_t)r->n, 1);
    if (s.passed == NULL || s.done == NULL) {
        snprintf(err, errlen, "out of memory");
        goto cleanup;
    }
    if (scan_start(&s, err, errlen) != 0)
        goto cleanup;
    s.last_progress = bp_clock_ms();
    for (act = SCAN_GO_ON; act == SCAN_GO_ON && s.open_parts > 0;) {
        if (bp_clock_ms() - s.last_progress > r->timeout_ms) {
            snprintf(err, errlen, "reading %s: no message for %d s (brokers at %s unreachable?)",
                     r->cfg->dlq_topic, r->timeout_ms / 1000, r->cfg->kafka_brokers);
            act = SCAN_FAILED;
            break;
        }
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(r->rk, 100);
        if (rkm == NULL)
            continue;
        act = on_message(&s, rkm, err, errlen);
        rd_kafka_message_destroy(rkm);
    }
cleanup:
    (void)rd_kafka_assign(r->rk, NULL);
    seen_free(&s.sources);
    free(s.passed);
    free(s.done);
    *total = s.total;
    return act == SCAN_FAILED ? -1 : act == SCAN_STOPPED ? 1 : 0;
}

rd_kafka_message_t *cli_dlqr_fetch(cli_dlqr_t *r, int32_t partition, int64_t offset, char *err,
                                  size_t errlen)
{
    const char *topic = r->cfg->dlq_topic;
    if (partition >= r->n) {
        snprintf(err, errlen, "no letter at %d:%" PRId64 " in %s: it has partitions 0 to %d", (int)partition,
                 offset, topic, r->n - 1);
        return NULL;
    }
    int64_t low = 0, high = 0;
    rd_kafka_resp_err_t e =
        rd_kafka_query_watermark_offsets(r->rk, topic, partition, &low, &high, r->timeout_ms);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "watermarks of %s partition %d: %s", topic, (int)partition,
                 rd_kafka_err2str(e));
        return NULL;
    }
    if (offset < low || offset >= high) {
        if (low == high)
            snprintf(err, errlen, "no letter at %d:%" PRId64 " in %s: partition %d is empty", (int)partition,
                     offset, topic, (int)partition);
        else
            snprintf(err, errlen,
                     "no letter at %d:%" PRId64 " in %s: partition %d holds offsets %" PRId64 " to %" PRId64,
                     (int)partition, offset, topic, (int)partition, low, high - 1);
        return NULL;
    }
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, topic, partition)->offset = offset;
    int rc = assign(r, parts, err, errlen);
    rd_kafka_topic_partition_list_destroy(parts);
    if (rc != 0)
        return NULL;
    rd_kafka_message_t *found = NULL;
    long long deadline = bp_clock_ms() + r->timeout_ms;
    while (found == NULL) {
        long long left = deadline - bp_clock_ms();
        if (left <= 0) {
            snprintf(err, errlen, "reading %s: no answer for %d:%" PRId64 " within %d s", topic,
                     (int)partition, offset, r->timeout_ms / 1000);
            break;
        }
        rd_kafka_message_t *rkm = rd_kafka_consumer_poll(r->rk, left < 100 ? (int)left : 100);
        if (rkm == NULL)
            continue;
        if (rkm->partition != partition || (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR && rkm->offset < offset)) {
            rd_kafka_message_destroy(rkm); /* left over from an earlier assignment */
            continue;
        }
        if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR && rkm->offset == offset) {
            found = rkm;
            break;
        }
        if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR || rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF ||
            is_fatal_consume_error(rkm->err)) {
            if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR)
                snprintf(err, errlen, "no letter at %d:%" PRId64 " in %s (the next one is at %d:%" PRId64 ")",
                         (int)partition, offset, topic, (int)partition, rkm->offset);
            else
                snprintf(err, errlen, "no letter at %d:%" PRId64 " in %s: %s", (int)partition, offset, topic,
                         rd_kafka_message_errstr(rkm));
            rd_kafka_message_destroy(rkm);
            break;
        }
        bp_log_debug("reading %s: %s", topic, rd_kafka_message_errstr(rkm));
        rd_kafka_message_destroy(rkm);
    }
    (void)rd_kafka_assign(r->rk, NULL);
    return found;
}
