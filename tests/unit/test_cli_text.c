/* test_cli_text.c - the CLI's pure helpers: terminal-safe text, aligned tables, JSON indenting that
 * keeps every token, bytes in JSON output (cli/table.c), and argument parsing (cli/kafka_util.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kafka_util.h"
#include "table.h"

/* What fn printed into a memory stream, NUL-terminated; free() it. */
#define CAPTURE(out, call)                                                                                   \
    do {                                                                                                     \
        size_t cap_len_ = 0;                                                                                 \
        FILE *cap_f_ = open_memstream(&(out), &cap_len_);                                                    \
        assert_non_null(cap_f_);                                                                             \
        FILE *f = cap_f_;                                                                                    \
        call;                                                                                                \
        fclose(cap_f_);                                                                                      \
    } while (0)

static void escape_keeps_utf8_and_escapes_controls(void **state)
{
    (void)state;
    static const char in[] = "ok \xc3\xa9 \x1b[31m \xff tab\there \xc2\x9b end";
    char *s = cli_escape(in, sizeof(in) - 1, 0);
    assert_string_equal(s, "ok \xc3\xa9 \\x1b[31m \\xff tab\\x09here \\u009b end");
    free(s);
    s = cli_escape("a\nb\tc\r", 6, 1);
    assert_string_equal(s, "a\nb\tc\\x0d");
    free(s);
    /* a truncated sequence at the end, and a NUL inside */
    s = cli_escape("x\0y\xe2\x82", 5, 0);
    assert_string_equal(s, "x\\x00y\\xe2\\x82");
    free(s);
}

static void table_aligns_and_cuts_the_last_column(void **state)
{
    (void)state;
    static const char *const headers[3] = {"P", "NAME", "REASON"};
    cli_table_t *t = cli_table_new(3, headers);
    cli_table_align_right(t, 0);
    const char *r1[3] = {"0", "\xc3\xa9t\xc3\xa9", "short"};
    const char *r2[3] = {"10", NULL, "a reason that is much too long for the line"};
    assert_int_equal(cli_table_add(t, r1), 0);
    assert_int_equal(cli_table_add(t, r2), 0);
    assert_int_equal(cli_table_rows(t), 2);
    char *out = NULL;
    CAPTURE(out, cli_table_print(t, f, 0));
    assert_string_equal(out, " P  NAME  REASON\n"
                             " 0  \xc3\xa9t\xc3\xa9   short\n"
                             "10  -     a reason that is much too long for the line\n");
    free(out);
    CAPTURE(out, cli_table_print(t, f, 22));
    assert_string_equal(out, " P  NAME  REASON\n"
                             " 0  \xc3\xa9t\xc3\xa9   short\n"
                             "10  -     a reason ...\n"); /* 22 characters */
    free(out);
    cli_table_free(t);
    cli_table_free(NULL);
}

static void json_indenting_keeps_every_token(void **state)
{
    (void)state;
    static const char in[] = "{\"a\":[1e2, 0.1,{}, []],\"s\":\"x, {y}: \\\"z\\\"\", \"n\" : null}";
    char *out = NULL;
    CAPTURE(out, cli_print_json_pretty(f, in, sizeof(in) - 1));
    assert_string_equal(out, "{\n"
                             "  \"a\": [\n"
                             "    1e2,\n"
                             "    0.1,\n"
                             "    {},\n"
                             "    []\n"
                             "  ],\n"
                             "  \"s\": \"x, {y}: \\\"z\\\"\",\n"
                             "  \"n\": null\n"
                             "}\n");
    free(out);
}

static void bytes_in_json_are_strings_or_base64(void **state)
{
    (void)state;
    json_t *o = json_object();
    assert_int_equal(cli_json_set_bytes(o, "key", "b-1", 3), 0);
    assert_int_equal(cli_json_set_bytes(o, "bin", "\xff\x00\x01", 3), 0);
    assert_int_equal(cli_json_set_bytes(o, "none", NULL, 0), 0);
    assert_string_equal(json_string_value(json_object_get(o, "key")), "b-1");
    assert_true(json_is_null(json_object_get(o, "bin")));
    assert_string_equal(json_string_value(json_object_get(o, "bin_base64")), "/wAB");
    assert_true(json_is_null(json_object_get(o, "none")));
    json_decref(o);
}

static void letter_refs_and_numbers(void **state)
{
    (void)state;
    int32_t p = -1;
    int64_t off = -1;
    assert_int_equal(cli_parse_letter_ref("3:42", &p, &off), 0);
    assert_int_equal(p, 3);
    assert_int_equal(off, 42);
    assert_int_equal(cli_parse_letter_ref("0:9223372036854775807", &p, &off), 0);
    assert_true(off == INT64_MAX);
    static const char *const bad[] = {
        "",     "3",     ":1",   "1:",   "a:1",  "1:b",          "-1:2",
        "1:-2", "1:2:3", "+1:2", " 1:2", "1:2 ", "2147483648:0", "1:9223372036854775808"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(cli_parse_letter_ref(bad[i], &p, &off), -1);
    long long v = 0;
    assert_int_equal(cli_parse_ll("10", 1, 10, &v), 0);
    assert_int_equal(v, 10);
    assert_int_equal(cli_parse_ll("11", 1, 10, &v), -1);
    assert_int_equal(cli_parse_ll("0", 1, 10, &v), -1);
    assert_int_equal(cli_parse_ll("1x", 1, 10, &v), -1);
    assert_int_equal(cli_parse_ll(NULL, 1, 10, &v), -1);
}

static void options_with_and_without_equals(void **state)
{
    (void)state;
    char *argv[] = {"list", "--limit=5", "--limit", "7", "--limits", "--limit"};
    int argc = 6, i = 1;
    const char *v = NULL;
    assert_int_equal(cli_option(argc, argv, &i, "--limit", &v), 1);
    assert_string_equal(v, "5");
    i = 2;
    assert_int_equal(cli_option(argc, argv, &i, "--limit", &v), 1);
    assert_string_equal(v, "7");
    assert_int_equal(i, 3);
    i = 4;
    assert_int_equal(cli_option(argc, argv, &i, "--limit", &v), 0); /* another option */
    i = 5;
    assert_int_equal(cli_option(argc, argv, &i, "--limit", &v), -1); /* no value */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(escape_keeps_utf8_and_escapes_controls),
        cmocka_unit_test(table_aligns_and_cuts_the_last_column),
        cmocka_unit_test(json_indenting_keeps_every_token),
        cmocka_unit_test(bytes_in_json_are_strings_or_base64),
        cmocka_unit_test(letter_refs_and_numbers),
        cmocka_unit_test(options_with_and_without_equals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
