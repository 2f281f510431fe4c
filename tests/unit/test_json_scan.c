/* test_json_scan.c - the JSON scanner (shared/bp_json_scan.c): a top-level member's raw bytes (the
 * batch_id of a file, a page's results) and the elements of an array, on good and malformed text. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "bp_json_scan.h"

/* The raw value of member name in text as a string ("" when absent: then rc is -1). */
static int member(const char *text, const char *name, char *out, size_t n)
{
    const char *v;
    size_t vlen;
    int rc = bp_json_member(text, strlen(text), name, &v, &vlen);
    if (rc == 0)
        snprintf(out, n, "%.*s", (int)vlen, v);
    else
        out[0] = '\0';
    return rc;
}

static void test_member_found_raw(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(member("{\"batch_id\": \"b-1\", \"objects\": []}", "batch_id", out, sizeof(out)), 0);
    assert_string_equal(out, "\"b-1\"");
    /* after values of every kind, with brackets and quotes inside strings */
    const char *doc = " {\"a\": {\"x\": [1, {\"]\": \"}\"}]}, \"b\": \"q\\\"]\", \"n\": -1.5e3, \"t\": true,"
                      " \"results\": [{\"big\": 123456789012345678901234567890}]} ";
    assert_int_equal(member(doc, "n", out, sizeof(out)), 0);
    assert_string_equal(out, "-1.5e3");
    assert_int_equal(member(doc, "t", out, sizeof(out)), 0);
    assert_string_equal(out, "true");
    assert_int_equal(member(doc, "results", out, sizeof(out)), 0);
    assert_string_equal(out, "[{\"big\": 123456789012345678901234567890}]");
    /* only the top level counts */
    assert_int_equal(member(doc, "x", out, sizeof(out)), -1);
}

static void test_member_absent_or_malformed(void **state)
{
    (void)state;
    char out[64];
    const char *bad[] = {"", "[]", "\"batch_id\"", "{", "{\"batch_id\"", "{\"batch_id\":",
                         "{\"a\": [1, 2}, \"batch_id\": 1}", "{\"a\": \"unterminated, \"batch_id\": 1",
                         "{\"a\" 1, \"batch_id\": 2}", "{} trailing", "{\"a\": 1 \"batch_id\": 2}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(member(bad[i], "batch_id", out, sizeof(out)), -1);
    assert_int_equal(member("{\"batch_idx\": 1, \"batch\": 2}", "batch_id", out, sizeof(out)), -1);
}

static void test_deep_nesting_is_bounded(void **state)
{
    (void)state;
    static char doc[20000];
    size_t n = 0;
    n += (size_t)snprintf(doc, sizeof(doc), "{\"a\": ");
    for (int i = 0; i < 5000; i++)
        doc[n++] = '[';
    for (int i = 0; i < 5000; i++)
        doc[n++] = ']';
    snprintf(doc + n, sizeof(doc) - n, ", \"batch_id\": \"x\"}");
    char out[64];
    assert_int_equal(member(doc, "batch_id", out, sizeof(out)), -1); /* deeper than the scanner goes */
}

static void test_array_elements(void **state)
{
    (void)state;
    const char *arr = "[ {\"a\": [1, 2]} , \"s,]\", 3.5,null ]";
    size_t pos = 0, elen;
    const char *elem;
    const char *want[] = {"{\"a\": [1, 2]}", "\"s,]\"", "3.5", "null"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(bp_json_array_next(arr, strlen(arr), &pos, &elem, &elen), 1);
        assert_int_equal(elen, strlen(want[i]));
        assert_memory_equal(elem, want[i], elen);
    }
    assert_int_equal(bp_json_array_next(arr, strlen(arr), &pos, &elem, &elen), 0);

    pos = 0;
    assert_int_equal(bp_json_array_next("[ ]", 3, &pos, &elem, &elen), 0);
    pos = 0;
    assert_int_equal(bp_json_array_next("{}", 2, &pos, &elem, &elen), -1);
    pos = 0;
    assert_int_equal(bp_json_array_next("[1 2]", 5, &pos, &elem, &elen), 1);
    assert_int_equal(bp_json_array_next("[1 2]", 5, &pos, &elem, &elen), -1);
    pos = 0;
    assert_int_equal(bp_json_array_next("[{\"a\": 1]", 9, &pos, &elem, &elen), -1);
}

static void test_member_name_with_escapes(void **state)
{
    (void)state;
    char out[64];
    /* a parser reads these names as batch_id, data, caf\u00e9 and a name beyond the BMP */
    assert_int_equal(member("{\"batch\\u005fid\": \"x\"}", "batch_id", out, sizeof(out)), 0);
    assert_string_equal(out, "\"x\"");
    assert_int_equal(member("{\"a\": 1, \"d\\u0061ta\": [1.50]}", "data", out, sizeof(out)), 0);
    assert_string_equal(out, "[1.50]");
    assert_int_equal(member("{\"caf\\u00E9\": 2}", "caf\xc3\xa9", out, sizeof(out)), 0);
    assert_int_equal(member("{\"\\ud83d\\ude00\": 3}", "\xf0\x9f\x98\x80", out, sizeof(out)), 0);
    assert_string_equal(out, "3");
    assert_int_equal(member("{\"\\/\\\"\\n\": 4}", "/\"\n", out, sizeof(out)), 0);
    /* a lone surrogate or a broken escape spells nothing */
    assert_int_equal(member("{\"\\ud83d\": 5}", "\xed\xa0\xbd", out, sizeof(out)), -1);
    assert_int_equal(member("{\"\\u00zz\": 5}", "x", out, sizeof(out)), -1);
    assert_int_equal(member("{\"dat\\u0061x\": 6}", "data", out, sizeof(out)), -1);
}

static void test_object_members(void **state)
{
    (void)state;
    const char *obj = "{ \"a\" : 1e2 , \"b\\\"\":{\"x\":[1]},\"c\":-0.0 }";
    size_t pos = 0, nlen, vlen;
    const char *name, *value;
    const char *names[] = {"\"a\"", "\"b\\\"\"", "\"c\""}, *values[] = {"1e2", "{\"x\":[1]}", "-0.0"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(bp_json_object_next(obj, strlen(obj), &pos, &name, &nlen, &value, &vlen), 1);
        assert_int_equal(nlen, strlen(names[i]));
        assert_memory_equal(name, names[i], nlen);
        assert_int_equal(vlen, strlen(values[i]));
        assert_memory_equal(value, values[i], vlen);
    }
    assert_int_equal(bp_json_object_next(obj, strlen(obj), &pos, &name, &nlen, &value, &vlen), 0);
    pos = 0;
    assert_int_equal(bp_json_object_next("{ }", 3, &pos, &name, &nlen, &value, &vlen), 0);
    const char *bad[] = {"[]", "{1: 2}", "{\"a\" 1}", "{\"a\": 1 \"b\": 2}", "{\"a\":", "{\"a"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc;
        pos = 0;
        while ((rc = bp_json_object_next(bad[i], strlen(bad[i]), &pos, &name, &nlen, &value, &vlen)) == 1)
            ;
        assert_int_equal(rc, -1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_member_found_raw),
        cmocka_unit_test(test_member_absent_or_malformed),
        cmocka_unit_test(test_deep_nesting_is_bounded),
        cmocka_unit_test(test_array_elements),
        cmocka_unit_test(test_member_name_with_escapes),
        cmocka_unit_test(test_object_members),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
