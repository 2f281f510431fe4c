/* test_config.c - the settings table: defaults, environment, flags, their order, and the one-line
 * errors a user sees for bad values. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bp_config.h"

extern char **environ;

/* The defaults are what a process sees with no BP_* variable: ops/test exports some. */
static int clear_bp_environment(void **state)
{
    for (int again = 1; again;) {
        again = 0;
        for (char **e = environ; *e != NULL; e++) {
            if (strncmp(*e, "BP_", 3) == 0) {
                char name[128];
                snprintf(name, sizeof(name), "%.*s", (int)(strcspn(*e, "=")), *e);
                unsetenv(name);
                again = 1;
                break;
            }
        }
    }
    return 0;
}

static void test_defaults(void **state)
{
    bp_config_t cfg;
    char err[256];
    char *argv[] = {"prog", NULL};
    assert_int_equal(bp_config_load(&cfg, BP_FOR_ALL, "u", 1, argv, NULL, err, sizeof(err)), 0);
    assert_int_equal(cfg.http_port, 8000);
    assert_int_equal(cfg.max_body_bytes, 16 * 1024 * 1024);
    assert_int_equal(cfg.page_size_default, 10);
    assert_string_equal(cfg.topic, "batchpipe.batches");
    assert_string_equal(cfg.kafka_brokers, "127.0.0.1:9092");
    bp_config_free(&cfg);
}

static void test_env_then_flags(void **state)
{
    bp_config_t cfg;
    char err[256];
    int first = 0;
    setenv("BP_HTTP_PORT", "9001", 1);
    setenv("BP_TOPIC", "from-env", 1);
    char *argv[] = {"prog", "--http-port=9002", "--max-body-bytes", "1MiB", "rest", NULL};
    assert_int_equal(bp_config_load(&cfg, BP_FOR_ALL, "u", 5, argv, &first, err, sizeof(err)), 0);
    assert_int_equal(cfg.http_port, 9002);        /* flag beats environment */
    assert_string_equal(cfg.topic, "from-env");   /* environment beats default */
    assert_int_equal(cfg.max_body_bytes, 1024 * 1024);
    assert_int_equal(first, 4);
    bp_config_free(&cfg);
    unsetenv("BP_HTTP_PORT");
    unsetenv("BP_TOPIC");
}

static void test_bad_values_name_the_setting(void **state)
{
    bp_config_t cfg;
    char err[256];
    char *argv[] = {"prog", NULL};
    setenv("BP_HTTP_PORT", "eighty", 1);
    assert_int_equal(bp_config_load(&cfg, BP_FOR_API, "u", 1, argv, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "BP_HTTP_PORT"));
    assert_non_null(strstr(err, "eighty"));
    bp_config_free(&cfg);
    setenv("BP_HTTP_PORT", "70000", 1);
    assert_int_equal(bp_config_load(&cfg, BP_FOR_API, "u", 1, argv, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "out of range"));
    bp_config_free(&cfg);
    unsetenv("BP_HTTP_PORT");
    setenv("BP_LOG_LEVEL", "loud", 1);
    assert_int_equal(bp_config_load(&cfg, BP_FOR_API, "u", 1, argv, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "BP_LOG_LEVEL"));
    bp_config_free(&cfg);
    unsetenv("BP_LOG_LEVEL");
    setenv("BP_MAX_BODY_BYTES", "12 parsecs", 1);
    assert_int_equal(bp_config_load(&cfg, BP_FOR_API, "u", 1, argv, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "BP_MAX_BODY_BYTES"));
    bp_config_free(&cfg);
    unsetenv("BP_MAX_BODY_BYTES");
}

static void test_unknown_flag_and_missing_value(void **state)
{
    bp_config_t cfg;
    char err[256];
    char *argv1[] = {"prog", "--no-such-thing=1", NULL};
    assert_int_equal(bp_config_load(&cfg, BP_FOR_API, "u", 2, argv1, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "--no-such-thing"));
    bp_config_free(&cfg);
    char *argv2[] = {"prog", "--http-port", NULL};
    assert_int_equal(bp_config_load(&cfg, BP_FOR_API, "u", 2, argv2, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "needs a value"));
    bp_config_free(&cfg);
    /* a worker setting is not a flag of the API */
    char *argv3[] = {"prog", "--txn-max-messages=5", NULL};
    assert_int_equal(bp_config_load(&cfg, BP_FOR_API, "u", 2, argv3, NULL, err, sizeof(err)), -1);
    bp_config_free(&cfg);
}

static void test_page_size_default_within_max(void **state)
{
    bp_config_t cfg;
    char err[256];
    char *argv[] = {"prog", "--page-size-default=50", "--page-size-max=20", NULL};
    assert_int_equal(bp_config_load(&cfg, BP_FOR_API, "u", 3, argv, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "BP_PAGE_SIZE_DEFAULT"));
    bp_config_free(&cfg);
}

static void test_dump_masks_password(void **state)
{
    bp_config_t cfg;
    char err[256];
    char *argv[] = {"prog", "--pg-dsn=host=db user=app password=s3cr3t-value dbname=x",
                    "--api-key=k3y-value-0123456789", NULL};
    assert_int_equal(bp_config_load(&cfg, BP_FOR_ALL, "u", 3, argv, NULL, err, sizeof(err)), 0);
    json_t *dump = bp_config_dump(&cfg, BP_FOR_ALL);
    char *text = json_dumps(dump, 0);
    assert_null(strstr(text, "s3cr3t"));
    assert_null(strstr(text, "k3y-value"));
    assert_string_equal(json_string_value(json_object_get(dump, "BP_API_KEY")), "****");
    assert_non_null(strstr(text, "password=****"));
    assert_non_null(strstr(text, "dbname=x"));
    free(text);
    json_decref(dump);
    char *uri = bp_config_mask_dsn("postgresql://app:hunter22@db:5432/x");
    assert_string_equal(uri, "postgresql://app:****@db:5432/x");
    free(uri);
    /* BP_PG_READ_DSN: several connection strings, each password masked */
    char *list = bp_config_mask_dsn("host=a password=first-secret;postgresql://u:second-secret@b/x;host=c");
    assert_string_equal(list, "host=a password=****;postgresql://u:****@b/x;host=c");
    free(list);
    bp_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_env_then_flags),
        cmocka_unit_test(test_bad_values_name_the_setting),
        cmocka_unit_test(test_unknown_flag_and_missing_value),
        cmocka_unit_test(test_page_size_default_within_max),
        cmocka_unit_test(test_dump_masks_password),
    };
    return cmocka_run_group_tests(tests, clear_bp_environment, NULL);
}
