/* test_budget.c - api/budget.c: the process-wide count of request-body bytes held, and when it is
 * spent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "budget.h"

static void test_spent_at_the_limit(void **state)
{
    (void)state;
    bp_budget_t *b = bp_budget_new(1000);
    assert_non_null(b);
    assert_int_equal(bp_budget_limit(b), 1000);
    assert_false(bp_budget_spent(b));
    bp_budget_charge(b, 999);
    assert_false(bp_budget_spent(b));
    bp_budget_charge(b, 1);
    assert_true(bp_budget_spent(b));
    bp_budget_charge(b, 500); /* memory already in use is counted, never refused */
    assert_int_equal(bp_budget_held(b), 1500);
    bp_budget_release(b, 1500);
    assert_int_equal(bp_budget_held(b), 0);
    assert_false(bp_budget_spent(b));
    bp_budget_free(b);
    bp_budget_free(NULL);
}

static void test_own_bytes_do_not_spend_it(void **state)
{
    (void)state;
    bp_budget_t *b = bp_budget_new(1000);
    bp_budget_charge(b, 1200); /* one body larger than the whole budget */
    assert_true(bp_budget_spent(b));
    assert_false(bp_budget_spent_besides(b, 1200));
    assert_false(bp_budget_spent_besides(b, 5000)); /* more than held: nothing left */
    bp_budget_charge(b, 1000); /* another body arrives */
    assert_true(bp_budget_spent_besides(b, 1200));
    bp_budget_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spent_at_the_limit),
        cmocka_unit_test(test_own_bytes_do_not_spend_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
