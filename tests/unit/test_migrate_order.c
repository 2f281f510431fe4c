/* test_migrate_order.c - migrations run in numeric order, and badly named or duplicate-numbered
 * files are refused with a message naming them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "bp_pg.h"

static void test_numeric_not_lexical(void **state)
{
    char *names[] = {"10_later.sql", "002_roles.sql", "001_init.sql", "9_nine.sql"};
    char err[256];
    assert_int_equal(bp_migrate_order(names, 4, err, sizeof(err)), 0);
    assert_string_equal(names[0], "001_init.sql");
    assert_string_equal(names[1], "002_roles.sql");
    assert_string_equal(names[2], "9_nine.sql");
    assert_string_equal(names[3], "10_later.sql");
}

static void test_duplicate_number_refused(void **state)
{
    char *names[] = {"001_init.sql", "002_a.sql", "2_b.sql"};
    char err[256];
    assert_int_equal(bp_migrate_order(names, 3, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "002_a.sql"));
    assert_non_null(strstr(err, "2_b.sql"));
}

static void test_bad_names_refused(void **state)
{
    char err[256];
    char *a[] = {"init.sql"};
    assert_int_equal(bp_migrate_order(a, 1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "init.sql"));
    char *b[] = {"001-init.sql"};
    assert_int_equal(bp_migrate_order(b, 1, err, sizeof(err)), -1);
    char *c[] = {"001_init.txt"};
    assert_int_equal(bp_migrate_order(c, 1, err, sizeof(err)), -1);
}

static void test_empty_is_fine(void **state)
{
    char err[256];
    assert_int_equal(bp_migrate_order(NULL, 0, err, sizeof(err)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numeric_not_lexical),
        cmocka_unit_test(test_duplicate_number_refused),
        cmocka_unit_test(test_bad_names_refused),
        cmocka_unit_test(test_empty_is_fine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
