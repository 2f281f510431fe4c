/* message.c - a consumed message: its origin, its request-id header, and the verdict of the payload
 * validator, decided once when the worker buffers it. */
#include "message.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bp_kafka.h"
#include "bp_trace.h"

/* Copy at most cap bytes of s (n bytes) into dst, cut at a UTF-8 character boundary. */
static size_t utf8_copy(char *dst, size_t cap, const char *s, size_t n)
{
    if (n > cap) {
        n = cap;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
    return n;
}

char *bp_violations_reason(const char *prefix, const bp_violations_t *v)
{
    char *out = malloc(BP_REASON_MAX + 1);
    if (out == NULL)
        return NULL;
    size_t len = (size_t)snprintf(out, BP_REASON_MAX + 1, "%s", prefix);
    if (len > BP_REASON_MAX)
        len = BP_REASON_MAX;
    size_t shown = 0;
    for (size_t i = 0; i < v->count; i++) {
        char item[600];
        const bp_violation_t *x = &v->items[i];
        int n = snprintf(item, sizeof(item), "%s%s%s%s", i ? "; " : ": ", x->pointer,
                         x->pointer[0] ? ": " : "", x->message);
        if (n < 0 || len + (size_t)n + 32 > BP_REASON_MAX)
            break;
        memcpy(out + len, item, (size_t)n + 1);
        len += (size_t)n;
        shown++;
    }
    if (shown < v->total)
        snprintf(out + len, BP_REASON_MAX + 1 - len, " (and %zu more)", v->total - shown);
    return out;
}

/* A copy of the batch doc keeping only the last occurrence of each object_id, or NULL. */
static json_t *dedupe_objects(const json_t *doc)
{
    const json_t *objects = json_object_get(doc, "objects");
    json_t *last = json_object(); /* object_id -> index of its last occurrence */
    json_t *kept = json_array();
    json_t *copy = json_copy((json_t *)doc);
    if (!json_is_array(objects) || last == NULL || kept == NULL || copy == NULL)
        goto fail;
    size_t i;
    json_t *obj;
    json_array_foreach(objects, i, obj)
    {
        const json_t *id = json_object_get(obj, "object_id");
        if (json_is_string(id))
            json_object_setn_new_nocheck(last, json_string_value(id), json_string_length(id),
                                         json_integer((json_int_t)i));
    }
    json_array_foreach(objects, i, obj)
    {
        const json_t *id = json_object_get(obj, "object_id");
        if (json_is_string(id)) {
            json_t *at = json_object_getn(last, json_string_value(id), json_string_length(id));
            if (json_integer_value(at) != (json_int_t)i)
                continue;
        }
        if (json_array_append(kept, obj) != 0)
            goto fail;
    }
    if (json_object_set_new(copy, "objects", kept) != 0) {
        kept = NULL;
        goto fail;
    }
    json_decref(last);
    return copy;
fail:
    json_decref(last);
    json_decref(kept);
    json_decref(copy);
    return NULL;
}

static int only_duplicate_ids(const bp_violations_t *v)
{
    for (size_t i = 0; i < v->count; i++) {
        if (strstr(v->items[i].message, "\" already appears at /objects/") != NULL)
            return 1;
    }
    return 0;
}

/* The key rule: every message of a batch on the partition of its batch_id, so that the log orders
 * them. Sets m->invalid when the key is not batch_id's bytes; returns BP_OK or BP_ERR_NOMEM. */
static bp_err_t check_key(bp_ingest_msg_t *m, const json_t *batch_id)
{
    const rd_kafka_message_t *rkm = m->rkm;
    const char *id = json_string_value(batch_id);
    size_t idlen = json_string_length(batch_id);
    if (rkm->key != NULL && rkm->key_len == idlen && memcmp(rkm->key, id, idlen) == 0)
        return BP_OK;
    char why[BP_REASON_MAX], shown[201];
    utf8_copy(shown, 200, id, idlen); /* a whole character at the end: reasons go into headers */
    if (rkm->key == NULL)
        snprintf(why, sizeof(why), "the message key must be the batch_id: per-batch order depends on it "
                                   "(the message has no key, the batch_id is \"%s\")", shown);
    else
        snprintf(why, sizeof(why), "the message key must be the batch_id: per-batch order depends on it "
                                   "(a key of %zu bytes that is not the batch_id \"%s\")", rkm->key_len, shown);
    m->invalid = strdup(why);
    return m->invalid ? BP_OK : BP_ERR_NOMEM;
}

/* A delete message: validated, then its key, then its members kept for the writer. Returns BP_OK or
 * BP_ERR_NOMEM. */
static bp_err_t check_delete(bp_ingest_msg_t *m, const json_t *doc, const bp_payload_limits_t *lim,
                             bp_violations_t *v)
{
    if (bp_payload_validate_delete(doc, lim, v) != 0) {
        m->invalid = bp_violations_reason("invalid delete message", v);
        return m->invalid ? BP_OK : BP_ERR_NOMEM;
    }
    const json_t *batch_id = json_object_get(doc, "batch_id");
    const json_t *object_id = json_object_get(doc, "object_id");
    bp_err_t rc = check_key(m, batch_id);
    if (rc != BP_OK || m->invalid != NULL)
        return rc;
    m->kind = BP_MSG_DELETE;
    m->del_cascade = json_is_true(json_object_get(doc, "cascade"));
    if ((m->del_batch_id = strdup(json_string_value(batch_id))) == NULL ||
        (object_id != NULL && (m->del_object_id = strdup(json_string_value(object_id))) == NULL))
        return BP_ERR_NOMEM;
    return BP_OK;
}

/* "TS:PARTITION:OFFSET", three decimal numbers (TS and OFFSET >= 0, PARTITION in int32). */
static int parse_origin(const char *s, size_t len, int64_t *ts, int32_t *partition, int64_t *offset)
{
    long long v[3];
    size_t i = 0;
    for (int k = 0; k < 3; k++) {
        size_t digits = 0;
        long long x = 0;
        for (; i < len && s[i] >= '0' && s[i] <= '9' && digits < 18; i++, digits++)
            x = x * 10 + (s[i] - '0');
        if (digits == 0 || (k < 2 && (i >= len || s[i++] != ':')))
            return -1;
        v[k] = x;
    }
    if (i != len || v[1] > INT32_MAX)
        return -1;
    *ts = v[0];
    *partition = (int32_t)v[1];
    *offset = v[2];
    return 0;
}

/* Decide m->invalid for the payload; returns BP_OK or BP_ERR_NOMEM. */
static bp_err_t check_payload(bp_ingest_msg_t *m, const bp_payload_limits_t *lim)
{
    const rd_kafka_message_t *rkm = m->rkm;
    if (rkm->payload == NULL || rkm->len == 0) {
        m->invalid = strdup("empty message: the value must be a batch JSON document");
        return m->invalid ? BP_OK : BP_ERR_NOMEM;
    }
    bp_violations_t *v = malloc(sizeof(*v));
    if (v == NULL)
        return BP_ERR_NOMEM;
    bp_err_t rc = BP_OK;
    json_t *doc = bp_payload_parse(rkm->payload, rkm->len, v);
    if (doc == NULL) {
        if ((m->invalid = bp_violations_reason("invalid JSON", v)) == NULL)
            rc = BP_ERR_NOMEM;
        goto done;
    }
    if (bp_payload_is_delete(doc)) {
        rc = check_delete(m, doc, lim, v);
        json_decref(doc);
        goto done;
    }
    if (bp_payload_validate_batch(doc, lim, v) != 0) {
        /* A repeated object_id is allowed on the topic (the last one wins): judge the rest of the
         * batch without the earlier occurrences. */
        json_t *deduped = only_duplicate_ids(v) ? dedupe_objects(doc) : NULL;
        if (deduped == NULL || bp_payload_validate_batch(deduped, lim, v) != 0) {
            if ((m->invalid = bp_violations_reason("schema violation", v)) == NULL)
                rc = BP_ERR_NOMEM;
        }
        json_decref(deduped);
    }
    if (m->invalid == NULL && (rc = check_key(m, json_object_get(doc, "batch_id"))) == BP_OK && m->invalid == NULL)
        m->objects = bp_payload_object_count(doc);
    json_decref(doc);
done:
    free(v);
    return rc;
}

bp_err_t bp_ingest_msg_init(bp_ingest_msg_t *m, rd_kafka_message_t *rkm, const bp_payload_limits_t *lim)
{
    memset(m, 0, sizeof(*m));
    m->rkm = rkm;
    m->partition = rkm->partition;
    m->offset = rkm->offset;
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(rkm, &tstype);
    m->ts_ms = ts >= 0 ? ts : 0;
    rd_kafka_headers_t *hdrs = NULL;
    const void *val = NULL;
    size_t len = 0;
    if (rd_kafka_message_headers(rkm, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(hdrs, BP_HDR_REQUEST_ID, &val, &len) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        val != NULL)
        utf8_copy(m->request_id, BP_REQUEST_ID_MAX, val, len);
    /* another producer's malformed traceparent is not worth a dead letter: it is just not kept */
    if (hdrs != NULL &&
        rd_kafka_header_get_last(hdrs, BP_HDR_TRACEPARENT, &val, &len) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        val != NULL && len <= BP_TRACEPARENT_MAX && bp_traceparent_valid(val, len)) {
        memcpy(m->traceparent, val, len);
        m->traceparent[len] = '\0';
    }
    bp_err_t rc = check_payload(m, lim);
    if (rc == BP_OK && hdrs != NULL &&
        rd_kafka_header_get_last(hdrs, BP_HDR_ORIGIN, &val, &len) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (val != NULL &&
            parse_origin(val, len, &m->origin_ts, &m->origin_partition, &m->origin_offset) == 0)
            m->has_origin = 1;
        else if (m->invalid == NULL &&
                 (m->invalid = strdup("the bp-origin header must be TS_EFF:PARTITION:OFFSET in decimal")) == NULL)
            rc = BP_ERR_NOMEM;
    }
    if (rc != BP_OK)
        bp_ingest_msg_clear(m);
    return rc;
}

void bp_ingest_msg_clear(bp_ingest_msg_t *m)
{
    if (m->rkm != NULL)
        rd_kafka_message_destroy(m->rkm);
    free(m->invalid);
    free(m->pg_reason);
    free(m->del_batch_id);
    free(m->del_object_id);
    memset(m, 0, sizeof(*m));
}

json_t *bp_ingest_msg_fields(const bp_ingest_msg_t *m, const char *topic)
{
    json_t *f = json_pack("{s:s, s:i, s:I}", "topic", topic, "partition", (int)m->partition, "offset",
                          (json_int_t)m->offset);
    if (f != NULL && m->request_id[0] != '\0') {
        json_t *rid = json_string(m->request_id);
        if (rid != NULL)
            json_object_set_new(f, "request_id", rid);
    }
    if (f != NULL && m->traceparent[0] != '\0') {
        json_t *tp = json_string(m->traceparent);
        if (tp != NULL)
            json_object_set_new(f, "traceparent", tp);
    }
    return f;
}

bp_ingest_msg_tally_t bp_ingest_msg_tally(const bp_ingest_msg_t *msgs, size_t n)
{
    bp_ingest_msg_tally_t t = {0};
    for (size_t i = 0; i < n; i++) {
        const bp_ingest_msg_t *m = &msgs[i];
        if (m->outcome == BP_MSG_APPLIED) {
            t.applied++;
            t.objects += m->objects;
        } else if (m->outcome == BP_MSG_SKIPPED) {
            t.skipped++;
        } else if (m->outcome == BP_MSG_DEAD) {
            if (m->invalid != NULL)
                t.dead_invalid++;
            else
                t.dead_refused++;
        }
    }
    return t;
}
