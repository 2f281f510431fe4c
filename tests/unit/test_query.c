/* test_query.c - the read path's pure logic (api/query.c): filter parsing into containment arrays with
 * the typed-value rule, page/page_size/count parsing, cursors, and the SQL the lists send. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "query.h"

/* Parse a filter from NUL-terminated strings (NULL = absent). */
static int filter(const char *data, const char *key, const char *value, bp_query_filter_t *f, bp_query_error_t *e)
{
    return bp_query_parse_filter(data, data ? strlen(data) : 0, key, key ? strlen(key) : 0, value,
                                 value ? strlen(value) : 0, f, e);
}

/* Compare two JSON texts by value (so that spacing does not matter, types do). */
static void assert_json_eq(const char *got, const char *want)
{
    json_error_t jerr;
    json_t *a = json_loads(got, JSON_DECODE_ANY, &jerr), *b = json_loads(want, JSON_DECODE_ANY, &jerr);
    if (a == NULL || b == NULL || !json_equal(a, b)) {
        print_error("JSON differs:\n  got  %s\n  want %s\n", got, want);
        fail();
    }
    json_decref(a);
    json_decref(b);
}

/* The filter's alternatives, in order (up to two; NULL ends the list). */
static void expect_alts4(const char *data, const char *key, const char *value, const char *const *want)
{
    bp_query_filter_t f;
    bp_query_error_t e = {0};
    if (filter(data, key, value, &f, &e) != 0) {
        print_error("refused: %s\n", e.message);
        fail();
    }
    size_t n = 0;
    while (n < BP_QUERY_MAX_ALTS && want[n] != NULL)
        n++;
    if (f.nalts != n) {
        print_error("%zu alternatives, want %zu; first: %s\n", f.nalts, n, f.nalts ? f.alts[0] : "-");
        fail();
    }
    for (size_t i = 0; i < n; i++)
        assert_json_eq(f.alts[i], want[i]);
    bp_query_filter_clear(&f);
}

static void expect_alts(const char *data, const char *key, const char *value, const char *alt0, const char *alt1)
{
    const char *want[] = {alt0, alt0 != NULL ? alt1 : NULL, NULL};
    expect_alts4(data, key, value, want);
}

static void expect_refused(const char *data, const char *key, const char *value, const char *param,
                           const char *fragment)
{
    bp_query_filter_t f;
    bp_query_error_t e = {0};
    assert_int_equal(filter(data, key, value, &f, &e), -1);
    assert_string_equal(e.param, param);
    if (strstr(e.message, fragment) == NULL) {
        print_error("message \"%s\" lacks \"%s\"\n", e.message, fragment);
        fail();
    }
    assert_int_equal(f.nalts, 0);
}

static void test_no_filter(void **state)
{
    expect_alts(NULL, NULL, NULL, NULL, NULL);
    expect_alts("{}", NULL, NULL, NULL, NULL); /* an empty object filters nothing */
}

static void test_data_pairs_in_order_and_typed(void **state)
{
    expect_alts("{\"type\":\"shoe\",\"color\":\"red\"}", NULL, NULL,
                "[{\"key\":\"type\",\"value\":\"shoe\"},{\"key\":\"color\",\"value\":\"red\"}]", NULL);
    /* types are kept: false is the boolean, not the string */
    expect_alts("{\"demo\":false}", NULL, NULL, "[{\"key\":\"demo\",\"value\":false}]", NULL);
    expect_alts("{\"demo\":\"false\"}", NULL, NULL, "[{\"key\":\"demo\",\"value\":\"false\"}]", NULL);
    expect_alts("{\"n\":42,\"x\":null,\"p\":1.5}", NULL, NULL,
                "[{\"key\":\"n\",\"value\":42},{\"key\":\"x\",\"value\":null},{\"key\":\"p\",\"value\":1.5}]",
                NULL);
    /* keys and values with quotes, backslashes, control characters and non-ASCII survive */
    expect_alts("{\"a\\\"b\":\"c\\\\d\\n\\u00e9\"}", NULL, NULL,
                "[{\"key\":\"a\\\"b\",\"value\":\"c\\\\d\\n\\u00e9\"}]", NULL);
}

/* The filter's alternatives compared byte for byte (NULL ends the list): numbers must keep their text. */
static void expect_text(const char *data, const char *key, const char *value, const char *alt0, const char *alt1)
{
    bp_query_filter_t f;
    bp_query_error_t e = {0};
    if (filter(data, key, value, &f, &e) != 0) {
        print_error("refused: %s\n", e.message);
        fail();
    }
    assert_int_equal(f.nalts, alt0 == NULL ? 0 : alt1 == NULL ? 1 : 2);
    if (alt0 != NULL)
        assert_string_equal(f.alts[0], alt0);
    if (alt1 != NULL)
        assert_string_equal(f.alts[1], alt1);
    bp_query_filter_clear(&f);
}

/* jsonb compares numerics exactly, by decimal value: a number goes in as the client wrote it, with one
 * alternative (no second spelling of a double to try), beyond int64 and beyond 17 digits too. */
static void test_numbers_are_passed_as_written(void **state)
{
    expect_text("{\"p\":19.99,\"big\":12345678901234567890,\"e\":1e2,\"z\":-0.0,\"t\":1.50,"
                "\"long\":1234567890.123456789012345678901234567890}", NULL, NULL,
                "[{\"key\":\"p\",\"value\":19.99},{\"key\":\"big\",\"value\":12345678901234567890},"
                "{\"key\":\"e\",\"value\":1e2},{\"key\":\"z\",\"value\":-0.0},{\"key\":\"t\",\"value\":1.50},"
                "{\"key\":\"long\",\"value\":1234567890.123456789012345678901234567890}]", NULL);
    /* a near miss stays a near miss: nothing rounds it to 19.99 */
    expect_text("{\"p\":19.989999999999998}", NULL, NULL, "[{\"key\":\"p\",\"value\":19.989999999999998}]", NULL);
    /* spacing around is dropped; keys and strings keep their escapes (jsonb decodes them alike) */
    expect_text(" { \"p\" :\t0.1 , \"a\\u0062\" : \"x\\/y\" } ", NULL, NULL,
                "[{\"key\":\"p\",\"value\":0.1},{\"key\":\"a\\u0062\",\"value\":\"x\\/y\"}]", NULL);
    /* value=: the string, and the typed value as written */
    expect_text(NULL, "p", "19.99", "[{\"key\":\"p\",\"value\":\"19.99\"}]", "[{\"key\":\"p\",\"value\":19.99}]");
    expect_text(NULL, NULL, "1E+2", "[{\"value\":\"1E+2\"}]", "[{\"value\":1E+2}]");
    expect_text(NULL, NULL, "-0.0", "[{\"value\":\"-0.0\"}]", "[{\"value\":-0.0}]");
    expect_text(NULL, NULL, "12345678901234567890", "[{\"value\":\"12345678901234567890\"}]",
                "[{\"value\":12345678901234567890}]");
    expect_text("{\"a\":0.1}", NULL, "0.2", "[{\"key\":\"a\",\"value\":0.1},{\"value\":\"0.2\"}]",
                "[{\"key\":\"a\",\"value\":0.1},{\"value\":0.2}]");
    /* a string literal in quotes: that string only, as written */
    expect_text(NULL, NULL, "\"4\\u0032\"", "[{\"value\":\"4\\u0032\"}]", NULL);
    /* beyond the double range jansson cannot read it as a number: a plain string, as before */
    expect_text(NULL, NULL, "1e400", "[{\"value\":\"1e400\"}]", NULL);
}

static void test_numbers_postgresql_cannot_store_are_refused(void **state)
{
    expect_refused("{\"v\":1e-20000}", NULL, NULL, "data", "beyond what PostgreSQL");
    expect_refused(NULL, NULL, "1e-20000", "value", "beyond what PostgreSQL");
    expect_refused(NULL, "k", "0e-16384", "value", "16383 digits");
    /* with spaces around it is not JSON for value=: a plain string, which may be anything */
    expect_text(NULL, NULL, " 1e-20000", "[{\"value\":\" 1e-20000\"}]", NULL);
    /* jansson takes a raw NUL after a number for the end; the text goes to PostgreSQL as written */
    bp_query_filter_t f;
    bp_query_error_t e = {0};
    assert_int_equal(bp_query_parse_filter("{\"a\":1\0}", 8, NULL, 0, NULL, 0, &f, &e), -1);
    assert_string_equal(e.param, "data");
    assert_non_null(strstr(e.message, "NUL"));
}

static void test_key_value_forms(void **state)
{
    expect_alts(NULL, "color", NULL, "[{\"key\":\"color\"}]", NULL);
    /* a bare word is only a string */
    expect_alts(NULL, NULL, "red", "[{\"value\":\"red\"}]", NULL);
    /* a JSON number, boolean or null also matches the typed value */
    expect_alts(NULL, NULL, "42", "[{\"value\":\"42\"}]", "[{\"value\":42}]");
    expect_alts(NULL, NULL, "false", "[{\"value\":\"false\"}]", "[{\"value\":false}]");
    expect_alts(NULL, NULL, "null", "[{\"value\":\"null\"}]", "[{\"value\":null}]");
    expect_alts(NULL, NULL, "-2.5e3", "[{\"value\":\"-2.5e3\"}]", "[{\"value\":-2500.0}]");
    /* a JSON string literal matches only that string */
    expect_alts(NULL, NULL, "\"42\"", "[{\"value\":\"42\"}]", NULL);
    /* whitespace around a number: not JSON for this rule, a plain string */
    expect_alts(NULL, NULL, " 42", "[{\"value\":\" 42\"}]", NULL);
    /* arrays and objects are never stored values: taken as strings */
    expect_alts(NULL, NULL, "[1]", "[{\"value\":\"[1]\"}]", NULL);
    expect_alts(NULL, NULL, "", "[{\"value\":\"\"}]", NULL);
    /* key and value make one pair */
    expect_alts(NULL, "size", "7", "[{\"key\":\"size\",\"value\":\"7\"}]", "[{\"key\":\"size\",\"value\":7}]");
    expect_alts(NULL, "size", "\"7\"", "[{\"key\":\"size\",\"value\":\"7\"}]", NULL);
}

static void test_data_combines_with_key_value(void **state)
{
    expect_alts("{\"type\":\"shoe\"}", "size", "7",
                "[{\"key\":\"type\",\"value\":\"shoe\"},{\"key\":\"size\",\"value\":\"7\"}]",
                "[{\"key\":\"type\",\"value\":\"shoe\"},{\"key\":\"size\",\"value\":7}]");
    expect_alts("{\"type\":\"shoe\"}", "color", NULL, "[{\"key\":\"type\",\"value\":\"shoe\"},{\"key\":\"color\"}]",
                NULL);
}

static void test_bad_filters(void **state)
{
    expect_refused("{\"type\":", NULL, NULL, "data", "not valid JSON");
    expect_refused("type=shoe", NULL, NULL, "data", "not valid JSON");
    expect_refused("[{\"key\":\"a\",\"value\":1}]", NULL, NULL, "data", "must be a JSON object");
    expect_refused("42", NULL, NULL, "data", "must be a JSON object");
    expect_refused("{\"a\":{\"b\":1}}", NULL, NULL, "data", "an object");
    expect_refused("{\"a\":[1]}", NULL, NULL, "data", "an array");
    expect_refused("{\"a\":1,\"a\":2}", NULL, NULL, "data", "not valid JSON"); /* duplicate key */
    expect_refused("{\"\":1}", NULL, NULL, "data", "keys must not be empty");
    expect_refused("{\"a\":\"\\u0000\"}", NULL, NULL, "data", "not valid JSON");
    expect_refused(NULL, "", NULL, "key", "must not be empty");
    expect_refused(NULL, "\xff\xfe", NULL, "key", "UTF-8");
    expect_refused(NULL, NULL, "\xc3", "value", "UTF-8");

    /* too many pairs */
    char big[4096] = "{";
    for (int i = 0; i <= BP_QUERY_FILTER_MAX_PAIRS; i++)
        snprintf(big + strlen(big), sizeof(big) - strlen(big), "%s\"k%d\":%d", i ? "," : "", i, i);
    strcat(big, "}");
    expect_refused(big, NULL, NULL, "data", "more than");

    /* too large */
    size_t n = BP_QUERY_FILTER_MAX_BYTES + 16;
    char *huge = malloc(n + 1);
    memset(huge, 'x', n);
    huge[n] = '\0';
    memcpy(huge, "{\"a\":\"", 6);
    huge[n - 2] = '"';
    huge[n - 1] = '}';
    expect_refused(huge, NULL, NULL, "data", "longer than");
    expect_refused(NULL, NULL, huge, "value", "longer than");
    free(huge);

    /* NUL inside a value from the query string (percent-decoded %00) */
    bp_query_filter_t f;
    bp_query_error_t e;
    assert_int_equal(bp_query_parse_filter(NULL, 0, NULL, 0, "a\0b", 3, &f, &e), -1);
    assert_string_equal(e.param, "value");
}

static void test_page_and_page_size(void **state)
{
    long long v;
    bp_query_error_t e;
    assert_int_equal(bp_query_parse_page("1", 1, &v, &e), 0);
    assert_int_equal(v, 1);
    assert_int_equal(bp_query_parse_page("1000000000", 10, &v, &e), 0);
    const char *bad_pages[] = {"0", "-1", "", "abc", "1.5", " 1", "1e3", "+1", "1000000000000", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad_pages) / sizeof(bad_pages[0]); i++) {
        e.param = NULL;
        assert_int_equal(bp_query_parse_page(bad_pages[i], strlen(bad_pages[i]), &v, &e), -1);
        assert_string_equal(e.param, "page");
        assert_non_null(strstr(e.message, "page"));
    }
    assert_int_equal(bp_query_parse_page_size("10", 2, 1000, &v, &e), 0);
    assert_int_equal(v, 10);
    assert_int_equal(bp_query_parse_page_size("1000", 4, 1000, &v, &e), 0);
    const char *bad_sizes[] = {"0", "1001", "-5", "x", "", "1000000000000"};
    for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
        assert_int_equal(bp_query_parse_page_size(bad_sizes[i], strlen(bad_sizes[i]), 1000, &v, &e), -1);
        assert_string_equal(e.param, "page_size");
        assert_non_null(strstr(e.message, "1000"));
    }
}

static void test_count_modes(void **state)
{
    bp_count_mode_t m;
    bp_query_error_t e;
    assert_int_equal(bp_query_parse_count("exact", 5, &m, &e), 0);
    assert_int_equal(m, BP_COUNT_EXACT);
    assert_int_equal(bp_query_parse_count("estimate", 8, &m, &e), 0);
    assert_int_equal(m, BP_COUNT_ESTIMATE);
    assert_int_equal(bp_query_parse_count("none", 4, &m, &e), 0);
    assert_int_equal(m, BP_COUNT_NONE);
    assert_int_equal(bp_query_parse_count("auto", 4, &m, &e), 0);
    assert_int_equal(m, BP_COUNT_AUTO);
    assert_int_equal(bp_query_parse_count("EXACT", 5, &m, &e), -1);
    assert_string_equal(e.param, "count");
    assert_int_equal(bp_query_parse_count("", 0, &m, &e), -1);
}

static void test_cursor_round_trip(void **state)
{
    bp_cursor_t c = {.kind = BP_CURSOR_OBJECTS, .backward = 0, .key = 123456789012LL};
    char *s = bp_cursor_encode(&c);
    assert_non_null(s);
    /* URL-safe as it is: no padding, no '+', '/' */
    assert_null(strpbrk(s, "+/=%&"));
    bp_cursor_t d;
    bp_query_error_t e;
    assert_int_equal(bp_cursor_decode(s, strlen(s), BP_CURSOR_OBJECTS, &d, &e), 0);
    assert_int_equal(d.key, 123456789012LL);
    assert_int_equal(d.backward, 0);
    assert_null(d.batch_id);
    /* an objects cursor is not a batches cursor */
    assert_int_equal(bp_cursor_decode(s, strlen(s), BP_CURSOR_BATCHES, &d, &e), -1);
    assert_string_equal(e.param, "cursor");
    free(s);

    bp_cursor_t b = {.kind = BP_CURSOR_BATCHES, .backward = 1, .key = 1714567890123456LL,
                     .batch_id = "batch \"é\"/1?&"};
    s = bp_cursor_encode(&b);
    assert_int_equal(bp_cursor_decode(s, strlen(s), BP_CURSOR_BATCHES, &d, &e), 0);
    assert_int_equal(d.backward, 1);
    assert_int_equal(d.key, 1714567890123456LL);
    assert_string_equal(d.batch_id, "batch \"é\"/1?&");
    bp_cursor_clear(&d);
    free(s);

    /* every length of the base64 tail works (padding-free) */
    for (long long id = 0; id < 2000; id += 7) {
        bp_cursor_t k = {.kind = BP_CURSOR_OBJECTS, .backward = (int)(id & 1), .key = id};
        s = bp_cursor_encode(&k);
        assert_int_equal(bp_cursor_decode(s, strlen(s), BP_CURSOR_OBJECTS, &d, &e), 0);
        assert_int_equal(d.key, id);
        assert_int_equal(d.backward, (int)(id & 1));
        free(s);
    }
}

static void test_deep_pages_are_refused_naming_the_cursor(void **state)
{
    bp_query_error_t e;
    assert_int_equal(bp_query_check_offset(1, 1000, &e), 0);
    assert_int_equal(bp_query_check_offset(BP_QUERY_OFFSET_MAX + 1, 1, &e), 0); /* skips exactly the bound */
    assert_int_equal(bp_query_check_offset(BP_QUERY_OFFSET_MAX / 10 + 1, 10, &e), 0);
    assert_int_equal(bp_query_check_offset(BP_QUERY_OFFSET_MAX + 2, 1, &e), -1);
    assert_string_equal(e.param, "page");
    assert_non_null(strstr(e.message, "cursor"));
    assert_int_equal(bp_query_check_offset(BP_QUERY_PAGE_MAX, 1000, &e), -1); /* no overflow at the extremes */
    assert_int_equal(bp_query_check_offset(BP_QUERY_PAGE_MAX, 1, &e), -1);
}

static void test_batches_cursor_time_is_range_checked(void **state)
{
    bp_query_error_t e;
    bp_cursor_t d;
    static const long long ok[] = {0, 1714567890123456LL, BP_CURSOR_MIN_US, BP_CURSOR_MAX_US, -1};
    static const long long bad[] = {BP_CURSOR_MIN_US - 1, BP_CURSOR_MAX_US + 1, INT64_MAX, INT64_MIN,
                                    1000000000000000000LL};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        bp_cursor_t b = {.kind = BP_CURSOR_BATCHES, .key = ok[i], .batch_id = "b"};
        char *s = bp_cursor_encode(&b);
        assert_int_equal(bp_cursor_decode(s, strlen(s), BP_CURSOR_BATCHES, &d, &e), 0);
        assert_true(d.key == ok[i]);
        bp_cursor_clear(&d);
        free(s);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bp_cursor_t b = {.kind = BP_CURSOR_BATCHES, .key = bad[i], .batch_id = "b"};
        char *s = bp_cursor_encode(&b);
        assert_int_equal(bp_cursor_decode(s, strlen(s), BP_CURSOR_BATCHES, &d, &e), -1);
        assert_string_equal(e.param, "cursor");
        free(s);
    }
}

/* base64url of raw bytes, for building malformed cursors */
static char *b64(const char *raw, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = calloc(1, n * 2 + 8), *o = out;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)raw[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)(unsigned char)raw[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)raw[i + 2];
        *o++ = tab[v >> 18 & 63];
        *o++ = tab[v >> 12 & 63];
        if (i + 1 < n)
            *o++ = tab[v >> 6 & 63];
        if (i + 2 < n)
            *o++ = tab[v & 63];
    }
    return out;
}

static void expect_bad_cursor(const char *text, bp_cursor_kind_t kind)
{
    bp_cursor_t d;
    bp_query_error_t e = {0};
    if (bp_cursor_decode(text, strlen(text), kind, &d, &e) != -1) {
        print_error("cursor \"%s\" was accepted\n", text);
        fail();
    }
    assert_string_equal(e.param, "cursor");
    assert_null(d.batch_id);
}

static void expect_bad_raw_cursor(const char *raw, bp_cursor_kind_t kind)
{
    char *s = b64(raw, strlen(raw));
    expect_bad_cursor(s, kind);
    free(s);
}

static void test_malformed_cursors(void **state)
{
    expect_bad_cursor("", BP_CURSOR_OBJECTS);
    expect_bad_cursor("not a cursor!", BP_CURSOR_OBJECTS);
    expect_bad_cursor("AQ==", BP_CURSOR_OBJECTS);  /* padding is not used */
    expect_bad_cursor("A", BP_CURSOR_OBJECTS);     /* impossible length */
    expect_bad_cursor("eyJrIjoibyJ9", BP_CURSOR_OBJECTS); /* no version byte */
    expect_bad_raw_cursor("\x02{\"k\":\"o\",\"d\":\"n\",\"id\":1}", BP_CURSOR_OBJECTS); /* other version */
    expect_bad_raw_cursor("\x01{\"k\":\"o\",\"d\":\"x\",\"id\":1}", BP_CURSOR_OBJECTS);
    expect_bad_raw_cursor("\x01{\"k\":\"o\",\"d\":\"n\"}", BP_CURSOR_OBJECTS);
    expect_bad_raw_cursor("\x01{\"k\":\"o\",\"d\":\"n\",\"id\":\"1\"}", BP_CURSOR_OBJECTS);
    expect_bad_raw_cursor("\x01{\"k\":\"o\",\"d\":\"n\",\"id\":-1}", BP_CURSOR_OBJECTS);
    expect_bad_raw_cursor("\x01{\"k\":\"o\",\"d\":\"n\",\"id\":1.5}", BP_CURSOR_OBJECTS);
    expect_bad_raw_cursor("\x01{\"k\":\"b\",\"d\":\"n\",\"t\":1}", BP_CURSOR_BATCHES); /* no batch_id */
    expect_bad_raw_cursor("\x01{\"k\":\"b\",\"d\":\"n\",\"t\":1,\"b\":\"\"}", BP_CURSOR_BATCHES);
    expect_bad_raw_cursor("\x01[1,2]", BP_CURSOR_OBJECTS);
    expect_bad_raw_cursor("\x01{\"k\":\"o\",\"d\":\"n\",\"id\":1", BP_CURSOR_OBJECTS); /* cut */
    /* a valid cursor with one character changed */
    bp_cursor_t c = {.kind = BP_CURSOR_OBJECTS, .key = 42};
    char *s = bp_cursor_encode(&c);
    s[3] = s[3] == '!' ? 'A' : '!';
    expect_bad_cursor(s, BP_CURSOR_OBJECTS);
    free(s);
    /* too long */
    size_t n = BP_CURSOR_MAX_BYTES + 4;
    char *huge = malloc(n + 1);
    memset(huge, 'A', n);
    huge[n] = '\0';
    expect_bad_cursor(huge, BP_CURSOR_OBJECTS);
    free(huge);
}

static void test_objects_sql(void **state)
{
    bp_query_list_t q = {.page_size = 10};
    bp_query_error_t e;
    assert_int_equal(filter("{\"type\":\"shoe\"}", NULL, "7", &q.filter, &e), 0);
    q.batch_id = strdup("b1");
    bp_sql_t s;
    assert_int_equal(bp_query_sql_objects(&q, 10000, &s), 0);
    /* filter params, batch_id; the count's alternatives, cap, mode, exact max; limit page_size + 1 */
    assert_int_equal(s.nparams, 8);
    assert_string_equal(s.params[2], "b1");
    assert_string_equal(s.params[3], "[[{\"key\":\"type\",\"value\":\"shoe\"},{\"value\":\"7\"}],"
                                     "[{\"key\":\"type\",\"value\":\"shoe\"},{\"value\":7}]]");
    assert_string_equal(s.params[4], "10000");
    assert_string_equal(s.params[5], "auto");
    assert_string_equal(s.params[6], "10000"); /* no exact max given: the cap */
    assert_string_equal(s.params[7], "11");
    assert_non_null(strstr(s.text, "FROM bp_count_objects($4::jsonb, $3::text, $5::bigint, $6::text, $7::bigint) c"));
    assert_non_null(strstr(s.text, "(o.data @> $1::jsonb OR o.data @> $2::jsonb)"));
    assert_non_null(strstr(s.text, "o.batch_id = $3"));
    assert_non_null(strstr(s.text, "ORDER BY o.id ASC LIMIT $8::bigint"));
    assert_null(strstr(s.text, "OFFSET"));
    bp_sql_clear(&s);

    /* page mode: OFFSET; count=exact with its own bound */
    q.page = 3;
    q.count = BP_COUNT_EXACT;
    q.count_exact_max = 500000;
    assert_int_equal(bp_query_sql_objects(&q, 10000, &s), 0);
    assert_int_equal(s.nparams, 9);
    assert_string_equal(s.params[5], "exact");
    assert_string_equal(s.params[6], "500000");
    assert_string_equal(s.params[8], "20");
    assert_non_null(strstr(s.text, "OFFSET $9::bigint"));
    bp_sql_clear(&s);

    /* a backward cursor: page ignored, id < key, descending */
    q.has_cursor = 1;
    q.cursor = (bp_cursor_t){.kind = BP_CURSOR_OBJECTS, .backward = 1, .key = 500};
    q.count = BP_COUNT_NONE;
    assert_int_equal(bp_query_sql_objects(&q, 10000, &s), 0);
    assert_non_null(strstr(s.text, "o.id < $4::bigint"));
    assert_non_null(strstr(s.text, "ORDER BY o.id DESC"));
    assert_non_null(strstr(s.text, "(SELECT NULL::bigint AS n, false AS exact) c"));
    assert_null(strstr(s.text, "bp_count_objects"));
    assert_null(strstr(s.text, "OFFSET"));
    assert_string_equal(s.params[3], "500");
    bp_sql_clear(&s);
    bp_query_list_clear(&q);

    /* no filter at all: the counter of all objects, read in the statement; no filter on the page */
    bp_query_list_t all = {.page_size = 5};
    assert_int_equal(bp_query_sql_objects(&all, 100, &s), 0);
    assert_null(strstr(s.text, "o.data @>"));
    assert_null(strstr(s.text, "bp_count_objects"));
    /* named by its hash, a parameter (md5 of "t--", migration 007's bp_count_hash('t', NULL, NULL)) */
    assert_non_null(strstr(s.text, "FROM count_terms x WHERE x.h = $1::uuid) c"));
    assert_string_equal(s.params[0], "b26e3a3c-b744-be17-5da4-44fa61929b93");
    assert_int_equal(s.nparams, 2);
    assert_true(s.plan_free); /* one plan for every value: prepared */
    bp_sql_clear(&s);

    /* batch_id alone: the batch's counter (md5 of "b2:b2-") */
    all.batch_id = strdup("b2");
    assert_int_equal(bp_query_sql_objects(&all, 100, &s), 0);
    assert_non_null(strstr(s.text, "x.h = $2::uuid) c"));
    assert_string_equal(s.params[1], "3cfd82d2-f03f-e396-2e10-b00a5f1eb777");
    bp_sql_clear(&s);
    bp_query_list_clear(&all);

    /* one pair, one key, or a string value: its counter, by the hash of the term (kind, key, canonical
     * value): md5 of "p4:type\"shoe\"", "k4:type-", "v-\"shoe\"", "p5:gr\u00f6\u00dfe\"\u00e9t\u00e9\"" (length() counts
     * characters), "p5:price100" (1e2 as numeric prints it) */
    const char *single[][3] = {{"{\"type\":\"shoe\"}", NULL, NULL},
                               {NULL, "type", NULL},
                               {NULL, NULL, "shoe"},
                               {NULL, "type", "\"shoe\""},
                               {"{\"gr\u00f6\u00dfe\":\"\\u00e9t\u00e9\"}", NULL, NULL},
                               {"{\"price\": 1e2}", NULL, NULL}};
    const char *hash[] = {"bfde0e86-64a5-a10e-dbd0-0897ec939c57", "53334ad8-c2f1-a574-071a-32da2501a0b5",
                          "078af9d3-6e19-afdb-0c53-638753630352", "bfde0e86-64a5-a10e-dbd0-0897ec939c57",
                          "7efaf45e-690d-a5bf-4c7d-c9bd3482c5f2", "4660e094-d4bf-9f84-db5f-1bd079f0f082"};
    const char kind[] = {'p', 'k', 'v', 'p', 'p', 'p'};
    /* the sparse-key markers of migration 012: md5 of "s4:type-" (the pair's key), "S--" (any key) */
    const char *marker[] = {"9f74533a-be58-a39d-dfe5-423f6349da70", NULL,
                            "0a7d1d4d-ea70-a99a-0399-af99ca0469aa", "9f74533a-be58-a39d-dfe5-423f6349da70",
                            "6eae2cba-a633-1abf-355f-28dd18c589e7", "47048192-4c75-7b4c-ccde-a6bffbbc1601"};
    for (int i = 0; i < 6; i++) {
        bp_query_list_t one = {.page_size = 10};
        assert_int_equal(filter(single[i][0], single[i][1], single[i][2], &one.filter, &e), 0);
        assert_int_equal(bp_query_sql_objects(&one, 100, &s), 0);
        assert_null(strstr(s.text, "bp_count_objects"));
        assert_null(strstr(s.text, "count_keys")); /* one index scan reads the counters and the marker */
        assert_string_equal(s.params[1], hash[i]);
        assert_string_equal(s.params[2], "b26e3a3c-b744-be17-5da4-44fa61929b93"); /* all objects: "t--" */
        assert_true(s.plan_free); /* one plan for every value: the count picks the branch */
        /* a sparse key's pairs and values: the matches the counters leave out, only if its marker is
         * there; a key's counter is kept whatever the key */
        if (kind[i] == 'k') {
            assert_non_null(strstr(s.text, "FROM count_terms x WHERE x.h IN ($2::uuid, $3::uuid)) c"));
            assert_null(strstr(s.text, "bp_count_sparse_extra"));
        } else {
            assert_non_null(strstr(s.text, "x.h IN ($2::uuid, $3::uuid, $4::uuid)) c"));
            assert_non_null(strstr(s.text, "CASE WHEN bool_or(x.h = $4::uuid) "
                                           "THEN bp_count_sparse_extra($5::jsonb)"));
            assert_string_equal(s.params[3], marker[i]);
        }
        /* the page: in id order while the count is high enough for it, else from the GIN index;
         * LIMIT page_size + 1 = 11, the rows it reaches 11 */
        int lim = kind[i] == 'k' ? 4 : 6;
        char gate[200], branch[600];
        snprintf(gate, sizeof(gate), "c.n > 0 AND c.n::float8 * c.n >= $%d::float8 * c.total", lim + 1);
        snprintf(branch, sizeof(branch),
                 "(SELECT o.id, o.object_id, o.batch_id, o.data, o.created_at, o.updated_at FROM objects o "
                 "WHERE %s AND jsonb_contains(o.data, $1::jsonb) ORDER BY o.id ASC LIMIT $%d::bigint)", gate, lim);
        assert_non_null(strstr(s.text, branch));
        snprintf(branch, sizeof(branch),
                 " UNION ALL (SELECT o.id, o.object_id, o.batch_id, o.data, o.created_at, o.updated_at "
                 "FROM objects o WHERE NOT (%s) AND o.data @> $1::jsonb ORDER BY o.id + 0 ASC "
                 "LIMIT $%d::bigint)) p ON true", gate, lim);
        assert_non_null(strstr(s.text, branch));
        assert_string_equal(s.params[lim - 1], "11");
        assert_string_equal(s.params[lim], "11");
        bp_sql_clear(&s);
        bp_query_list_clear(&one);
    }

    /* count=none: the same two branches, chosen by the term's counter alone (no sparse-key share:
     * counting a sparse key's matches is what count=none is for avoiding) */
    bp_query_list_t none = {.page_size = 10, .count = BP_COUNT_NONE};
    assert_int_equal(filter("{\"type\":\"shoe\"}", NULL, NULL, &none.filter, &e), 0);
    assert_int_equal(bp_query_sql_objects(&none, 100, &s), 0);
    assert_true(s.plan_free);
    assert_null(strstr(s.text, "bp_count_sparse_extra"));
    assert_non_null(strstr(s.text, "FROM count_terms x WHERE x.h IN ($2::uuid, $3::uuid)) c"));
    assert_non_null(strstr(s.text, "jsonb_contains(o.data, $1::jsonb)"));
    bp_sql_clear(&s);
    bp_query_list_clear(&none);
}

static void test_batches_and_estimate_sql(void **state)
{
    bp_query_list_t q = {.page_size = 10};
    bp_query_error_t e;
    assert_int_equal(filter("{\"type\":\"shoe\"}", NULL, NULL, &q.filter, &e), 0);
    q.has_cursor = 1;
    q.cursor = (bp_cursor_t){.kind = BP_CURSOR_BATCHES, .key = -1500000, .batch_id = strdup("b9")};
    bp_sql_t s;
    assert_int_equal(bp_query_sql_batches(&q, 10000, &s), 0);
    assert_non_null(strstr(s.text, "EXISTS (SELECT 1 FROM objects o WHERE o.batch_id = b.batch_id AND o.data @> "
                                   "$1::jsonb)"));
    assert_non_null(strstr(s.text, "(b.created_at, b.batch_id) >"));
    assert_non_null(strstr(s.text, "FROM bp_count_batches($2::jsonb, $3::bigint, $4::text, $5::bigint) c"));
    /* -1.5 s before the epoch: seconds floor to -2, the rest is +500000 us */
    assert_string_equal(s.params[5], "-2");
    assert_string_equal(s.params[6], "500000");
    assert_string_equal(s.params[7], "b9");
    bp_sql_clear(&s);

    assert_int_equal(bp_query_sql_estimate(&q, 0, &s), 0);
    assert_ptr_equal(strstr(s.text, "EXPLAIN (FORMAT JSON) SELECT 1 FROM batches b WHERE EXISTS"), s.text);
    assert_int_equal(s.nparams, 1);
    bp_sql_clear(&s);
    bp_query_list_clear(&q);

    assert_int_equal(bp_query_plan_rows("[{\"Plan\": {\"Node Type\": \"Seq Scan\", \"Plan Rows\": 50505}}]"), 50505);
    assert_int_equal(bp_query_plan_rows("[]"), -1);
    assert_int_equal(bp_query_plan_rows("nonsense"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_filter),
        cmocka_unit_test(test_data_pairs_in_order_and_typed),
        cmocka_unit_test(test_numbers_are_passed_as_written),
        cmocka_unit_test(test_numbers_postgresql_cannot_store_are_refused),
        cmocka_unit_test(test_key_value_forms),
        cmocka_unit_test(test_data_combines_with_key_value),
        cmocka_unit_test(test_bad_filters),
        cmocka_unit_test(test_page_and_page_size),
        cmocka_unit_test(test_count_modes),
        cmocka_unit_test(test_cursor_round_trip),
        cmocka_unit_test(test_deep_pages_are_refused_naming_the_cursor),
        cmocka_unit_test(test_batches_cursor_time_is_range_checked),
        cmocka_unit_test(test_malformed_cursors),
        cmocka_unit_test(test_objects_sql),
        cmocka_unit_test(test_batches_and_estimate_sql),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
