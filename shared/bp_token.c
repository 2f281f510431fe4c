/* bp_token.c - receipt tokens (see bp_token.h): formatting and strict parsing; the topic's name hash
 * makes a token of another topic (an operator changed BP_TOPIC) an error instead of a wrong answer. */
#include "bp_token.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define TOKEN_VERSION '1'

/* FNV-1a, 32 bits: not a secret, only a check that the token names a message of this topic. */
static uint32_t topic_hash(const char *topic)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)topic; *p != '\0'; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    return h;
}

size_t bp_token_format(char *buf, size_t buflen, const char *topic, int32_t partition, int64_t offset)
{
    if (partition < 0 || offset < 0)
        return 0;
    int n = snprintf(buf, buflen, "%c.%" PRId32 ".%" PRId64 ".%08" PRIx32, TOKEN_VERSION, partition, offset,
                     topic_hash(topic));
    if (n < 0 || (size_t)n >= buflen)
        return 0;
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

int bp_token_parse(const char *s, size_t len, const char *topic, bp_token_t *out, const char **why)
{
    int64_t partition = 0, offset = 0;
    size_t i = 0;
    *why = "not a receipt token";
    if (len < 2 || s[0] != TOKEN_VERSION || s[1] != '.')
        return -1;
    i = 2;
    if (parse_decimal(s, len, &i, INT32_MAX, &partition) != 0 || i >= len || s[i++] != '.')
        return -1;
    if (parse_decimal(s, len, &i, INT64_MAX, &offset) != 0 || i >= len || s[i++] != '.')
        return -1;
    if (len - i != 8)
        return -1;
    uint32_t h = 0;
    for (; i < len; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        h = h << 4 | (uint32_t)d;
    }
    if (h != topic_hash(topic)) {
        *why = "the receipt token names a message of another topic";
        return -1;
    }
    out->partition = (int32_t)partition;
    out->offset = offset;
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
        if (bp_token_parse(s + start, end - start, topic, &t, why) != 0)
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
            out[k].offset = t.offset;
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
