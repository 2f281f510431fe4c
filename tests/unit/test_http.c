/* test_http.c - api/http.c's pure parts: route matching (the router's dispatch), percent-decoding of
 * ids and query values, and whether a Host header names this server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"

static int path_match(const char *pattern, const char *path, const char **seg, size_t *seglen)
{
    return bp_http_path_match(pattern, path, strlen(path), seg, seglen);
}

static void test_match_literal_with_optional_trailing_slash(void **state)
{
    (void)state;
    const char *seg = "x";
    size_t seglen = 7;
    assert_true(path_match("/api/v1/batches", "/api/v1/batches", &seg, &seglen));
    assert_null(seg);
    assert_int_equal(seglen, 0);
    assert_true(path_match("/api/v1/batches", "/api/v1/batches/", &seg, &seglen));
    assert_true(path_match("/api/v1/", "/api/v1", &seg, &seglen));
    assert_true(path_match("/", "/", &seg, &seglen));
    assert_false(path_match("/api/v1/batches", "/api/v1/batche", &seg, &seglen));
    assert_false(path_match("/api/v1/batches", "/api/v1/batchesx", &seg, &seglen));
    assert_false(path_match("/api/v1/batches", "/api/v1/batches//", &seg, &seglen));
    assert_false(path_match("/api/v1/batches", "/API/v1/batches", &seg, &seglen));
    assert_false(path_match("/", "", &seg, &seglen));
}

static void test_match_captures_one_raw_segment(void **state)
{
    (void)state;
    const char *seg;
    size_t seglen;
    const char *path = "/api/v1/objects/a%2Fb";
    assert_true(path_match("/api/v1/objects/{}", path, &seg, &seglen));
    assert_ptr_equal(seg, path + strlen("/api/v1/objects/"));
    assert_int_equal(seglen, 5); /* still encoded: the router decodes */
    assert_true(path_match("/api/v1/objects/{}", "/api/v1/objects/k1/", &seg, &seglen));
    assert_int_equal(seglen, 2);
    assert_memory_equal(seg, "k1", 2);
    assert_true(path_match("/api/v1/objects/{}/history", "/api/v1/objects/k1/history", &seg, &seglen));
    assert_int_equal(seglen, 2);
    assert_memory_equal(seg, "k1", 2);
}

static void test_match_refuses_empty_or_extra_segments(void **state)
{
    (void)state;
    const char *seg;
    size_t seglen;
    assert_false(path_match("/api/v1/objects/{}", "/api/v1/objects/", &seg, &seglen));
    assert_false(path_match("/api/v1/objects/{}", "/api/v1/objects", &seg, &seglen));
    assert_false(path_match("/api/v1/objects/{}", "/api/v1/objects//", &seg, &seglen));
    assert_false(path_match("/api/v1/objects/{}", "/api/v1/objects/a/b", &seg, &seglen));
    assert_false(path_match("/api/v1/objects/{}/history", "/api/v1/objects//history", &seg, &seglen));
    assert_false(path_match("/api/v1/objects/{}/history", "/api/v1/objects/a/histor", &seg, &seglen));
}

static long decode(const char *src, char *dst, int plus_is_space)
{
    return bp_http_percent_decode(src, strlen(src), dst, plus_is_space);
}

static void test_percent_decode(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(decode("plain", out, 0), 5);
    assert_string_equal(out, "plain");
    assert_int_equal(decode("a%2Fb", out, 0), 3);
    assert_string_equal(out, "a/b");
    assert_int_equal(decode("%e2%82%AC", out, 0), 3); /* either case of hex digits */
    assert_string_equal(out, "\xe2\x82\xac");
    assert_int_equal(decode("a+b", out, 0), 3);
    assert_string_equal(out, "a+b"); /* in a path '+' is itself */
    assert_int_equal(decode("a+b%2B", out, 1), 4);
    assert_string_equal(out, "a b+"); /* in a query it is a space, and %2B the plus */
    assert_int_equal(decode("", out, 0), 0);
    assert_string_equal(out, "");
    assert_int_equal(decode("a%00b", out, 0), 3); /* a NUL decodes; the length tells */
    assert_memory_equal(out, "a\0b", 3);
}

static void test_percent_decode_refuses_broken_escapes(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(decode("%", out, 0), -1);
    assert_int_equal(decode("abc%4", out, 0), -1);
    assert_int_equal(decode("%zz", out, 0), -1);
    assert_int_equal(decode("%4g", out, 0), -1);
    assert_int_equal(decode("%g4", out, 0), -1);
}

static int host_ok(const char *host, const char *listen_host, long long port, const char *allowed)
{
    return bp_http_host_allowed(host, strlen(host), listen_host, port, allowed);
}

static void test_host_allowed(void **state)
{
    (void)state;
    assert_true(host_ok("localhost", "0.0.0.0", 8080, ""));
    assert_true(host_ok("localhost:8080", "0.0.0.0", 8080, ""));
    assert_true(host_ok("127.0.0.1:8080", "0.0.0.0", 8080, ""));
    assert_true(host_ok("[::1]:8080", "0.0.0.0", 8080, ""));
    assert_true(host_ok("LOCALHOST", "0.0.0.0", 8080, ""));
    assert_false(host_ok("evil.example", "0.0.0.0", 8080, ""));
    assert_false(host_ok("0.0.0.0:8080", "0.0.0.0", 8080, "")); /* a wildcard names no one */
    assert_true(host_ok("api.internal:8080", "api.internal", 8080, ""));
    assert_true(host_ok("ingest.example", "0.0.0.0", 8080, "ingest.example"));
    assert_true(host_ok("ingest.example:443", "0.0.0.0", 8080, "other,ingest.example"));
    assert_true(host_ok("ingest.example:443", "0.0.0.0", 8080, "ingest.example:443"));
    assert_false(host_ok("ingest.example:444", "0.0.0.0", 8080, "ingest.example:443"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_literal_with_optional_trailing_slash),
        cmocka_unit_test(test_match_captures_one_raw_segment),
        cmocka_unit_test(test_match_refuses_empty_or_extra_segments),
        cmocka_unit_test(test_percent_decode),
        cmocka_unit_test(test_percent_decode_refuses_broken_escapes),
        cmocka_unit_test(test_host_allowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
