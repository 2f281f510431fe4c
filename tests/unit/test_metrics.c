/* test_metrics.c - the Prometheus registry: what a scraper sees for counters, gauges, computed gauges
 * and histograms, grouping under one HELP/TYPE, label escaping, and concurrent updates. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_text_format),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_concurrent_updates_are_not_lost),
        cmocka_unit_test(test_null_is_harmless),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
