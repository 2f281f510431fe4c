/* test_count_terms.c - the worker's counter terms (ingest/count_terms.c): canonical numbers as PostgreSQL
 * prints to_jsonb(trim_scale(numeric)), the typed rule, and one object's terms as migration 007 counts them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "count_terms.h"

static void canon_is(const char *in, const char *want)
{
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(bp_count_canon_number(in, strlen(in), &out, &len), BP_COUNT_OK);
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
    free(out);
}

static void test_canon_numbers(void **state)
{
    (void)state;
    /* each expected text is what PostgreSQL 15 prints for to_jsonb(trim_scale(in::numeric)) */
    canon_is("1e2", "100");
    canon_is("1E+2", "100");
    canon_is("1.0", "1");
    canon_is("-0.0", "0");
    canon_is("-0", "0");
    canon_is("0e5", "0");
    canon_is("0.000", "0");
    canon_is("100e-2", "1");
    canon_is("1.50e-3", "0.0015");
    canon_is("-1.2300e1", "-12.3");
    canon_is("12345678901234567890", "12345678901234567890");
    canon_is("1e20", "100000000000000000000");
    canon_is("19.99", "19.99");
    canon_is("0.1", "0.1");
    canon_is("-5", "-5");
    canon_is("120", "120");
    canon_is("1.5e1", "15");
    canon_is("123.456e-5", "0.00123456");
}

static void test_canon_limits(void **state)
{
    (void)state;
    char *out = NULL;
    size_t len;
    /* PostgreSQL: '1e131071' fits (131,072 digits), '1e131072', '1e-20000', '0.1e-16383' overflow */
    assert_int_equal(bp_count_canon_number("1e131071", 8, &out, &len), BP_COUNT_OK);
    assert_int_equal(len, 131072);
    free(out);
    assert_int_equal(bp_count_canon_number("1e131072", 8, &out, &len), BP_COUNT_OVERFLOW);
    assert_int_equal(bp_count_canon_number("1e-20000", 8, &out, &len), BP_COUNT_OVERFLOW);
    assert_int_equal(bp_count_canon_number("0.1e-16383", 10, &out, &len), BP_COUNT_OVERFLOW);
    assert_int_equal(bp_count_canon_number("1e99999999999", 13, &out, &len), BP_COUNT_OVERFLOW);
    assert_int_equal(bp_count_canon_number("01", 2, &out, &len), BP_COUNT_MALFORMED);
    assert_int_equal(bp_count_canon_number("1.", 2, &out, &len), BP_COUNT_MALFORMED);
    assert_int_equal(bp_count_canon_number("+1", 2, &out, &len), BP_COUNT_MALFORMED);
    assert_int_equal(bp_count_canon_number("", 0, &out, &len), BP_COUNT_MALFORMED);
}

static void test_typed(void **state)
{
    (void)state;
    char *out = NULL;
    size_t len;
    assert_int_equal(bp_count_typed("42", 2, &out, &len), 1);
    assert_string_equal(out, "42");
    free(out);
    assert_int_equal(bp_count_typed("4.20", 4, &out, &len), 1);
    assert_string_equal(out, "4.2");
    free(out);
    assert_int_equal(bp_count_typed("null", 4, &out, &len), 1);
    assert_string_equal(out, "null");
    free(out);
    assert_int_equal(bp_count_typed("true", 4, &out, &len), 1);
    free(out);
    assert_int_equal(bp_count_typed("True", 4, &out, &len), 0);
    assert_int_equal(bp_count_typed(" 42", 3, &out, &len), 0);
    assert_int_equal(bp_count_typed("42\n", 3, &out, &len), 0);
    assert_int_equal(bp_count_typed("0x10", 4, &out, &len), 0);
    assert_int_equal(bp_count_typed("", 0, &out, &len), 0);
    assert_int_equal(bp_count_typed("1e200000", 8, &out, &len), BP_COUNT_OVERFLOW);
}

/* The terms of a set as sorted lines "kind|key|value|n" (key and value "-" when absent). */
static char *dump(const bp_count_terms_t *t)
{
    size_t pos = 0, n = 0;
    bp_count_term_t term;
    char **lines = calloc(bp_count_terms_size(t) + 1, sizeof(*lines));
    while (bp_count_terms_next(t, &pos, &term)) {
        lines[n] = malloc(strlen(term.key ? term.key : "-") + strlen(term.value ? term.value : "-") + 32);
        sprintf(lines[n++], "%c|%s|%s|%lld", term.kind, term.key ? term.key : "-", term.value ? term.value : "-",
                (long long)term.n);
    }
    for (size_t i = 1; i < n; i++) /* insertion sort: small */
        for (size_t j = i; j > 0 && strcmp(lines[j - 1], lines[j]) > 0; j--) {
            char *x = lines[j];
            lines[j] = lines[j - 1];
            lines[j - 1] = x;
        }
    size_t total = 1;
    for (size_t i = 0; i < n; i++)
        total += strlen(lines[i]) + 1;
    char *s = calloc(1, total);
    for (size_t i = 0; i < n; i++) {
        strcat(s, lines[i]);
        strcat(s, "\n");
        free(lines[i]);
    }
    free(lines);
    return s;
}

static void terms_are(const char *data, const char *const *sparse, size_t nsparse, const char *want)
{
    bp_count_terms_t *t = bp_count_terms_new();
    assert_non_null(t);
    assert_int_equal(bp_count_terms_add_object(t, "b1", 2, data, strlen(data), sparse, nsparse, 1), BP_COUNT_OK);
    char *got = dump(t);
    assert_string_equal(got, want);
    free(got);
    bp_count_terms_free(t);
}

static void test_object_terms(void **state)
{
    (void)state;
    /* a repeated pair and a repeated value count once; 1.0 and 1e0 are the value 1 */
    terms_are("[{\"key\":\"a\",\"value\":1.0},{\"key\":\"a\",\"value\":1e0},{\"key\":\"b\",\"value\":1}]", NULL, 0,
              "b|b1|-|1\nk|a|-|1\nk|b|-|1\np|a|1|1\np|b|1|1\nt|-|-|1\nv|-|1|1\n");
    /* strings: escapes decoded ("\u0041" is "A"), "1" is not 1, empty string, unicode, null, booleans */
    terms_are("[{\"key\":\"s\",\"value\":\"\\u0041\"},{\"k\\u0065y\":\"s\",\"value\":\"A\"},"
              "{\"key\":\"e\",\"value\":\"\"},{\"key\":\"\\u00e9\",\"value\":\"caf\\u00e9\\n\"},"
              "{\"key\":\"n\",\"value\":null},{\"key\":\"f\",\"value\":false}]",
              NULL, 0,
              "b|b1|-|1\nk|e|-|1\nk|f|-|1\nk|n|-|1\nk|s|-|1\nk|\xc3\xa9|-|1\np|e|\"\"|1\np|f|false|1\n"
              "p|n|null|1\np|s|\"A\"|1\np|\xc3\xa9|\"caf\xc3\xa9\\n\"|1\nt|-|-|1\nv|-|\"\"|1\nv|-|\"A\"|1\n"
              "v|-|\"caf\xc3\xa9\\n\"|1\nv|-|false|1\nv|-|null|1\n");
    /* the typed rule: "42" and 42.0 in one object ('x'), under the same key ('y'), once each */
    terms_are("[{\"key\":\"a\",\"value\":\"42\"},{\"key\":\"a\",\"value\":42.0},{\"key\":\"b\",\"value\":42}]", NULL,
              0,
              "b|b1|-|1\nk|a|-|1\nk|b|-|1\np|a|\"42\"|1\np|a|42|1\np|b|42|1\nt|-|-|1\nv|-|\"42\"|1\nv|-|42|1\n"
              "x|-|[\"42\", 42]|1\ny|a|[\"42\", 42]|1\n");
    /* a sparse key: its 'k' only, and it takes no part in 'v', 'x', 'y' */
    const char *sparse[] = {"sku"};
    terms_are("[{\"key\":\"sku\",\"value\":\"7\"},{\"key\":\"n\",\"value\":7},{\"key\":\"sku\",\"value\":7}]", sparse,
              1, "b|b1|-|1\nk|n|-|1\nk|sku|-|1\np|n|7|1\nt|-|-|1\nv|-|7|1\n");
    /* strings longer than the scratch buffer's first size (it moves while they are re-escaped) */
    {
        size_t n = 20000;
        char *data = malloc(n + 64), *want = malloc(2 * n + 256);
        int len = sprintf(data, "[{\"key\":\"long\",\"value\":\"");
        for (size_t i = 0; i < n / 2; i++)
            len += sprintf(data + len, "\\n");
        sprintf(data + len, "\"}]");
        len = sprintf(want, "b|b1|-|1\nk|long|-|1\np|long|\"");
        for (size_t i = 0; i < n / 2; i++)
            len += sprintf(want + len, "\\n");
        len += sprintf(want + len, "\"|1\nt|-|-|1\nv|-|\"");
        for (size_t i = 0; i < n / 2; i++)
            len += sprintf(want + len, "\\n");
        sprintf(want + len, "\"|1\n");
        terms_are(data, NULL, 0, want);
        free(data);
        free(want);
    }
    /* no data at all: still an object of its batch */
    terms_are("[]", NULL, 0, "b|b1|-|1\nt|-|-|1\n");
}

static void test_overflow_and_merge(void **state)
{
    (void)state;
    bp_count_terms_t *t = bp_count_terms_new(), *u = bp_count_terms_new();
    const char *bad = "[{\"key\":\"a\",\"value\":\"1e200000\"}]";
    assert_int_equal(bp_count_terms_add_object(t, "b", 1, bad, strlen(bad), NULL, 0, 1), BP_COUNT_OVERFLOW);
    bp_count_terms_clear(t);
    const char *one = "[{\"key\":\"a\",\"value\":1}]";
    for (int i = 0; i < 1000; i++)
        assert_int_equal(bp_count_terms_add_object(t, "b", 1, one, strlen(one), NULL, 0, 1), BP_COUNT_OK);
    assert_int_equal(bp_count_terms_add_object(u, "b", 1, one, strlen(one), NULL, 0, -1), BP_COUNT_OK);
    assert_int_equal(bp_count_terms_merge(t, u), BP_COUNT_OK);
    char *got = dump(t);
    assert_string_equal(got, "b|b|-|999\nk|a|-|999\np|a|1|999\nt|-|-|999\nv|-|1|999\n");
    free(got);
    bp_count_terms_free(t);
    bp_count_terms_free(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canon_numbers), cmocka_unit_test(test_canon_limits), cmocka_unit_test(test_typed),
        cmocka_unit_test(test_object_terms), cmocka_unit_test(test_overflow_and_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
