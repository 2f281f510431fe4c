/* test_keybudget.c - api/keybudget.c: a client's first body is always taken, later ones only within
 * the limit; bytes given back free the client; the table agrees with a plain model through thousands
 * of random takes and gives (growth and removals from the middle of probe chains). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keybudget.h"

static void test_first_body_always_then_within_the_limit(void **state)
{
    (void)state;
    bp_keybudget_t *kb = bp_keybudget_new(100);
    assert_non_null(kb);
    assert_int_equal(bp_keybudget_take(kb, "key:a", 500), 0); /* alone, larger than the limit: taken */
    assert_int_equal(bp_keybudget_take(kb, "key:a", 1), -1);  /* nothing more while it is held */
    assert_int_equal(bp_keybudget_take(kb, "key:b", 60), 0);  /* another client is not affected */
    assert_int_equal(bp_keybudget_take(kb, "key:b", 40), 0);  /* exactly the limit */
    assert_int_equal(bp_keybudget_take(kb, "key:b", 1), -1);
    assert_int_equal(bp_keybudget_held(kb, "key:b"), 100);
    assert_int_equal(bp_keybudget_clients(kb), 2);
    bp_keybudget_give(kb, "key:a", 500);
    assert_int_equal(bp_keybudget_held(kb, "key:a"), 0);
    assert_int_equal(bp_keybudget_clients(kb), 1);
    assert_int_equal(bp_keybudget_take(kb, "key:a", 1), 0);
    bp_keybudget_give(kb, "nobody", 10); /* unknown: nothing happens */
    assert_int_equal(bp_keybudget_clients(kb), 2);
    assert_int_equal(bp_keybudget_take(kb, "", 5), 0); /* an empty name is a client too */
    assert_int_equal(bp_keybudget_held(kb, ""), 5);
    bp_keybudget_free(kb);
    bp_keybudget_free(NULL);
}

#define CLIENTS 300

static void test_agrees_with_a_model(void **state)
{
    (void)state;
    bp_keybudget_t *kb = bp_keybudget_new(1000);
    assert_non_null(kb);
    static size_t model[CLIENTS];
    char name[32];
    srand(7);
    for (int step = 0; step < 200000; step++) {
        int c = rand() % CLIENTS;
        snprintf(name, sizeof(name), "client-%d", c);
        if (rand() % 2 == 0) {
            size_t n = (size_t)(rand() % 400);
            int want = model[c] > 0 && model[c] + n > 1000 ? -1 : 0;
            assert_int_equal(bp_keybudget_take(kb, name, n), want);
            if (want == 0)
                model[c] += n;
        } else if (model[c] > 0) {
            size_t n = rand() % 2 == 0 ? model[c] : (size_t)(rand() % (int)model[c]) + 1;
            bp_keybudget_give(kb, name, n);
            model[c] -= n;
        }
        if (step % 1000 == 0) {
            size_t holding = 0;
            for (int k = 0; k < CLIENTS; k++) {
                snprintf(name, sizeof(name), "client-%d", k);
                assert_int_equal(bp_keybudget_held(kb, name), model[k]);
                holding += model[k] > 0;
            }
            assert_int_equal(bp_keybudget_clients(kb), holding);
        }
    }
    bp_keybudget_free(kb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_body_always_then_within_the_limit),
        cmocka_unit_test(test_agrees_with_a_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
