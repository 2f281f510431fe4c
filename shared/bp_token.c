/* bp_token.c - receipt tokens (see bp_token.h): formatting and strict parsing; the topic's name hash
 * makes a token of another topic (an operator changed BP_TOPIC) an error instead of a wrong answer, and
 * in version 2 also catches a token altered by hand or cut short in the batch id. */
#include "bp_token.h"

#include "bp_utf8.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define FNV_BASIS 2166136261u

/* FNV-1a, 32 bits, continued from h over p[0..n): not a secret, only a check that the token names a
 * message of this topic and was not altered by accident. */
static uint32_t fnv1a(uint32_t h, const void *p, size_t n)
{
    for (const unsigned char *c = p; n > 0; c++, n--) {
        h ^= *c;
        h *= 16777619u;
    }
    return h;
}

static uint32_t topic_hash(const char *topic)
{
    return fnv1a(FNV_BASIS, topic, strlen(topic));
}

/* The hash of a version-2 token: the topic's, continued over "<partition>.<offset>." and the batch id. */
static uint32_t batch_hash(const char *topic, int64_t partition, int64_t offset, const char *batch_id,
                           size_t batch_id_len)
{
    char nums[48];
    int n = snprintf(nums, sizeof(nums), "%" PRId64 ".%" PRId64 ".", partition, offset);
    return fnv1a(fnv1a(topic_hash(topic), nums, (size_t)n), batch_id, batch_id_len);
}

size_t bp_token_format(char *buf, size_t buflen, const char *topic, int32_t partition, int64_t offset,
                       const char *batch_id, size_t batch_id_len)
{
    if (partition < 0 || offset < 0)
        return 0;
    int n;
    if (batch_id != NULL && batch_id_len > 0 && batch_id_len <= BP_TOKEN_BATCH_ID_MAX) {
        char b64[BP_B64URL_LEN(BP_TOKEN_BATCH_ID_MAX) + 1];
        bp_b64url_encode(b64, batch_id, batch_id_len);
        n = snprintf(buf, buflen, "2.%" PRId32 ".%" PRId64 ".%08" PRIx32 ".%s", partition, offset,
                     batch_hash(topic, partition, offset, batch_id, batch_id_len), b64);
    } else {
        n = snprintf(buf, buflen, "1.%" PRId32 ".%" PRId64 ".%08" PRIx32, partition, offset,
                     topic_hash(topic));
    }
    if (n < 0 || (size_t)n >= buflen) {
        if (buflen > 0)
            buf[0] = '\0';
        return 0;
    }
    return (size_t)n;
}

/* Decimal digits s[*i..len) up to the next '.' or the end, at most max; advances *i past them.
 * Returns 0, or -1 when there are none, a leading zero, or the value is above max. */
static int parse_decimal(const char *s, size_t len, size_t *i, int64_t max, int64_t *out)
{
    size_t start = *i;
    int64_t v = 0;
    while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
        int d = s[*i] - '0';
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
        (*i)++;
    }
    size_t digits = *i - start;
    if (digits == 0 || (digits > 1 && s[start] == '0'))
        return -1;
    *out = v;
    return 0;
}

/* 8 lowercase hex digits s[0..8) into *h; -1 if they are not. */
static int parse_hash(const char *s, uint32_t *h)
{
    *h = 0;
    for (size_t i = 0; i < 8; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        *h = *h << 4 | (uint32_t)d;
    }
    return 0;
}

/* The batch id part s[0..len) of a version-2 token into *batch; -1 if it is not the canonical base64url
 * of 1..BP_TOKEN_BATCH_ID_MAX bytes of UTF-8 without NUL (the length is checked on the text first:
 * nothing oversized is decoded). */
static int parse_batch(const char *s, size_t len, bp_token_batch_t *batch)
{
    if (len == 0 || len > BP_B64URL_LEN(BP_TOKEN_BATCH_ID_MAX))
        return -1;
    unsigned char raw[BP_B64URL_DECODED_MAX(BP_B64URL_LEN(BP_TOKEN_BATCH_ID_MAX))];
    size_t n = 0;
    if (bp_b64url_decode(s, len, raw, &n) != 0 || n == 0 || n > BP_TOKEN_BATCH_ID_MAX ||
        memchr(raw, '\0', n) != NULL || bp_utf8_valid_prefix((const char *)raw, n) != n)
        return -1; /* batch ids are UTF-8 without NULs (the validator): the id goes to SQL and JSON */
    memcpy(batch->id, raw, n);
    batch->id[n] = '\0';
    batch->len = n;
    return 0;
}

int bp_token_parse(const char *s, size_t len, const char *topic, bp_token_t *out, bp_token_batch_t *batch,
                   const char **why)
{
    int64_t partition = 0, offset = 0;
    bp_token_batch_t local;
    size_t i = 0;
    *why = "not a receipt token";
    if (len < 2 || (s[0] != '1' && s[0] != '2') || s[1] != '.')
        return -1;
    int v2 = s[0] == '2';
    i = 2;
    if (parse_decimal(s, len, &i, INT32_MAX, &partition) != 0 || i >= len || s[i++] != '.')
        return -1;
    if (parse_decimal(s, len, &i, INT64_MAX, &offset) != 0 || i >= len || s[i++] != '.')
        return -1;
    uint32_t h = 0;
    if (len - i < 8 || parse_hash(s + i, &h) != 0)
        return -1;
    i += 8;
    if (batch == NULL)
        batch = &local;
    batch->len = 0;
    batch->id[0] = '\0';
    if (!v2) {
        if (i != len)
            return -1;
        if (h != topic_hash(topic)) {
            *why = "the receipt token names a message of another topic";
            return -1;
        }
    } else {
        if (i >= len || s[i++] != '.' || parse_batch(s + i, len - i, batch) != 0)
            return -1;
        if (h != batch_hash(topic, partition, offset, batch->id, batch->len)) {
            batch->len = 0;
            batch->id[0] = '\0';
            *why = "the receipt token was altered or names a message of another topic";
            return -1;
        }
    }
    out->partition = (int32_t)partition;
    out->offset = offset;
    out->text = s;
    out->text_len = len;
    *why = NULL;
    return 0;
}

int bp_token_parse_list(const char *s, size_t len, const char *topic, bp_token_t *out, size_t max, size_t *n,
                        const char **why)
{
    *n = 0;
    size_t i = 0;
    for (;;) {
        while (i < len && s[i] == ' ')
            i++;
        size_t start = i;
        while (i < len && s[i] != ',' && s[i] != ' ')
            i++;
        size_t end = i;
        while (i < len && s[i] == ' ')
            i++;
        if (end == start) {
            *why = "an empty receipt token in the list";
            return -1;
        }
        bp_token_t t;
        if (bp_token_parse(s + start, end - start, topic, &t, NULL, why) != 0)
            return -1;
        size_t k = 0;
        while (k < *n && out[k].partition != t.partition)
            k++;
        if (k == *n) {
            if (*n == max) {
                *why = "too many receipt tokens (of distinct partitions) in the list";
                return -1;
            }
            out[(*n)++] = t;
        } else if (t.offset > out[k].offset) {
            out[k] = t;
        }
        if (i == len)
            break;
        if (s[i] != ',') {
            *why = "receipt tokens are separated by commas";
            return -1;
        }
        i++;
    }
    *why = NULL;
    return 0;
}
