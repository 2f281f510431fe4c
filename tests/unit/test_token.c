/* test_token.c - shared/bp_token.c: receipt tokens round-trip, refuse what is not one of ours, and an
 * `after=` list keeps the highest offset per partition. */
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
    return bp_token_parse(s, strlen(s), TOPIC, t, why);
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
            size_t n = bp_token_format(buf, sizeof(buf), TOPIC, parts[i], offs[k]);
            assert_true(n > 0 && n == strlen(buf) && n < BP_TOKEN_MAX);
            assert_null(strpbrk(buf, ",/?&= %"));
            assert_int_equal(parse(buf, &t, &why), 0);
            assert_int_equal(t.partition, parts[i]);
            assert_true(t.offset == offs[k]);
        }
    }
    assert_int_equal(bp_token_format(buf, 8, TOPIC, 1, 2), 0);     /* too small: nothing half-written */
    assert_int_equal(bp_token_format(buf, sizeof(buf), TOPIC, -1, 2), 0);
    assert_int_equal(bp_token_format(buf, sizeof(buf), TOPIC, 1, -2), 0);
}

static void test_refuses_what_is_not_a_token(void **state)
{
    (void)state;
    char good[BP_TOKEN_MAX], bad[BP_TOKEN_MAX + 8];
    bp_token_t t;
    const char *why;
    bp_token_format(good, sizeof(good), TOPIC, 3, 42);
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
    assert_int_equal(bp_token_parse(good, strlen(good), "other.topic", &t, &why), -1);
    assert_int_equal(bp_token_parse(good, strlen(good) - 1, TOPIC, &t, &why), -1); /* cut short */
}

static void test_list_keeps_the_highest_offset_per_partition(void **state)
{
    (void)state;
    char a[BP_TOKEN_MAX], b[BP_TOKEN_MAX], c[BP_TOKEN_MAX], list[4 * BP_TOKEN_MAX];
    bp_token_format(a, sizeof(a), TOPIC, 1, 10);
    bp_token_format(b, sizeof(b), TOPIC, 2, 5);
    bp_token_format(c, sizeof(c), TOPIC, 1, 30);
    snprintf(list, sizeof(list), "%s, %s ,%s", a, b, c);
    bp_token_t out[4];
    size_t n = 0;
    const char *why;
    assert_int_equal(bp_token_parse_list(list, strlen(list), TOPIC, out, 4, &n, &why), 0);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].partition, 1);
    assert_true(out[0].offset == 30);
    assert_int_equal(out[1].partition, 2);
    assert_true(out[1].offset == 5);
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
        cmocka_unit_test(test_list_keeps_the_highest_offset_per_partition),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
