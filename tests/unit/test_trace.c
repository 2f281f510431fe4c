/* test_trace.c - the traceparent check (shared/bp_trace.c): what W3C Trace Context accepts, and the
 * malformed headers a POST may carry (ignored by the API, never a failed POST). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "bp_trace.h"

static int valid(const char *s)
{
    return bp_traceparent_valid(s, strlen(s));
}

static void test_accepts(void **state)
{
    (void)state;
    assert_true(valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    assert_true(valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"));
    /* a later version may append fields after a '-' */
    assert_true(valid("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"));
}

static void test_refuses(void **state)
{
    (void)state;
    assert_false(valid(""));
    assert_false(valid("garbage"));
    assert_false(valid("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01")); /* upper case */
    assert_false(valid("00-00000000000000000000000000000000-00f067aa0ba902b7-01")); /* zero trace id */
    assert_false(valid("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01")); /* zero parent id */
    assert_false(valid("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")); /* version ff */
    assert_false(valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")); /* 00 is exact */
    assert_false(valid("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"));
    assert_false(valid("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    assert_false(bp_traceparent_valid(NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts),
        cmocka_unit_test(test_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
