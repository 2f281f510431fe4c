/* test_ratelimit.c - the token buckets' arithmetic (burst, refill, Retry-After), one bucket per client,
 * eviction of the least recently seen client only, and which address a request counts under behind
 * trusted proxies (X-Forwarded-For). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "ratelimit.h"

static void test_burst_then_refill(void **state)
{
    bp_ratelimit_t *rl = bp_ratelimit_new(2, 3); /* 2 per second, bursts of 3 */
    for (int i = 0; i < 3; i++)
        assert_int_equal(bp_ratelimit_take(rl, "a", 1000), 0);
    assert_int_equal(bp_ratelimit_take(rl, "a", 1000), 1); /* empty: a token in 0.5 s, said as 1 s */
    assert_int_equal(bp_ratelimit_take(rl, "a", 1400), 1); /* 0.8 of a token */
    assert_int_equal(bp_ratelimit_take(rl, "a", 1600), 0); /* 1.2 tokens: one taken */
    assert_int_equal(bp_ratelimit_take(rl, "a", 100000), 0); /* long idle: back to the burst, no more */
    assert_int_equal(bp_ratelimit_take(rl, "a", 100000), 0);
    assert_int_equal(bp_ratelimit_take(rl, "a", 100000), 0);
    assert_int_equal(bp_ratelimit_take(rl, "a", 100000), 1);
    bp_ratelimit_free(rl);

    rl = bp_ratelimit_new(0.1, 1); /* one per 10 s: Retry-After says 10 */
    assert_int_equal(bp_ratelimit_take(rl, "slow", 0), 0);
    assert_int_equal(bp_ratelimit_take(rl, "slow", 0), 10);
    bp_ratelimit_free(rl);
}

static void test_clients_have_their_own_buckets(void **state)
{
    bp_ratelimit_t *rl = bp_ratelimit_new(1, 2);
    assert_int_equal(bp_ratelimit_take(rl, "key:0123456789abcdef", 0), 0);
    assert_int_equal(bp_ratelimit_take(rl, "key:0123456789abcdef", 0), 0);
    assert_true(bp_ratelimit_take(rl, "key:0123456789abcdef", 0) > 0);
    assert_int_equal(bp_ratelimit_take(rl, "key:fedcba9876543210", 0), 0);
    assert_int_equal(bp_ratelimit_take(rl, "192.0.2.1", 0), 0);
    bp_ratelimit_free(rl);
}

static void test_only_the_least_recently_seen_is_forgotten(void **state)
{
    bp_ratelimit_t *rl = bp_ratelimit_new(0.001, 1);
    char name[32];
    assert_int_equal(bp_ratelimit_take(rl, "busy", 0), 0);
    assert_true(bp_ratelimit_take(rl, "busy", 1) > 0);
    /* the table fills with others; "busy" keeps coming back, so it is never the one forgotten, and
     * stays limited instead of getting a fresh bucket */
    for (int i = 0; i < 5 * BP_RATELIMIT_CLIENTS; i++) {
        snprintf(name, sizeof(name), "10.0.%d.%d", i / 256, i % 256);
        assert_int_equal(bp_ratelimit_take(rl, name, 2 + i), 0);
        if (i % (BP_RATELIMIT_CLIENTS / 2) == 0)
            assert_true(bp_ratelimit_take(rl, "busy", 2 + i) > 0);
    }
    assert_true(bp_ratelimit_take(rl, "busy", 10 * BP_RATELIMIT_CLIENTS) > 0);
    /* a client not seen for BP_RATELIMIT_CLIENTS others is forgotten: it starts again with a full bucket */
    assert_int_equal(bp_ratelimit_take(rl, "once", 0), 0);
    assert_true(bp_ratelimit_take(rl, "once", 0) > 0);
    for (int i = 0; i < BP_RATELIMIT_CLIENTS; i++) {
        snprintf(name, sizeof(name), "new-%d", i);
        bp_ratelimit_take(rl, name, 1);
    }
    assert_int_equal(bp_ratelimit_take(rl, "once", 2), 0);
    bp_ratelimit_free(rl);
}

static void test_long_names_are_cut_not_overflowed(void **state)
{
    bp_ratelimit_t *rl = bp_ratelimit_new(1, 1);
    char name[200];
    memset(name, 'x', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    assert_int_equal(bp_ratelimit_take(rl, name, 0), 0);
    assert_true(bp_ratelimit_take(rl, name, 0) > 0);
    bp_ratelimit_free(rl);
}

static const char *client(const char *peer, const char *xff, const char *trusted)
{
    static char out[64];
    bp_ratelimit_client_address(peer, xff, xff != NULL ? strlen(xff) : 0, trusted, out, sizeof(out));
    return out;
}

static void test_forwarded_for_only_from_trusted_proxies(void **state)
{
    /* no trusted proxy: the header is the client's own claim, ignored */
    assert_string_equal(client("192.0.2.1", "203.0.113.7", ""), "192.0.2.1");
    assert_string_equal(client("192.0.2.1", "203.0.113.7", "10.0.0.1"), "192.0.2.1");
    /* from our proxy: the address it added (the rightmost) */
    assert_string_equal(client("10.0.0.1", "203.0.113.7", "10.0.0.1"), "203.0.113.7");
    assert_string_equal(client("10.0.0.1", "1.1.1.1, 203.0.113.7", "10.0.0.1"), "203.0.113.7");
    /* a chain of our proxies: skip them, stop at the first hop we do not run */
    assert_string_equal(client("10.0.0.1", "6.6.6.6, 203.0.113.7, 10.0.0.2", "10.0.0.1, 10.0.0.2"), "203.0.113.7");
    assert_string_equal(client("::1", "2001:db8::5", "::1,10.0.0.1"), "2001:db8::5");
    /* no header, or nothing usable in it: the proxy itself */
    assert_string_equal(client("10.0.0.1", NULL, "10.0.0.1"), "10.0.0.1");
    assert_string_equal(client("10.0.0.1", "not an address", "10.0.0.1"), "10.0.0.1");
    assert_string_equal(client("10.0.0.1", "", "10.0.0.1"), "10.0.0.1");
    assert_string_equal(client("10.0.0.1", "10.0.0.1", "10.0.0.1"), "10.0.0.1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refill),
        cmocka_unit_test(test_clients_have_their_own_buckets),
        cmocka_unit_test(test_only_the_least_recently_seen_is_forgotten),
        cmocka_unit_test(test_long_names_are_cut_not_overflowed),
        cmocka_unit_test(test_forwarded_for_only_from_trusted_proxies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
