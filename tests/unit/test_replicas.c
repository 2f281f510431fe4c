/* test_replicas.c - api/replicas.c: BP_PG_READ_DSN's list, the standbys' names, and where reads go
 * before any standby has been found usable (standbys here listen nowhere: port 1 refuses at once). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bp_config.h"
#include "replicas.h"

static bp_replicas_t *with_dsn(const char *list, char *err, size_t errlen)
{
    static bp_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.pg_read_dsn = (char *)list;
    cfg.max_replica_lag_ms = 5000;
    return bp_replicas_new(&cfg, NULL, err, errlen);
}

static void test_no_standby_reads_from_primary(void **state)
{
    (void)state;
    char err[256] = "";
    bp_replicas_t *r = with_dsn("", err, sizeof(err));
    assert_non_null(r);
    assert_int_equal(bp_replicas_count(r), 0);
    unsigned rr = 0;
    assert_int_equal(bp_replicas_pick(r, &rr), BP_PG_PRIMARY);
    json_t *j = bp_replicas_json(r);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "none");
    json_decref(j);
    bp_replicas_free(r);
    assert_int_equal(bp_replicas_pick(NULL, &rr), BP_PG_PRIMARY);
}

static void test_list_is_split_on_semicolons(void **state)
{
    (void)state;
    char err[256] = "";
    bp_replicas_t *r = with_dsn(" host=127.0.0.1 port=1 dbname=a ;; postgresql://u:secret@127.0.0.1:1/b ;",
                                err, sizeof(err));
    assert_non_null(r);
    assert_int_equal(bp_replicas_count(r), 2);
    assert_string_equal(bp_replicas_dsn(r, 1), "host=127.0.0.1 port=1 dbname=a ");
    assert_string_equal(bp_replicas_dsn(r, 2), "postgresql://u:secret@127.0.0.1:1/b ");
    assert_string_equal(bp_replicas_name(0), "primary");
    assert_string_equal(bp_replicas_name(2), "standby-2");
    /* nothing answers there: every read goes to the primary, and /readyz says why */
    unsigned rr = 0;
    assert_int_equal(bp_replicas_pick(r, &rr), BP_PG_PRIMARY);
    assert_false(bp_replicas_usable(r, 1));
    assert_true(bp_replicas_usable(r, BP_PG_PRIMARY));
    char applied[BP_APPLIED_MAX];
    assert_int_equal(bp_replicas_applied(r, 1, applied, sizeof(applied)), 0); /* never sampled */
    json_t *j = NULL;
    for (int i = 0; i < 100; i++) { /* the monitor's first round: 5 s at most */
        json_decref(j);
        j = bp_replicas_json(r);
        json_t *s = json_array_get(json_object_get(j, "standbys"), 1);
        if (strcmp(json_string_value(json_object_get(s, "status")), "down") == 0)
            break;
        nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
    assert_string_equal(json_string_value(json_object_get(j, "status")), "degraded");
    json_t *s = json_array_get(json_object_get(j, "standbys"), 1);
    assert_string_equal(json_string_value(json_object_get(s, "name")), "standby-2");
    assert_string_equal(json_string_value(json_object_get(s, "status")), "down");
    assert_false(json_boolean_value(json_object_get(s, "serving")));
    char *text = json_dumps(j, 0);
    assert_null(strstr(text, "secret")); /* public route: no connection strings */
    assert_null(strstr(text, "127.0.0.1"));
    free(text);
    json_decref(j);
    assert_int_equal(bp_replicas_pick(r, &rr), BP_PG_PRIMARY);
    bp_replicas_free(r);
}

static void test_bad_connection_string_is_refused(void **state)
{
    (void)state;
    char err[256] = "";
    assert_null(with_dsn("host=127.0.0.1 port=1;host=x bogus_keyword=1", err, sizeof(err)));
    assert_non_null(strstr(err, "BP_PG_READ_DSN"));
    assert_non_null(strstr(err, "bogus_keyword"));
}

/* A result of rows (partition, next_offset), as ingest_offsets gives them. */
static PGresult *offsets_result(const char *const rows[][2], int n)
{
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc cols[2] = {{.name = "partition", .format = 0}, {.name = "next_offset", .format = 0}};
    assert_true(PQsetResultAttrs(res, 2, cols));
    for (int i = 0; i < n; i++)
        for (int c = 0; c < 2; c++)
            assert_true(PQsetvalue(res, i, c, (char *)rows[i][c], (int)strlen(rows[i][c])));
    return res;
}

static void test_applied_through_text(void **state)
{
    (void)state;
    const char *const rows[][2] = {{"0", "124"}, {"1", "0"}, {"3", "457"}};
    PGresult *res = offsets_result(rows, 3);
    char buf[BP_APPLIED_MAX];
    /* the last applied offset (next_offset - 1); a partition with nothing applied is left out */
    assert_int_equal(bp_replicas_format_applied(res, buf, sizeof(buf)), strlen("0:123,3:456"));
    assert_string_equal(buf, "0:123,3:456");
    /* too small: nothing rather than a list that silently leaves partitions out */
    assert_int_equal(bp_replicas_format_applied(res, buf, 8), 0);
    assert_string_equal(buf, "");
    PQclear(res);
    res = offsets_result(rows, 0);
    assert_int_equal(bp_replicas_format_applied(res, buf, sizeof(buf)), 0);
    PQclear(res);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_standby_reads_from_primary),
        cmocka_unit_test(test_list_is_split_on_semicolons),
        cmocka_unit_test(test_bad_connection_string_is_refused),
        cmocka_unit_test(test_applied_through_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
