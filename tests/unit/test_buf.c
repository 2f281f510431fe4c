/* test_buf.c - shared/bp_buf.c: the text buffer behind the API's SQL statements and hand-built JSON
 * bodies (appending across growth, printf of any length, JSON string escapes, taking the text). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <jansson.h>

#include "bp_buf.h"

static void test_appends_keep_a_nul_terminated_text(void **state)
{
    (void)state;
    bp_buf_t b = {0};
    assert_null(b.p);
    bp_buf_puts(&b, "SELECT ");
    bp_buf_add(&b, "1, 2xxx", 4);
    bp_buf_printf(&b, " FROM t WHERE id = $%d", 3);
    assert_false(b.oom);
    assert_string_equal(b.p, "SELECT 1, 2 FROM t WHERE id = $3");
    assert_int_equal(b.len, strlen(b.p));
    bp_buf_free(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    bp_buf_free(NULL);
}

static void test_grows_past_many_doublings(void **state)
{
    (void)state;
    bp_buf_t b = {0};
    char piece[17];
    for (int i = 0; i < 100000; i++) {
        snprintf(piece, sizeof(piece), "%08d,", i);
        bp_buf_puts(&b, piece);
    }
    assert_false(b.oom);
    assert_int_equal(b.len, 100000 * 9);
    assert_true(b.cap > b.len);
    assert_memory_equal(b.p, "00000000,00000001,", 18);
    assert_string_equal(b.p + b.len - 9, "00099999,");
    bp_buf_free(&b);
}

static void test_printf_is_not_cut_at_any_length(void **state)
{
    (void)state;
    char *big = malloc(5001);
    assert_non_null(big);
    memset(big, 'x', 5000);
    big[5000] = '\0';
    bp_buf_t b = {0};
    bp_buf_puts(&b, "<");
    bp_buf_printf(&b, "%s|%lld", big, -9223372036854775807LL - 1);
    bp_buf_puts(&b, ">");
    assert_false(b.oom);
    assert_int_equal(b.len, 1 + 5000 + 1 + 20 + 1);
    assert_memory_equal(b.p + 1, big, 5000);
    assert_string_equal(b.p + 5001, "|-9223372036854775808>");
    bp_buf_free(&b);
    free(big);
}

static void test_reserve_keeps_the_text_in_place(void **state)
{
    (void)state;
    bp_buf_t b = {0};
    bp_buf_puts(&b, "start");
    assert_int_equal(bp_buf_reserve(&b, 10000), 0);
    assert_true(b.cap >= b.len + 10000 + 1);
    const char *before = b.p;
    for (int i = 0; i < 1000; i++)
        bp_buf_add(&b, "0123456789", 10);
    assert_ptr_equal(b.p, before);
    assert_int_equal(b.len, 5 + 10000);
    assert_string_equal(b.p + b.len - 10, "0123456789");
    bp_buf_free(&b);
}

/* The literal as JSON text, and what jansson reads back from it. */
static void expect_json_string(const char *s, size_t n, const char *literal)
{
    bp_buf_t b = {0};
    bp_buf_json_string(&b, s, n);
    assert_false(b.oom);
    assert_string_equal(b.p, literal);
    json_error_t jerr;
    json_t *back = json_loadb(b.p, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    assert_non_null(back);
    assert_int_equal(json_string_length(back), n);
    assert_memory_equal(json_string_value(back), s, n);
    json_decref(back);
    bp_buf_free(&b);
}

static void test_json_string_escapes(void **state)
{
    (void)state;
    expect_json_string("", 0, "\"\"");
    expect_json_string("plain", 5, "\"plain\"");
    expect_json_string("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
    expect_json_string("l1\nl2\r\tx", 8, "\"l1\\nl2\\r\\tx\"");
    expect_json_string("\x01\x1f\b\f", 4, "\"\\u0001\\u001f\\u0008\\u000c\"");
    expect_json_string("a\0b", 3, "\"a\\u0000b\"");
    /* UTF-8 and DEL pass as they are; '/' needs no escape */
    expect_json_string("caf\xc3\xa9 \xf0\x9f\x98\x80 \x7f /", 14, "\"caf\xc3\xa9 \xf0\x9f\x98\x80 \x7f /\"");
}

static void test_take_hands_the_text_over(void **state)
{
    (void)state;
    bp_buf_t b = {0};
    assert_null(bp_buf_take(&b)); /* nothing appended: nothing to take */
    bp_buf_puts(&b, "[1,2]");
    char *text = bp_buf_take(&b);
    assert_string_equal(text, "[1,2]");
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    free(text);

    bp_buf_add(&b, "", 0); /* an empty text is a text */
    text = bp_buf_take(&b);
    assert_non_null(text);
    assert_string_equal(text, "");
    free(text);
}

static void test_out_of_memory_sticks(void **state)
{
    (void)state;
    bp_buf_t b = {0};
    bp_buf_puts(&b, "kept");
    b.oom = 1; /* as if a realloc had failed */
    bp_buf_puts(&b, "more");
    bp_buf_printf(&b, "%d", 42);
    bp_buf_json_string(&b, "x", 1);
    assert_int_equal(bp_buf_reserve(&b, 1), -1);
    assert_int_equal(b.len, 4);
    assert_null(bp_buf_take(&b)); /* frees the text: nothing leaks (valgrind) */
    assert_false(b.oom);
    assert_null(b.p);

    bp_buf_puts(&b, "x");
    assert_int_equal(bp_buf_reserve(&b, SIZE_MAX - 1), -1); /* a size that cannot be */
    assert_true(b.oom);
    bp_buf_free(&b);
    assert_false(b.oom);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_appends_keep_a_nul_terminated_text),
        cmocka_unit_test(test_grows_past_many_doublings),
        cmocka_unit_test(test_printf_is_not_cut_at_any_length),
        cmocka_unit_test(test_reserve_keeps_the_text_in_place),
        cmocka_unit_test(test_json_string_escapes),
        cmocka_unit_test(test_take_hands_the_text_over),
        cmocka_unit_test(test_out_of_memory_sticks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
