/* test_pg_fault.c - the SQLSTATE table of shared/bp_pg.c: whose fault a failure is (what the ingest
 * worker retries without limit, bounds, or dead-letters), and the API's mapping kept as it was. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "bp_pg.h"

static void connection_loss_and_shutdown_are_retried_without_limit(void **state)
{
    const char *states[] = {NULL, "", "08006", "08001", "57P01", "57P02", "57P03", "57P05"};
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        assert_int_equal(bp_pg_fault_sqlstate(states[i]), BP_PG_FAULT_CONNECTION);
        assert_false(bp_pg_fault_bounded(bp_pg_fault_sqlstate(states[i])));
    }
}

static void failures_no_message_can_cause_need_an_operator(void **state)
{
    const char *states[] = {"28000", "28P01", "3D000", "42501", "42P01", "42703", "42883", "57P04"};
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        assert_int_equal(bp_pg_fault_sqlstate(states[i]), BP_PG_FAULT_OPERATOR);
        assert_false(bp_pg_fault_bounded(BP_PG_FAULT_OPERATOR));
    }
}

static void the_rest_is_bounded(void **state)
{
    assert_int_equal(bp_pg_fault_sqlstate("22003"), BP_PG_FAULT_DATA);
    assert_int_equal(bp_pg_fault_sqlstate("23505"), BP_PG_FAULT_DATA);
    assert_int_equal(bp_pg_fault_sqlstate("54000"), BP_PG_FAULT_DATA);
    assert_int_equal(bp_pg_fault_sqlstate("40P01"), BP_PG_FAULT_CONCURRENCY);
    assert_int_equal(bp_pg_fault_sqlstate("40001"), BP_PG_FAULT_CONCURRENCY);
    assert_int_equal(bp_pg_fault_sqlstate("55P03"), BP_PG_FAULT_CONCURRENCY);
    const char *other[] = {"XX000", "21000", "53200", "53100", "57014", "58030", "42601", "P0001"};
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++)
        assert_int_equal(bp_pg_fault_sqlstate(other[i]), BP_PG_FAULT_OTHER);
    assert_true(bp_pg_fault_bounded(BP_PG_FAULT_OTHER));
    assert_true(bp_pg_fault_bounded(BP_PG_FAULT_DATA));
    assert_true(bp_pg_fault_bounded(BP_PG_FAULT_CONCURRENCY));
    assert_false(bp_pg_fault_bounded(BP_PG_FAULT_NONE));
}

static void the_api_mapping_is_unchanged(void **state)
{
    assert_int_equal(bp_pg_classify_sqlstate(NULL), BP_ERR_PG_DOWN);
    assert_int_equal(bp_pg_classify_sqlstate("08006"), BP_ERR_PG_DOWN);
    assert_int_equal(bp_pg_classify_sqlstate("57P04"), BP_ERR_PG_DOWN);
    assert_int_equal(bp_pg_classify_sqlstate("53200"), BP_ERR_PG_DOWN);
    assert_int_equal(bp_pg_classify_sqlstate("40P01"), BP_ERR_PG_TRANSIENT);
    assert_int_equal(bp_pg_classify_sqlstate("57014"), BP_ERR_PG_TRANSIENT);
    assert_int_equal(bp_pg_classify_sqlstate("XX000"), BP_ERR_PG_TRANSIENT);
    assert_int_equal(bp_pg_classify_sqlstate("58030"), BP_ERR_PG_TRANSIENT);
    assert_int_equal(bp_pg_classify_sqlstate("22003"), BP_ERR_PG_DATA);
    assert_int_equal(bp_pg_classify_sqlstate("42P01"), BP_ERR_PG_DATA);
    assert_int_equal(bp_pg_classify_sqlstate("21000"), BP_ERR_PG_DATA);
}

/* The API pool's outcome of a statement: success, a lost connection, an error without a SQLSTATE. */
static void a_statement_outcome_says_why_on_one_line(void **state)
{
    char msg[64];
    PGresult *ok = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    assert_int_equal(bp_pg_statement_outcome(NULL, ok, msg, sizeof(msg)), BP_OK);
    assert_string_equal(msg, "");
    PQclear(ok);
    assert_int_equal(bp_pg_statement_outcome(NULL, NULL, msg, sizeof(msg)), BP_ERR_PG_DOWN);
    assert_string_equal(msg, "unknown error");
    PGresult *bad = PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR);
    assert_int_equal(bp_pg_statement_outcome(NULL, bad, msg, sizeof(msg)), BP_ERR_PG_DOWN);
    assert_string_equal(msg, "unknown error");
    PQclear(bad);
}

/* What a hot standby gives up on its own (a read then runs on the primary), and what it does not. */
static void a_standby_gives_up_for_recovery_conflicts_and_shutdowns(void **state)
{
    const char *yes[] = {"40001", "57P01", "57P04"};
    const char *no[] = {NULL, "40P01", "57014", "08006", "22003", "42P01"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        assert_true(bp_pg_standby_gave_up(yes[i]));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_false(bp_pg_standby_gave_up(no[i]));
}

/* The ?wait= channel: a valid identifier however long the group, one per group and topic. */
static void the_offsets_channel_names_group_and_topic(void **state)
{
    char a[BP_PG_CHANNEL_LEN], b[BP_PG_CHANNEL_LEN], c[BP_PG_CHANNEL_LEN];
    char group[300];
    memset(group, 'g', sizeof(group) - 1);
    group[sizeof(group) - 1] = '\0';
    bp_pg_offsets_channel(group, "batchpipe.batches", a, sizeof(a));
    assert_true(strlen(a) < 64 && strncmp(a, "bp_offsets_", 11) == 0);
    bp_pg_offsets_channel(group, "batchpipe.batches", b, sizeof(b));
    assert_string_equal(a, b);
    bp_pg_offsets_channel("ab", "c", b, sizeof(b));
    bp_pg_offsets_channel("a", "bc", c, sizeof(c));
    assert_string_not_equal(b, c);
    for (const char *p = a; *p; p++)
        assert_true((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(connection_loss_and_shutdown_are_retried_without_limit),
        cmocka_unit_test(failures_no_message_can_cause_need_an_operator),
        cmocka_unit_test(the_rest_is_bounded),
        cmocka_unit_test(the_api_mapping_is_unchanged),
        cmocka_unit_test(a_statement_outcome_says_why_on_one_line),
        cmocka_unit_test(a_standby_gives_up_for_recovery_conflicts_and_shutdowns),
        cmocka_unit_test(the_offsets_channel_names_group_and_topic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
