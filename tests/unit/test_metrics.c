/* test_metrics.c - the Prometheus registry: what a scraper sees for counters, gauges, computed gauges
 * and histograms, grouping under one HELP/TYPE, label escaping, concurrent updates, the fixed set of
 * method labels and the registry's cap. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bp_metrics.h"

static double forty_two(void *arg)
{
    return *(double *)arg;
}

static void test_render_text_format(void **state)
{
    bp_metrics_t *m = bp_metrics_new();
    bp_metric_t *ok = bp_metrics_counter(m, "bp_requests_total", "Requests.", "route=\"/a\",status=\"200\"");
    bp_metric_t *bad = bp_metrics_counter(m, "bp_requests_total", "Requests.", "route=\"/a\",status=\"400\"");
    assert_ptr_equal(ok, bp_metrics_counter(m, "bp_requests_total", "Requests.", "route=\"/a\",status=\"200\""));
    bp_counter_add(ok, 3);
    bp_counter_add(bad, 1);
    bp_metric_t *g = bp_metrics_gauge(m, "bp_queue_depth", "Queue.", NULL);
    bp_gauge_set(g, 7);
    bp_gauge_add(g, -2);
    double v = 42;
    bp_metrics_gauge_fn(m, "bp_pool_in_use", "Pool.", "thread=\"0\"", forty_two, &v);
    const double bounds[] = {0.1, 1};
    bp_metric_t *h = bp_metrics_histogram(m, "bp_latency_seconds", "Latency.", NULL, bounds, 2);
    bp_histogram_observe(h, 0.05);
    bp_histogram_observe(h, 0.5);
    bp_histogram_observe(h, 5);

    char *text = bp_metrics_render(m);
    assert_non_null(text);
    assert_non_null(strstr(text, "# HELP bp_requests_total Requests.\n# TYPE bp_requests_total counter\n"
                                 "bp_requests_total{route=\"/a\",status=\"200\"} 3\n"
                                 "bp_requests_total{route=\"/a\",status=\"400\"} 1\n"));
    assert_non_null(strstr(text, "# TYPE bp_queue_depth gauge\nbp_queue_depth 5\n"));
    assert_non_null(strstr(text, "bp_pool_in_use{thread=\"0\"} 42\n"));
    assert_non_null(strstr(text, "bp_latency_seconds_bucket{le=\"0.1\"} 1\n"));
    assert_non_null(strstr(text, "bp_latency_seconds_bucket{le=\"1\"} 2\n"));
    assert_non_null(strstr(text, "bp_latency_seconds_bucket{le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(text, "bp_latency_seconds_sum 5.55"));
    assert_non_null(strstr(text, "bp_latency_seconds_count 3\n"));
    /* one HELP line per name */
    assert_null(strstr(strstr(text, "# HELP bp_requests_total") + 1, "# HELP bp_requests_total"));
    free(text);
    bp_metrics_free(m);
}

static void test_escape(void **state)
{
    char buf[64];
    assert_string_equal(bp_metrics_escape("a\"b\\c\nd", buf, sizeof(buf)), "a\\\"b\\\\c\\nd");
}

static void *hammer(void *arg)
{
    bp_metrics_t *m = arg;
    bp_metric_t *c = bp_metrics_counter(m, "bp_hits_total", "Hits.", NULL);
    bp_metric_t *h = bp_metrics_histogram(m, "bp_h", "H.", NULL, bp_metrics_latency_buckets,
                                          bp_metrics_latency_nbuckets);
    for (int i = 0; i < 100000; i++) {
        bp_counter_add(c, 1);
        bp_histogram_observe(h, 0.001);
    }
    return NULL;
}

static void test_concurrent_updates_are_not_lost(void **state)
{
    bp_metrics_t *m = bp_metrics_new();
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, hammer, m);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_true(bp_metric_value(bp_metrics_counter(m, "bp_hits_total", "Hits.", NULL)) == 400000);
    char *text = bp_metrics_render(m);
    assert_non_null(strstr(text, "bp_h_count 400000\n"));
    free(text);
    bp_metrics_free(m);
}

static void test_null_is_harmless(void **state)
{
    bp_counter_add(NULL, 1);
    bp_gauge_set(NULL, 1);
    bp_histogram_observe(NULL, 1);
    bp_metrics_free(NULL);
    assert_true(bp_metric_value(NULL) == 0);
}

static void test_method_labels_are_a_fixed_set(void **state)
{
    assert_string_equal(bp_metrics_method_labels[bp_metrics_method_index("GET", 3)], "GET");
    assert_string_equal(bp_metrics_method_labels[bp_metrics_method_index("DELETE", 6)], "DELETE");
    assert_string_equal(bp_metrics_method_labels[bp_metrics_method_index("OPTIONS", 7)], "OPTIONS");
    /* anything else a client may send is OTHER: a lower-case, longer, shorter or invented method */
    static const char *const others[] = {"get", "GETS", "GE", "", "BREW", "QWERTYUIOPAS", "POST\n", "PROPFIND"};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        assert_string_equal(bp_metrics_method_labels[bp_metrics_method_index(others[i], strlen(others[i]))],
                            "OTHER");
    /* the length counts, not a NUL: "GETX" cut to 3 bytes is GET */
    assert_string_equal(bp_metrics_method_labels[bp_metrics_method_index("GETX", 3)], "GET");
    assert_string_equal(bp_metrics_method_labels[BP_METRICS_N_METHODS - 1], "OTHER");
}

static void test_registry_is_capped_and_counts_what_it_refused(void **state)
{
    bp_metrics_t *m = bp_metrics_new();
    char labels[64];
    for (int i = 0; i < BP_METRICS_MAX_SERIES; i++) {
        snprintf(labels, sizeof(labels), "n=\"%d\"", i);
        assert_non_null(bp_metrics_counter(m, "bp_many_total", "Many.", labels));
    }
    /* full: a new series is refused (and updating it is harmless), an existing one is still found */
    assert_null(bp_metrics_counter(m, "bp_many_total", "Many.", "n=\"new\""));
    assert_null(bp_metrics_gauge(m, "bp_other", "Other.", NULL));
    bp_counter_add(bp_metrics_counter(m, "bp_many_total", "Many.", "n=\"new\""), 1);
    assert_non_null(bp_metrics_counter(m, "bp_many_total", "Many.", "n=\"7\""));
    char *text = bp_metrics_render(m);
    assert_non_null(strstr(text, "bp_metrics_series_dropped_total 3\n"));
    assert_null(strstr(text, "new"));
    free(text);
    bp_metrics_free(m);

    m = bp_metrics_new(); /* an empty registry says it dropped nothing */
    text = bp_metrics_render(m);
    assert_non_null(strstr(text, "# TYPE bp_metrics_series_dropped_total counter\nbp_metrics_series_dropped_total 0\n"));
    free(text);
    bp_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_text_format),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_concurrent_updates_are_not_lost),
        cmocka_unit_test(test_null_is_harmless),
        cmocka_unit_test(test_method_labels_are_a_fixed_set),
        cmocka_unit_test(test_registry_is_capped_and_counts_what_it_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
