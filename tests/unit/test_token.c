/* test_token.c - shared/bp_token.c: receipt tokens of both versions round-trip, refuse what is not one
 * of ours (an altered or oversized version 2 too), and an `after=` list keeps the highest offset per
 * partition, whatever the versions in it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "bp_token.h"

static const char *TOPIC = "batchpipe.batches";

static int parse(const char *s, bp_token_t *t, const char **why)
{
    return bp_token_parse(s, strlen(s), TOPIC, t, NULL, why);
}

static void test_round_trip(void **state)
{
    (void)state;
    char buf[BP_TOKEN_MAX];
    bp_token_t t;
    const char *why;
    const int32_t parts[] = {0, 11, INT32_MAX};
    const int64_t offs[] = {0, 1, 123456789, INT64_MAX};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        for (size_t k = 0; k < sizeof(offs) / sizeof(offs[0]); k++) {
            size_t n = bp_token_format(buf, sizeof(buf), TOPIC, parts[i], offs[k], NULL, 0);
            assert_true(n > 0 && n == strlen(buf) && n < BP_TOKEN_MAX);
            assert_null(strpbrk(buf, ",/?&= %"));
            assert_int_equal(parse(buf, &t, &why), 0);
            assert_int_equal(t.partition, parts[i]);
            assert_true(t.offset == offs[k]);
        }
    }
    assert_int_equal(bp_token_format(buf, 8, TOPIC, 1, 2, NULL, 0), 0); /* too small: nothing half-written */
    assert_string_equal(buf, "");
    assert_int_equal(bp_token_format(buf, sizeof(buf), TOPIC, -1, 2, NULL, 0), 0);
    assert_int_equal(bp_token_format(buf, sizeof(buf), TOPIC, 1, -2, "b", 1), 0);
}

static void test_refuses_what_is_not_a_token(void **state)
{
    (void)state;
    char good[BP_TOKEN_MAX], bad[BP_TOKEN_MAX + 8];
    bp_token_t t;
    const char *why;
    bp_token_format(good, sizeof(good), TOPIC, 3, 42, NULL, 0);
    const char *hash = strrchr(good, '.') + 1;
    const char *cases[] = {"", "1", "1.", "1.3.42", "2.3.42.00000000", "1.03.42.00000000", "1.3.042.00000000",
                           "1.-3.42.00000000", "1.3.42.0000000", "1.3.42.000000000", "1.3.42.0000000G",
                           "1..42.00000000", "1.3.9223372036854775808.00000000", "1.2147483648.1.00000000"};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(parse(cases[i], &t, &why), -1);
        assert_non_null(why);
    }
    snprintf(bad, sizeof(bad), "1.3.42.%c%s", hash[0] == 'f' ? 'e' : 'f', hash + 1); /* another topic's */
    assert_int_equal(parse(bad, &t, &why), -1);
    assert_non_null(strstr(why, "another topic"));
    assert_int_equal(bp_token_parse(good, strlen(good), "other.topic", &t, NULL, &why), -1);
    assert_int_equal(bp_token_parse(good, strlen(good) - 1, TOPIC, &t, NULL, &why), -1); /* cut short */
}

/* Version 2 carries the batch id: any byte string of 1..BP_TOKEN_BATCH_ID_MAX bytes comes back. */
static void test_v2_round_trip(void **state)
{
    (void)state;
    char buf[BP_TOKEN_MAX], longest[BP_TOKEN_BATCH_ID_MAX];
    memset(longest, 'x', sizeof(longest));
    memcpy(longest + 6, "~~~???", 6); /* "fn5-" and "Pz8_": base64url's own two characters */
    const struct {
        const char *id;
        size_t len;
    } ids[] = {{"b", 1}, {"ab", 2}, {"abc", 3}, {"batch/1 ?&=,%\xc3\xa9", 15}, {longest, sizeof(longest)}};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        size_t n = bp_token_format(buf, sizeof(buf), TOPIC, 7, 1520, ids[i].id, ids[i].len);
        assert_true(n > 0 && n == strlen(buf) && n < BP_TOKEN_MAX);
        assert_true(buf[0] == '2');
        assert_null(strpbrk(buf, ",/?&= %+"));
        assert_true(ids[i].id != longest || (strchr(buf, '-') != NULL && strchr(buf, '_') != NULL));
        bp_token_t t;
        bp_token_batch_t b;
        const char *why;
        assert_int_equal(bp_token_parse(buf, n, TOPIC, &t, &b, &why), 0);
        assert_int_equal(t.partition, 7);
        assert_true(t.offset == 1520);
        assert_int_equal(b.len, ids[i].len);
        assert_memory_equal(b.id, ids[i].id, ids[i].len);
        assert_int_equal(b.id[b.len], '\0');
        assert_int_equal(parse(buf, &t, &why), 0); /* the batch id is not wanted: fine */
    }
    /* a batch id the token cannot carry: version 1, still a receipt of the message */
    char toolong[BP_TOKEN_BATCH_ID_MAX + 1];
    memset(toolong, 'y', sizeof(toolong));
    size_t n = bp_token_format(buf, sizeof(buf), TOPIC, 7, 1520, toolong, sizeof(toolong));
    assert_true(n > 0 && buf[0] == '1');
    bp_token_t t;
    bp_token_batch_t b;
    const char *why;
    assert_int_equal(bp_token_parse(buf, n, TOPIC, &t, &b, &why), 0);
    assert_int_equal(b.len, 0);
}

/* A version-1 token, as tokens issued before version 2 are, still reads, without a batch id. */
static void test_v1_still_parsed(void **state)
{
    (void)state;
    bp_token_t t;
    bp_token_batch_t b;
    const char *why;
    /* the text a version-1 API wrote for partition 3, offset 42 of batchpipe.batches */
    char v1[BP_TOKEN_MAX];
    bp_token_format(v1, sizeof(v1), TOPIC, 3, 42, NULL, 0);
    assert_true(strncmp(v1, "1.3.42.", 7) == 0 && strlen(v1) == 15);
    b.len = 99;
    assert_int_equal(bp_token_parse(v1, strlen(v1), TOPIC, &t, &b, &why), 0);
    assert_int_equal(t.partition, 3);
    assert_true(t.offset == 42);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.id, "");
}

/* An altered version 2 (any part), one of another topic, and malformed batch id parts are refused. */
static void test_v2_refuses_tampered(void **state)
{
    (void)state;
    char good[BP_TOKEN_MAX], bad[BP_TOKEN_MAX + 8];
    bp_token_t t;
    bp_token_batch_t b;
    const char *why;
    size_t n = bp_token_format(good, sizeof(good), TOPIC, 3, 42, "orders-7", 8);
    assert_int_equal(bp_token_parse(good, n, TOPIC, &t, &b, &why), 0);
    /* another batch id with the hash left as it was: "orders-8" */
    char other[BP_TOKEN_MAX];
    bp_token_format(other, sizeof(other), TOPIC, 3, 42, "orders-8", 8);
    const char *good_b64 = strrchr(good, '.'), *other_b64 = strrchr(other, '.');
    snprintf(bad, sizeof(bad), "%.*s%s", (int)(good_b64 - good), good, other_b64);
    assert_string_not_equal(bad, good);
    b.len = 5;
    assert_int_equal(bp_token_parse(bad, strlen(bad), TOPIC, &t, &b, &why), -1);
    assert_non_null(strstr(why, "altered"));
    assert_int_equal(b.len, 0); /* nothing of a refused token is handed out */
    /* another offset, another partition, the version changed to 1 */
    snprintf(bad, sizeof(bad), "2.3.43%s", good + 6);
    assert_int_equal(parse(bad, &t, &why), -1);
    snprintf(bad, sizeof(bad), "2.4.42%s", good + 6);
    assert_int_equal(parse(bad, &t, &why), -1);
    snprintf(bad, sizeof(bad), "1%s", good + 1);
    assert_int_equal(parse(bad, &t, &why), -1);
    /* another topic */
    assert_int_equal(bp_token_parse(good, n, "other.topic", &t, &b, &why), -1);
    assert_non_null(strstr(why, "another topic"));
    /* the batch id part: cut short, missing, padded, not base64url, non-canonical trailing bits */
    assert_int_equal(bp_token_parse(good, n - 1, TOPIC, &t, &b, &why), -1);
    assert_int_equal(bp_token_parse(good, (size_t)(good_b64 - good), TOPIC, &t, &b, &why), -1);
    assert_int_equal(bp_token_parse(good, (size_t)(good_b64 - good) + 1, TOPIC, &t, &b, &why), -1);
    const char *tails[] = {"=", "b3JkZXJzLTc=", "b3JkZXJz.Tc", "b3JkZXJzLTd", "b3JkZXJzLT+", "b"};
    for (size_t i = 0; i < sizeof(tails) / sizeof(tails[0]); i++) {
        snprintf(bad, sizeof(bad), "%.*s.%s", (int)(good_b64 - good), good, tails[i]);
        assert_int_equal(parse(bad, &t, &why), -1);
    }
    /* a NUL inside the batch id, a byte that is not UTF-8: even with a hash that matches (it is no
     * secret), such a token cannot be one the API issued */
    const char *raw[] = {"\0", "\xff"};
    for (size_t i = 0; i < 2; i++) {
        char forged[BP_TOKEN_MAX];
        bp_token_format(forged, sizeof(forged), TOPIC, 3, 42, raw[i], 1);
        assert_true(forged[0] == '2');
        assert_int_equal(parse(forged, &t, &why), -1);
    }
}

/* A batch id part longer than BP_TOKEN_BATCH_ID_MAX bytes is refused before it is decoded. */
static void test_v2_refuses_oversize(void **state)
{
    (void)state;
    char good[BP_TOKEN_MAX];
    size_t n = bp_token_format(good, sizeof(good), TOPIC, 3, 42, "b", 1);
    const char *dot = strrchr(good, '.');
    static char bad[2 * BP_TOKEN_MAX];
    int head = (int)(dot - good) + 1;
    memcpy(bad, good, (size_t)head);
    /* 256 bytes of 'A' in base64url ("QUFB" per 3 bytes, then "QQ"): one byte too many */
    size_t len = (size_t)head;
    for (int i = 0; i < 85; i++, len += 4)
        memcpy(bad + len, "QUFB", 4);
    memcpy(bad + len, "QQ", 2);
    len += 2;
    bp_token_t t;
    bp_token_batch_t b;
    const char *why;
    assert_int_equal(bp_token_parse(bad, len, TOPIC, &t, &b, &why), -1);
    assert_non_null(strstr(why, "not a receipt token"));
    /* far longer: the same answer */
    for (size_t i = len; i < sizeof(bad); i++)
        bad[i] = 'Q';
    assert_int_equal(bp_token_parse(bad, sizeof(bad), TOPIC, &t, &b, &why), -1);
    (void)n;
}

static void test_list_keeps_the_highest_offset_per_partition(void **state)
{
    (void)state;
    char a[BP_TOKEN_MAX], b[BP_TOKEN_MAX], c[BP_TOKEN_MAX], list[4 * BP_TOKEN_MAX];
    bp_token_format(a, sizeof(a), TOPIC, 1, 10, NULL, 0);
    bp_token_format(b, sizeof(b), TOPIC, 2, 5, "batch-b", 7);
    bp_token_format(c, sizeof(c), TOPIC, 1, 30, "batch-c", 7);
    snprintf(list, sizeof(list), "%s, %s ,%s", a, b, c);
    bp_token_t out[4];
    size_t n = 0;
    const char *why;
    assert_int_equal(bp_token_parse_list(list, strlen(list), TOPIC, out, 4, &n, &why), 0);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].partition, 1);
    assert_true(out[0].offset == 30);
    assert_true(out[0].text_len == strlen(c) && memcmp(out[0].text, c, strlen(c)) == 0); /* c's own text */
    assert_int_equal(out[1].partition, 2);
    assert_true(out[1].offset == 5);
    assert_true(out[1].text_len == strlen(b) && memcmp(out[1].text, b, strlen(b)) == 0);
    assert_int_equal(bp_token_parse_list(list, strlen(list), TOPIC, out, 1, &n, &why), -1); /* 2 partitions > 1 */
    assert_non_null(strstr(why, "too many"));
    const char *bad[] = {"", ",", "x", " , ", NULL};
    for (size_t i = 0; bad[i] != NULL; i++)
        assert_int_equal(bp_token_parse_list(bad[i], strlen(bad[i]), TOPIC, out, 4, &n, &why), -1);
    snprintf(list, sizeof(list), "%s,", a); /* a trailing comma */
    assert_int_equal(bp_token_parse_list(list, strlen(list), TOPIC, out, 4, &n, &why), -1);
    snprintf(list, sizeof(list), "%s %s", a, b); /* a space is not a separator */
    assert_int_equal(bp_token_parse_list(list, strlen(list), TOPIC, out, 4, &n, &why), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_refuses_what_is_not_a_token),
        cmocka_unit_test(test_v2_round_trip),
        cmocka_unit_test(test_v1_still_parsed),
        cmocka_unit_test(test_v2_refuses_tampered),
        cmocka_unit_test(test_v2_refuses_oversize),
        cmocka_unit_test(test_list_keeps_the_highest_offset_per_partition),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
