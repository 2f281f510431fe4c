/* test_payload.c - unit tests of shared/bp_payload: parsing bodies, validating batches and single
 * objects, and the pointers and messages a client gets back for each mistake. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bp_payload.h"

static const bp_payload_limits_t LIMITS = {
    .max_objects = 100000, .max_pairs = 1000, .max_id_len = 255, .max_key_len = 255, .max_string_len = 65536};

/* ---------------------------------------------------------------------------------------------
 * Helpers
 */

static int setup(void **state)
{
    *state = calloc(1, sizeof(bp_violations_t));
    return *state == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    free(*state);
    return 0;
}

/* Test documents are written with ' for " so they stay readable; q() swaps them (caller frees). */
static char *q(const char *text)
{
    char *s = strdup(text);
    assert_non_null(s);
    for (char *p = s; *p; p++)
        if (*p == '\'')
            *p = '"';
    return s;
}

/* q() into a static buffer, for comparing with. */
static const char *q_static(const char *text)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s", text);
    for (char *p = buf; *p; p++)
        if (*p == '\'')
            *p = '"';
    return buf;
}

static void dump(const bp_violations_t *v)
{
    print_message("%zu violation(s) stored, %zu found:\n", v->count, v->total);
    for (size_t i = 0; i < v->count; i++)
        print_message("  [%zu] '%s': %s\n", i, v->items[i].pointer, v->items[i].message);
}

/* Whether v holds exactly this pointer with exactly this message. */
static int has(const bp_violations_t *v, const char *pointer, const char *message)
{
    for (size_t i = 0; i < v->count; i++)
        if (strcmp(v->items[i].pointer, pointer) == 0 && strcmp(v->items[i].message, message) == 0)
            return 1;
    dump(v);
    print_message("missing: '%s': %s\n", pointer, message);
    return 0;
}

#define assert_violation(v, pointer, message) assert_true(has((v), (pointer), (message)))

static void assert_count(const bp_violations_t *v, size_t n)
{
    if (v->count != n || v->total != n)
        dump(v);
    assert_int_equal(v->count, n);
    assert_int_equal(v->total, n);
}

/* Parse text (with ' for "), which must succeed. Returns a new reference. */
static json_t *parse_ok(const char *text, bp_violations_t *v)
{
    char *s = q(text);
    json_t *doc = bp_payload_parse(s, strlen(s), v);
    if (doc == NULL)
        dump(v);
    assert_non_null(doc);
    assert_int_equal(v->count, 0);
    free(s);
    return doc;
}

/* Parse (must succeed) and validate as a batch with lim; returns the validator's result. */
static int batch_rc(const char *text, const bp_payload_limits_t *lim, bp_violations_t *v)
{
    json_t *doc = parse_ok(text, v);
    int rc = bp_payload_validate_batch(doc, lim, v);
    json_decref(doc);
    return rc;
}

static int object_rc(const char *text, const bp_payload_limits_t *lim, bp_violations_t *v)
{
    json_t *doc = parse_ok(text, v);
    int rc = bp_payload_validate_object(doc, lim, v);
    json_decref(doc);
    return rc;
}

/* Parse raw bytes (no quote swapping), which must fail with one violation at "" whose message is
 * returned. */
static const char *parse_error(const char *buf, size_t len, bp_violations_t *v)
{
    json_t *doc = bp_payload_parse(buf, len, v);
    if (doc != NULL)
        json_decref(doc);
    assert_null(doc);
    assert_count(v, 1);
    assert_string_equal(v->items[0].pointer, "");
    return v->items[0].message;
}

/* A batch whose only object has the given pair, e.g. pair_batch("{'key':'k','value':1}"). */
static char *pair_batch(const char *pair)
{
    char *s = NULL;
    assert_true(asprintf(&s, "{'batch_id':'b','objects':[{'object_id':'o','data':[%s]}]}", pair) > 0);
    return s;
}

/* A batch whose batch_id is the given JSON value (already quoted if a string). */
static char *batch_with_id(const char *id_json)
{
    char *s = NULL;
    assert_true(asprintf(&s, "{'batch_id':%s,'objects':[{'object_id':'o','data':[]}]}", id_json) > 0);
    return s;
}

static char *repeat(const char *unit, size_t times)
{
    size_t n = strlen(unit);
    char *s = malloc(n * times + 1);
    assert_non_null(s);
    for (size_t i = 0; i < times; i++)
        memcpy(s + i * n, unit, n);
    s[n * times] = '\0';
    return s;
}

/* Whether s is valid UTF-8: jansson's json_string() says so. */
static int is_utf8(const char *s)
{
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

/* The project's own fixtures, next to this file: tests/fixtures/NAME (or $BP_FIXTURES_DIR/NAME). */
static char *fixture_text(const char *name, size_t *len);

static json_t *fixture(const char *name, bp_violations_t *v)
{
    size_t len = 0;
    char *buf = fixture_text(name, &len);
    json_t *doc = bp_payload_parse(buf, len, v);
    free(buf);
    if (doc == NULL)
        dump(v);
    assert_non_null(doc);
    return doc;
}

/* A fixture's bytes (malloc'd, *len of them). */
static char *fixture_text(const char *name, size_t *len)
{
    char path[4096];
    const char *dir = getenv("BP_FIXTURES_DIR");

    if (dir != NULL) {
        snprintf(path, sizeof path, "%s/%s", dir, name);
    } else {
        const char *file = __FILE__;
        const char *slash = strrchr(file, '/');
        int dir_len = slash ? (int)(slash - file) : 1;
        snprintf(path, sizeof path, "%.*s/../fixtures/%s", dir_len, slash ? file : ".", name);
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open fixture %s (set BP_FIXTURES_DIR to tests/fixtures)", path);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

/* ---------------------------------------------------------------------------------------------
 * Parsing
 */

static void test_parse_empty_body(void **state)
{
    bp_violations_t *v = *state;
    assert_string_equal(parse_error(NULL, 0, v), "the body is empty; expected a JSON object");
    assert_string_equal(parse_error("   \n", 4, v),
                        "invalid JSON at line 2, column 0: '[' or '{' expected near end of file");
}

static void test_parse_syntax_error_names_line_and_column(void **state)
{
    bp_violations_t *v = *state;
    const char *body = "{\n  \"batch_id\": \"b\",\n  \"objects\": [}\n";

    assert_string_equal(parse_error(body, strlen(body), v),
                        "invalid JSON at line 3, column 15: unexpected token near '}'");
    body = "{\"batch_id\":\"b\"} x";
    assert_string_equal(parse_error(body, strlen(body), v),
                        "invalid JSON at line 1, column 18: end of file expected near 'x'");
    body = "\"just a string\"";
    assert_string_equal(parse_error(body, strlen(body), v),
                        "invalid JSON at line 1, column 15: '[' or '{' expected near '\"just a string\"'");
}

static void test_parse_refuses_100000_deep_nesting(void **state)
{
    bp_violations_t *v = *state;
    char *deep = repeat("[", 100000);

    assert_string_equal(parse_error(deep, 100000, v),
                        "invalid JSON at line 1, column 65: nesting deeper than 64 levels");
    free(deep);

    /* objects count too, and the position is where the 65th level opens */
    char *objs = repeat("{\"a\":", 100000);
    assert_string_equal(parse_error(objs, strlen(objs), v),
                        "invalid JSON at line 1, column 321: nesting deeper than 64 levels");
    free(objs);
}

static void test_parse_depth_64_is_allowed(void **state)
{
    bp_violations_t *v = *state;
    char *open = repeat("[", 64), *close = repeat("]", 64);
    char body[160];

    snprintf(body, sizeof body, "%s%s", open, close);
    json_t *doc = bp_payload_parse(body, strlen(body), v);
    assert_non_null(doc);
    json_decref(doc);

    snprintf(body, sizeof body, "[%s%s]", open, close);
    assert_string_equal(parse_error(body, strlen(body), v),
                        "invalid JSON at line 1, column 65: nesting deeper than 64 levels");
    free(open);
    free(close);
}

static void test_parse_brackets_inside_strings_do_not_nest(void **state)
{
    bp_violations_t *v = *state;
    char *brackets = repeat("[{", 500);
    char *body = NULL;

    assert_true(asprintf(&body,
                "{'batch_id':'b\\'%s','objects':[{'object_id':'o','data':[]}]}", brackets) > 0);
    json_t *doc = parse_ok(body, v);
    assert_int_equal(bp_payload_validate_batch(doc, &LIMITS, v), -1); /* 1002 bytes: too long */
    assert_violation(v, "/batch_id", "batch_id is longer than 255 bytes (it has 1002)");
    json_decref(doc);
    free(body);
    free(brackets);
}

static void test_parse_invalid_utf8(void **state)
{
    bp_violations_t *v = *state;
    const char *bad_byte = "{\"batch_id\":\"\xff\"}";
    const char *overlong = "{\"batch_id\":\"\xc0\xaf\"}";
    const char *truncated = "{\"batch_id\":\"ab\xe2\x82\"}";
    const char *surrogate = "{\"batch_id\":\"\\ud800\"}";
    const char *outside = "{\"batch_id\": \xff}";

    assert_string_equal(parse_error(bad_byte, strlen(bad_byte), v),
                        "invalid JSON at line 1, column 13: unable to decode byte 0xff near '\"'");
    assert_string_equal(parse_error(overlong, strlen(overlong), v),
                        "invalid JSON at line 1, column 13: unable to decode byte 0xc0 near '\"'");
    assert_string_equal(parse_error(truncated, strlen(truncated), v),
                        "invalid JSON at line 1, column 15: unable to decode byte 0xe2 near '\"ab'");
    assert_string_equal(parse_error(surrogate, strlen(surrogate), v),
                        "invalid JSON at line 1, column 20: invalid Unicode '\\uD800' near '\"\\ud800\"'");
    parse_error(outside, strlen(outside), v);
    assert_true(is_utf8(v->items[0].message)); /* the message can go back in a JSON reply */
    json_t *arr = bp_violations_to_json(v);
    assert_non_null(arr);
    json_decref(arr);
}

static void test_parse_refuses_nul(void **state)
{
    bp_violations_t *v = *state;
    const char *in_value = "{\"batch_id\":\"a\\u0000b\"}";
    const char *in_key = "{\"a\\u0000\":1}";
    const char raw[] = "{\"batch_id\":\"a\0b\"}";

    assert_string_equal(parse_error(in_value, strlen(in_value), v),
                        "invalid JSON at line 1, column 22: text must not contain \\u0000 (NUL)");
    assert_string_equal(parse_error(in_key, strlen(in_key), v),
                        "invalid JSON at line 1, column 10: text must not contain \\u0000 (NUL)");
    assert_string_equal(parse_error(raw, sizeof raw - 1, v),
                        "invalid JSON at line 1, column 14: control character 0x0 near '\"a'");
    /* jansson would take a raw NUL after a number (or the document) for the end: the body is published
     * as it is, and a NUL would cut the text the database reads */
    const char after_number[] = "{\"batch_id\":\"b\",\"objects\":[{\"object_id\":\"o\",\"data\":[{\"key\":\"k\",\"value\":1\0}]}]}";
    assert_string_equal(parse_error(after_number, sizeof after_number - 1, v),
                        "invalid JSON at line 1, column 73: a NUL byte");
    const char after_document[] = "[1]\0";
    assert_string_equal(parse_error(after_document, sizeof after_document - 1, v),
                        "invalid JSON at line 1, column 4: a NUL byte");
}

static void test_parse_refuses_duplicate_json_keys(void **state)
{
    bp_violations_t *v = *state;
    const char *top = "{\"batch_id\":\"a\",\"batch_id\":\"b\",\"objects\":[]}";
    const char *pair = "{\"batch_id\":\"a\",\"objects\":[{\"object_id\":\"o\",\"data\":[{\"key\":\"k\","
                       "\"key\":\"l\"}]}]}";

    assert_string_equal(parse_error(top, strlen(top), v),
                        "invalid JSON at line 1, column 26: duplicate object key near '\"batch_id\"'");
    assert_string_equal(parse_error(pair, strlen(pair), v),
                        "invalid JSON at line 1, column 68: duplicate object key near '\"key\"'");
}

static void test_parse_keeps_huge_integers_as_reals(void **state)
{
    bp_violations_t *v = *state;
    json_t *doc = parse_ok("{'batch_id':'b','objects':[{'object_id':'o','data':["
                           "{'key':'small','value':42},"
                           "{'key':'max','value':9223372036854775807},"
                           "{'key':'min','value':-9223372036854775808},"
                           "{'key':'max_plus_1','value':9223372036854775808},"
                           "{'key':'min_minus_1','value':-9223372036854775809},"
                           "{'key':'huge','value':123456789012345678901234567890},"
                           "{'key':'text','value':'12345678901234567890'},"
                           "{'key':'real','value':1.5e300}]}]}",
                           v);
    assert_int_equal(bp_payload_validate_batch(doc, &LIMITS, v), 0);
    json_t *data = json_object_get(json_array_get(json_object_get(doc, "objects"), 0), "data");
#define VALUE(i) json_object_get(json_array_get(data, (i)), "value")
    assert_true(json_is_integer(VALUE(0)));
    assert_int_equal(json_integer_value(VALUE(0)), 42);
    assert_true(json_is_integer(VALUE(1)));
    assert_true(json_integer_value(VALUE(1)) == INT64_MAX);
    assert_true(json_is_integer(VALUE(2)));
    assert_true(json_integer_value(VALUE(2)) == INT64_MIN);
    assert_true(json_is_real(VALUE(3)));
    assert_true(json_real_value(VALUE(3)) == 9223372036854775808.0);
    assert_true(json_is_real(VALUE(4)));
    assert_true(json_real_value(VALUE(4)) == -9223372036854775809.0);
    assert_true(json_is_real(VALUE(5)));
    assert_true(json_real_value(VALUE(5)) == 123456789012345678901234567890.0);
    assert_true(json_is_string(VALUE(6)));
    assert_string_equal(json_string_value(VALUE(6)), "12345678901234567890");
    assert_true(json_is_real(VALUE(7)));
#undef VALUE
    json_decref(doc);
}

static void test_parse_error_after_huge_integer_has_the_sent_position(void **state)
{
    bp_violations_t *v = *state;
    const char *body = "{\"a\": 12345678901234567890, \"b\": x}";

    assert_string_equal(parse_error(body, strlen(body), v),
                        "invalid JSON at line 1, column 34: invalid token near 'x'");
}

static void test_parse_refuses_numbers_beyond_double(void **state)
{
    bp_violations_t *v = *state;
    const char *real = "{\"a\": 1e400}";
    const char *integer = "{\"a\": 123456789012345678901234567890, \"b\": 1e400}";
    char *digits = repeat("9", 400);
    char *huge = NULL;

    assert_string_equal(parse_error(real, strlen(real), v),
                        "invalid JSON at line 1, column 11: real number overflow near '1e400'");
    assert_string_equal(parse_error(integer, strlen(integer), v),
                        "invalid JSON at line 1, column 48: real number overflow near '1e400'");
    /* a 400-digit integer is beyond the double range too */
    assert_true(asprintf(&huge, "[%s]", digits) > 0);
    assert_string_equal(parse_error(huge, strlen(huge), v),
                        "invalid JSON at line 1, column 401: real number overflow");
    free(huge);
    free(digits);
}

/* What jansson reads as 0 or a tiny double, PostgreSQL's numeric cannot always store: the API refuses
 * it (bp_payload_check_numbers) rather than have the worker dead-letter it after a 202; the parser
 * itself, which the worker uses, lets the database decide. */
static void test_numbers_postgresql_cannot_store(void **state)
{
    bp_violations_t *v = *state;
    const char *tiny = "{\"s\": \"1e-20000\",\n \"a\": [1, 1e-20000]}";

    json_t *doc = parse_ok(tiny, v);
    json_decref(doc);
    assert_int_equal(bp_payload_check_numbers(tiny, strlen(tiny), v), -1);
    assert_count(v, 1);
    assert_string_equal(v->items[0].pointer, "");
    assert_string_equal(v->items[0].message, "at line 2, column 11: a number PostgreSQL cannot store (more than "
                                             "16383 digits after the decimal point, or an exponent beyond "
                                             "1073741822)");
    const char *fine = "{\"s\": \"1e-20000\", \"a\": [19.99, -0.0, 1e2, 12345678901234567890, 1e-16383]}";
    assert_int_equal(bp_payload_check_numbers(fine, strlen(fine), v), 0);
    assert_count(v, 0);
    static const struct {
        const char *lexeme;
        int fits;
    } cases[] = {{"19.99", 1}, {"-0.0", 1}, {"1e2", 1}, {"1E+2", 1}, {"12345678901234567890", 1},
                 {"1e-16383", 1}, {"0.5e-16382", 1}, {"0e999999", 1}, {"0e1073741822", 1},
                 {"1e-16384", 0}, {"10e-16384", 0}, {"0.5e-16383", 0}, {"0e-16384", 0},
                 {"0e1073741823", 0}, {"1e99999999999999999999", 0}, {"1e-99999999999999999999", 0},
                 {"x", 1}, {"1.2.3", 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (bp_payload_number_fits(cases[i].lexeme, strlen(cases[i].lexeme)) != cases[i].fits)
            fail_msg("%s: fits should be %d", cases[i].lexeme, cases[i].fits);
    }
    /* 16383 digits after the point are fine, one more is not */
    char *frac = repeat("1", 16383);
    char *body = NULL;
    assert_true(asprintf(&body, "[0.%s]", frac) > 0);
    assert_int_equal(bp_payload_check_numbers(body, strlen(body), v), 0);
    free(body);
    assert_true(asprintf(&body, "[0.%s1]", frac) > 0);
    assert_int_equal(bp_payload_check_numbers(body, strlen(body), v), -1);
    free(body);
    free(frac);
}

/* ---------------------------------------------------------------------------------------------
 * Batches: the document and batch_id
 */

static void test_valid_batch(void **state)
{
    bp_violations_t *v = *state;
    json_t *doc = parse_ok("{'batch_id':'b1','objects':[{'object_id':'o1','data':["
                           "{'key':'type','value':'car'},{'key':'price','value':1.5},{'key':'n','value':3},"
                           "{'key':'ok','value':true},"
                           "{'key':'no','value':false},{'key':'none','value':null},{'key':'e','value':''}]},"
                           "{'object_id':'o2','data':[]}]}",
                           v);
    assert_int_equal(bp_payload_validate_batch(doc, &LIMITS, v), 0);
    assert_count(v, 0);
    assert_int_equal(bp_payload_object_count(doc), 2);
    json_decref(doc);
}

/* ---- delete messages of the topic ---- */

static int delete_rc(const char *text, bp_violations_t *v)
{
    json_t *doc = parse_ok(text, v);
    assert_true(bp_payload_is_delete(doc));
    int rc = bp_payload_validate_delete(doc, &LIMITS, v);
    json_decref(doc);
    return rc;
}

static void test_delete_messages(void **state)
{
    bp_violations_t *v = *state;
    assert_int_equal(delete_rc("{'op':'delete','batch_id':'b','object_id':'o'}", v), 0);
    assert_int_equal(delete_rc("{'op':'delete','batch_id':'b','cascade':true}", v), 0);
    assert_int_equal(delete_rc("{'op':'delete','batch_id':'b','cascade':false}", v), 0);
    assert_int_equal(delete_rc("{'op':'delete','batch_id':'b'}", v), 0);
    json_t *batch = parse_ok("{'batch_id':'b','objects':[]}", v);
    assert_false(bp_payload_is_delete(batch));
    json_decref(batch);

    assert_int_equal(delete_rc("{'op':'remove','batch_id':'b'}", v), -1);
    assert_violation(v, "/op", "op must be \"delete\" (the only operation besides a batch), not \"remove\"");
    assert_int_equal(delete_rc("{'op':1,'batch_id':'b'}", v), -1);
    assert_violation(v, "/op", "op must be \"delete\" (the only operation besides a batch), not a number");
    assert_int_equal(delete_rc("{'op':'delete','object_id':'o'}", v), -1);
    assert_violation(v, "", "required property \"batch_id\" is missing");
    assert_int_equal(delete_rc("{'op':'delete','batch_id':'b','object_id':'o','cascade':true}", v), -1);
    assert_count(v, 1);
    assert_int_equal(delete_rc("{'op':'delete','batch_id':'b','cascade':'yes'}", v), -1);
    assert_violation(v, "/cascade", "cascade must be true or false, not a string");
    assert_int_equal(delete_rc("{'op':'delete','batch_id':'','object_id':'o\\u0001'}", v), -1);
    assert_count(v, 2);
    assert_int_equal(delete_rc("{'op':'delete','batch_id':'b','objects':[]}", v), -1);
    assert_violation(v, "/objects",
                     "unknown property \"objects\"; allowed properties are \"op\", \"batch_id\", \"object_id\" and \"cascade\"");
}

static void test_document_must_be_an_object(void **state)
{
    bp_violations_t *v = *state;

    assert_int_equal(batch_rc("[{'batch_id':'b'}]", &LIMITS, v), -1);
    assert_count(v, 1);
    assert_violation(v, "", "the document must be a JSON object, not an array");
    assert_int_equal(object_rc("[]", &LIMITS, v), -1);
    assert_violation(v, "", "the document must be a JSON object, not an array");
}

static void test_batch_required_properties(void **state)
{
    bp_violations_t *v = *state;

    assert_int_equal(batch_rc("{}", &LIMITS, v), -1);
    assert_count(v, 2);
    assert_violation(v, "", "required property \"batch_id\" is missing");
    assert_violation(v, "", "required property \"objects\" is missing");
}

static void test_unknown_property_pointer_is_escaped(void **state)
{
    bp_violations_t *v = *state;

    assert_int_equal(batch_rc("{'batch_id':'b','objects':[{'object_id':'o','data':[]}],'a/b~c':1,'meta':{}}",
                              &LIMITS, v),
                     -1);
    assert_count(v, 2);
    assert_violation(v, "/a~1b~0c",
                     "unknown property \"a/b~c\"; allowed properties are \"batch_id\" and \"objects\"");
    assert_violation(v, "/meta", "unknown property \"meta\"; allowed properties are \"batch_id\" and "
                                 "\"objects\"");
}

static void test_unknown_property_with_odd_name(void **state)
{
    bp_violations_t *v = *state;

    /* quotes and control characters are shown escaped; the pointer keeps the name as it is */
    assert_int_equal(batch_rc("{'batch_id':'b','objects':[{'object_id':'o','data':[]}],'say \\'hi\\'\\n':1}",
                              &LIMITS, v),
                     -1);
    assert_violation(v, "/say \"hi\"\n",
                     "unknown property \"say \\\"hi\\\"\\x0a\"; allowed properties are \"batch_id\" and "
                     "\"objects\"");
}

static void test_unknown_property_with_long_name(void **state)
{
    bp_violations_t *v = *state;
    char *name = repeat("\xc3\xa9", 300); /* 300 x "é", 600 bytes */
    char *body = NULL;

    assert_true(asprintf(&body, "{'batch_id':'b','objects':[{'object_id':'o','data':[]}],'%s':1}", name) > 0);
    assert_int_equal(batch_rc(body, &LIMITS, v), -1);
    assert_count(v, 1);
    /* the pointer is cut at a character boundary to fit; the message quotes 64 bytes and "..." */
    const char *pointer = v->items[0].pointer;
    assert_true(strlen(pointer) == 255);
    assert_int_equal(pointer[0], '/');
    assert_memory_equal(pointer + 1, name, 254);
    assert_true(is_utf8(pointer));
    char expected[256];
    snprintf(expected, sizeof expected,
             "unknown property \"%.64s...\"; allowed properties are \"batch_id\" and \"objects\"", name);
    assert_string_equal(v->items[0].message, expected);
    json_t *arr = bp_violations_to_json(v);
    assert_non_null(arr);
    json_decref(arr);
    free(body);
    free(name);
}

static void test_batch_id_wrong_types(void **state)
{
    bp_violations_t *v = *state;
    static const struct {
        const char *json, *message;
    } cases[] = {
        {"17", "batch_id must be a string, not a number"},
        {"1.5", "batch_id must be a string, not a number"},
        {"null", "batch_id must be a string, not null"},
        {"true", "batch_id must be a string, not a boolean"},
        {"{}", "batch_id must be a string, not an object"},
        {"['b']", "batch_id must be a string, not an array"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *body = batch_with_id(cases[i].json);
        assert_int_equal(batch_rc(body, &LIMITS, v), -1);
        assert_count(v, 1);
        assert_violation(v, "/batch_id", cases[i].message);
        free(body);
    }
}

static void test_batch_id_empty(void **state)
{
    bp_violations_t *v = *state;
    char *body = batch_with_id("''");

    assert_int_equal(batch_rc(body, &LIMITS, v), -1);
    assert_count(v, 1);
    assert_violation(v, "/batch_id", "batch_id must not be empty");
    free(body);
}

static void test_batch_id_length_is_counted_in_bytes(void **state)
{
    bp_violations_t *v = *state;
    char *id255 = repeat("a", 255), *id256 = repeat("a", 256), *accents = repeat("\xc3\xa9", 128);
    char *quoted = NULL, *body = NULL;

    assert_true(asprintf(&quoted, "'%s'", id255) > 0);
    body = batch_with_id(quoted);
    assert_int_equal(batch_rc(body, &LIMITS, v), 0);
    free(body);
    free(quoted);

    assert_true(asprintf(&quoted, "'%s'", id256) > 0);
    body = batch_with_id(quoted);
    assert_int_equal(batch_rc(body, &LIMITS, v), -1);
    assert_count(v, 1);
    assert_violation(v, "/batch_id", "batch_id is longer than 255 bytes (it has 256)");
    free(body);
    free(quoted);

    /* 128 characters, 256 bytes */
    assert_true(asprintf(&quoted, "'%s'", accents) > 0);
    body = batch_with_id(quoted);
    assert_int_equal(batch_rc(body, &LIMITS, v), -1);
    assert_violation(v, "/batch_id", "batch_id is longer than 255 bytes (it has 256)");
    free(body);
    free(quoted);
    free(id255);
    free(id256);
    free(accents);
}

static void test_ids_refuse_control_characters(void **state)
{
    bp_violations_t *v = *state;
    static const struct {
        const char *json, *message;
    } cases[] = {
        {"'a\\nb'", "batch_id must not contain control characters (byte 0x0a at offset 1)"},
        {"'\\tb'", "batch_id must not contain control characters (byte 0x09 at offset 0)"},
        {"'ab\\u001f'", "batch_id must not contain control characters (byte 0x1f at offset 2)"},
        {"'ab\\u007f'", "batch_id must not contain control characters (byte 0x7f at offset 2)"},
        {"'a\\u0001\\u0002'", "batch_id must not contain control characters (byte 0x01 at offset 1)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *body = batch_with_id(cases[i].json);
        assert_int_equal(batch_rc(body, &LIMITS, v), -1);
        assert_count(v, 1); /* one report per id, at the first control character */
        assert_violation(v, "/batch_id", cases[i].message);
        free(body);
    }

    /* spaces, punctuation and non-ASCII are fine */
    char *body = batch_with_id("'batch 2024/06 ~ é 北京 \\u00a0'");
    assert_int_equal(batch_rc(body, &LIMITS, v), 0);
    free(body);

    assert_int_equal(batch_rc("{'batch_id':'b','objects':[{'object_id':'o\\r','data':[]}]}", &LIMITS, v), -1);
    assert_count(v, 1);
    assert_violation(v, "/objects/0/object_id", "object_id must not contain control characters (byte 0x0d "
                                                "at offset 1)");
}

/* ---------------------------------------------------------------------------------------------
 * Batches: objects
 */

static void test_objects_must_be_an_array(void **state)
{
    bp_violations_t *v = *state;

    assert_int_equal(batch_rc("{'batch_id':'b','objects':{'object_id':'o','data':[]}}", &LIMITS, v), -1);
    assert_count(v, 1);
    assert_violation(v, "/objects", "objects must be an array, not an object");
    assert_int_equal(batch_rc("{'batch_id':'b','objects':null}", &LIMITS, v), -1);
    assert_violation(v, "/objects", "objects must be an array, not null");
}

static void test_empty_batch_is_refused(void **state)
{
    bp_violations_t *v = *state;

    assert_int_equal(batch_rc("{'batch_id':'b','objects':[]}", &LIMITS, v), -1);
    assert_count(v, 1);
    assert_violation(v, "/objects", "objects must contain at least 1 object");
}

static void test_too_many_objects(void **state)
{
    bp_violations_t *v = *state;
    bp_payload_limits_t lim = LIMITS;
    lim.max_objects = 3;

    assert_int_equal(batch_rc("{'batch_id':'b','objects':[{'object_id':'1','data':[]},"
                              "{'object_id':'2','data':[]},{'object_id':'3','data':[]}]}",
                              &lim, v),
                     0);
    assert_int_equal(batch_rc("{'batch_id':'b','objects':[{'object_id':'1','data':[]},"
                              "{'object_id':'2','data':[]},{'object_id':'3','data':[]},"
                              "{'object_id':'4','data':[]}]}",
                              &lim, v),
                     -1);
    assert_count(v, 1);
    assert_violation(v, "/objects", "objects has more than 3 entries (it has 4)");
}

static void test_object_entries_must_be_objects(void **state)
{
    bp_violations_t *v = *state;

    assert_int_equal(batch_rc("{'batch_id':'b','objects':[{'object_id':'o','data':[]},'o2',null,[]]}",
                              &LIMITS, v),
                     -1);
    assert_count(v, 3);
    assert_violation(v, "/objects/1",
                     "each entry of objects must be an object with \"object_id\" and \"data\", not a string");
    assert_violation(v, "/objects/2", "each entry of objects must be an object with \"object_id\" and "
                                      "\"data\", not null");
    assert_violation(v, "/objects/3",
                     "each entry of objects must be an object with \"object_id\" and \"data\", not an array");
}

static void test_object_id_errors(void **state)
{
    bp_violations_t *v = *state;
    char *long_id = repeat("x", 300), *body = NULL;

    assert_true(asprintf(&body,
                         "{'batch_id':'b','objects':[{'data':[]},{'object_id':7,'data':[]},"
                         "{'object_id':'','data':[]},{'object_id':'%s','data':[]}]}",
                         long_id) > 0);
    assert_int_equal(batch_rc(body, &LIMITS, v), -1);
    assert_count(v, 4);
    assert_violation(v, "/objects/0", "required property \"object_id\" is missing");
    assert_violation(v, "/objects/1/object_id", "object_id must be a string, not a number");
    assert_violation(v, "/objects/2/object_id", "object_id must not be empty");
    assert_violation(v, "/objects/3/object_id", "object_id is longer than 255 bytes (it has 300)");
    free(body);
    free(long_id);
}

static void test_duplicate_object_ids(void **state)
{
    bp_violations_t *v = *state;

    assert_int_equal(batch_rc("{'batch_id':'b','objects':[{'object_id':'a','data':[]},"
                              "{'object_id':'b','data':[]},{'object_id':'a','data':[]},"
                              "{'object_id':'c','data':[]},"
                              "{'object_id':'b','data':[]},{'object_id':'a','data':[]}]}",
                              &LIMITS, v),
                     -1);
    assert_count(v, 3);
    assert_violation(v, "/objects/2/object_id", "object_id \"a\" already appears at /objects/0");
    assert_violation(v, "/objects/4/object_id", "object_id \"b\" already appears at /objects/1");
    assert_violation(v, "/objects/5/object_id", "object_id \"a\" already appears at /objects/0");
    /* ids differ by case or by a trailing space: not duplicates */
    assert_int_equal(batch_rc("{'batch_id':'b','objects':[{'object_id':'a','data':[]},"
                              "{'object_id':'A','data':[]},{'object_id':'a ','data':[]}]}",
                              &LIMITS, v),
                     0);
}

static void test_duplicate_object_id_message_quotes_safely(void **state)
{
    bp_violations_t *v = *state;
    char *long_id = repeat("\xe2\x82\xac", 80); /* 80 x euro sign: 240 bytes */
    char *body = NULL;

    assert_true(asprintf(&body,
                         "{'batch_id':'b','objects':[{'object_id':'say \\'hi\\'','data':[]},"
                         "{'object_id':'say \\'hi\\'','data':[]},{'object_id':'%s','data':[]},"
                         "{'object_id':'%s','data':[]}]}",
                         long_id, long_id) > 0);
    assert_int_equal(batch_rc(body, &LIMITS, v), -1);
    assert_count(v, 2);
    assert_violation(v, "/objects/1/object_id", "object_id \"say \\\"hi\\\"\" already appears at /objects/0");
    /* 21 whole euro signs fit in 64 bytes */
    char expected[256];
    snprintf(expected, sizeof expected, "object_id \"%.63s...\" already appears at /objects/2", long_id);
    assert_violation(v, "/objects/3/object_id", expected);
    free(body);
    free(long_id);
}

/* Built with jansson directly: 50,000 objects, so a quadratic check would show. */
static void test_duplicate_check_on_many_objects(void **state)
{
    bp_violations_t *v = *state;
    const size_t n = 50000;
    json_t *objects = json_array();
    json_t *doc = json_pack("{s:s, s:o}", "batch_id", "b", "objects", objects);
    char id[32];

    assert_non_null(doc);
    for (size_t i = 0; i < n; i++) {
        snprintf(id, sizeof id, "obj-%06zu", i);
        assert_int_equal(json_array_append_new(objects, json_pack("{s:s, s:[]}",
                         "object_id", id, "data")), 0);
    }
    assert_int_equal(bp_payload_validate_batch(doc, &LIMITS, v), 0);
    assert_count(v, 0);

    json_object_set_new(json_array_get(objects, n - 1), "object_id", json_string("obj-000000"));
    json_object_set_new(json_array_get(objects, 30000), "object_id", json_string("obj-012345"));
    assert_int_equal(bp_payload_validate_batch(doc, &LIMITS, v), -1);
    assert_count(v, 2);
    assert_violation(v, "/objects/30000/object_id", "object_id \"obj-012345\" already appears at "
                                                    "/objects/12345");
    assert_violation(v, "/objects/49999/object_id", "object_id \"obj-000000\" already appears at /objects/0");
    json_decref(doc);
}

/* ---------------------------------------------------------------------------------------------
 * Batches: data, keys and values
 */

static void test_data_must_be_an_array(void **state)
{
    bp_violations_t *v = *state;

    assert_int_equal(batch_rc("{'batch_id':'b','objects':[{'object_id':'o','data':{'key':'k','value':1}},"
                              "{'object_id':'p','data':null}]}",
                              &LIMITS, v),
                     -1);
    assert_count(v, 2);
    assert_violation(v, "/objects/0/data", "data must be an array, not an object");
    assert_violation(v, "/objects/1/data", "data must be an array, not null");
}

static void test_empty_data_is_allowed(void **state)
{
    bp_violations_t *v = *state;

    assert_int_equal(batch_rc("{'batch_id':'b','objects':[{'object_id':'o','data':[]}]}", &LIMITS, v), 0);
    assert_count(v, 0);
}

static void test_too_many_pairs(void **state)
{
    bp_violations_t *v = *state;
    bp_payload_limits_t lim = LIMITS;
    lim.max_pairs = 2;
    char *two = pair_batch("{'key':'a','value':1},{'key':'b','value':2}");
    char *three = pair_batch("{'key':'a','value':1},{'key':'b','value':2},{'key':'c','value':3}");

    assert_int_equal(batch_rc(two, &lim, v), 0);
    assert_int_equal(batch_rc(three, &lim, v), -1);
    assert_count(v, 1);
    assert_violation(v, "/objects/0/data", "data has more than 2 pairs (it has 3)");
    free(two);
    free(three);
}

static void test_pairs_must_be_objects(void **state)
{
    bp_violations_t *v = *state;
    char *body = pair_batch("{'key':'a','value':1},1,'k',[]");

    assert_int_equal(batch_rc(body, &LIMITS, v), -1);
    assert_count(v, 3);
    assert_violation(v, "/objects/0/data/1",
                     "each entry of data must be an object with \"key\" and \"value\", not a number");
    assert_violation(v, "/objects/0/data/2",
                     "each entry of data must be an object with \"key\" and \"value\", not a string");
    assert_violation(v, "/objects/0/data/3",
                     "each entry of data must be an object with \"key\" and \"value\", not an array");
    free(body);
}

static void test_pair_required_properties(void **state)
{
    bp_violations_t *v = *state;
    char *body = pair_batch("{},{'key':'k'},{'value':null}");

    assert_int_equal(batch_rc(body, &LIMITS, v), -1);
    assert_count(v, 4);
    assert_violation(v, "/objects/0/data/0", "required property \"key\" is missing");
    assert_violation(v, "/objects/0/data/0", "required property \"value\" is missing");
    assert_violation(v, "/objects/0/data/1", "required property \"value\" is missing");
    assert_violation(v, "/objects/0/data/2", "required property \"key\" is missing");
    free(body);
}

static void test_key_errors(void **state)
{
    bp_violations_t *v = *state;
    char *k255 = repeat("k", 255), *k256 = repeat("k", 256), *pairs = NULL;

    assert_true(asprintf(&pairs,
                         "{'key':5,'value':1},{'key':null,'value':1},{'key':'','value':1},"
                         "{'key':'%s','value':1},{'key':'%s','value':1},{'key':'tab\\there','value':1}",
                         k255, k256) > 0);
    char *body = pair_batch(pairs);
    assert_int_equal(batch_rc(body, &LIMITS, v), -1);
    assert_count(v, 4);
    assert_violation(v, "/objects/0/data/0/key", "key must be a string, not a number");
    assert_violation(v, "/objects/0/data/1/key", "key must be a string, not null");
    assert_violation(v, "/objects/0/data/2/key", "key must not be empty");
    assert_violation(v, "/objects/0/data/4/key", "key is longer than 255 bytes (it has 256)");
    free(body);
    free(pairs);
    free(k255);
    free(k256);
}

static void test_value_types(void **state)
{
    bp_violations_t *v = *state;
    char *body = pair_batch("{'key':'s','value':'x'},{'key':'i','value':-3},{'key':'r','value':2.5e-3},"
                            "{'key':'t','value':true},{'key':'f','value':false},{'key':'n','value':null},"
                            "{'key':'o','value':{'a':1}},{'key':'a','value':[1,2]}");

    assert_int_equal(batch_rc(body, &LIMITS, v), -1);
    assert_count(v, 2);
    assert_violation(v, "/objects/0/data/6/value", "value must be a string, number, boolean or null, not an "
                                                   "object");
    assert_violation(v, "/objects/0/data/7/value", "value must be a string, number, boolean or null, not an "
                                                   "array");
    free(body);
}

static void test_string_value_length(void **state)
{
    bp_violations_t *v = *state;
    bp_payload_limits_t lim = LIMITS;
    lim.max_string_len = 10;
    char *ok = pair_batch("{'key':'k','value':'0123456789'},{'key':'k2',"
                          "'value':'\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9'}");
    char *bad = pair_batch("{'key':'k','value':'0123456789A'},{'key':'k2',"
                           "'value':'\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9'}");

    assert_int_equal(batch_rc(ok, &lim, v), 0);
    assert_int_equal(batch_rc(bad, &lim, v), -1);
    assert_count(v, 2);
    assert_violation(v, "/objects/0/data/0/value", "value is longer than 10 bytes (it has 11)");
    assert_violation(v, "/objects/0/data/1/value", "value is longer than 10 bytes (it has 12)");
    free(ok);
    free(bad);
}

static void test_repeated_keys_are_kept_in_order(void **state)
{
    bp_violations_t *v = *state;
    char *body = pair_batch("{'key':'tag','value':'summer'},{'key':'tag','value':'sale'},{'key':'tag',"
                            "'value':3}");
    json_t *doc = parse_ok(body, v);

    assert_int_equal(bp_payload_validate_batch(doc, &LIMITS, v), 0);
    json_t *data = json_object_get(json_array_get(json_object_get(doc, "objects"), 0), "data");
    assert_int_equal(json_array_size(data), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(data, 0), "value")), "summer");
    assert_string_equal(json_string_value(json_object_get(json_array_get(data, 1), "value")), "sale");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(data, 2), "value")), 3);
    json_decref(doc);
    free(body);
}

static void test_metadta_and_kye_report_both_pointers(void **state)
{
    bp_violations_t *v = *state;

    assert_int_equal(batch_rc("{'batch_id':'b','objects':["
                              "{'object_id':'o0','data':[{'key':'type','value':'car'}]},"
                              "{'object_id':'o1','metadta':[{'key':'type','value':'taxi'}]},"
                              "{'object_id':'o2','data':[{'key':'size','value':'M'},{'kye':'color',"
                              "'value':'red'}]}]}",
                              &LIMITS, v),
                     -1);
    assert_count(v, 4);
    assert_violation(v, "/objects/1", "required property \"data\" is missing");
    assert_violation(v, "/objects/1/metadta",
                     "unknown property \"metadta\"; allowed properties are \"object_id\" and \"data\"");
    assert_violation(v, "/objects/2/data/1", "required property \"key\" is missing");
    assert_violation(v, "/objects/2/data/1/kye", "unknown property \"kye\"; allowed properties are \"key\" "
                                                 "and \"value\"");
    /* in document order, the missing property before the misspelt one */
    assert_string_equal(v->items[0].pointer, "/objects/1");
    assert_string_equal(v->items[1].pointer, "/objects/1/metadta");
    assert_string_equal(v->items[2].pointer, "/objects/2/data/1");
    assert_string_equal(v->items[3].pointer, "/objects/2/data/1/kye");
}

static void test_every_violation_reported_in_one_pass(void **state)
{
    bp_violations_t *v = *state;

    assert_int_equal(batch_rc("{'batch_id':'','objects':["
                              "{'object_id':1,'data':[]},"
                              "{'object_id':'o','data':[{'key':'k','value':{}}],'extra':true},"
                              "{'object_id':'o','data':[{'key':'','value':1,'note':'x'}]}],'version':2}",
                              &LIMITS, v),
                     -1);
    assert_count(v, 8);
    assert_violation(v, "/batch_id", "batch_id must not be empty");
    assert_violation(v, "/objects/0/object_id", "object_id must be a string, not a number");
    assert_violation(v, "/objects/1/data/0/value", "value must be a string, number, boolean or null, not an "
                                                   "object");
    assert_violation(v, "/objects/1/extra", "unknown property \"extra\"; allowed properties are "
                                            "\"object_id\" and \"data\"");
    assert_violation(v, "/objects/2/object_id", "object_id \"o\" already appears at /objects/1");
    assert_violation(v, "/objects/2/data/0/key", "key must not be empty");
    assert_violation(v, "/objects/2/data/0/note", "unknown property \"note\"; allowed properties are "
                                                  "\"key\" and \"value\"");
    assert_violation(v, "/version", "unknown property \"version\"; allowed properties are \"batch_id\" and "
                                    "\"objects\"");
}

static void test_violations_cap_counts_the_rest(void **state)
{
    bp_violations_t *v = *state;
    json_t *objects = json_array();
    json_t *doc = json_pack("{s:s, s:o}", "batch_id", "b", "objects", objects);

    for (int i = 0; i < 150; i++)
        assert_int_equal(json_array_append_new(objects, json_pack("{s:s, s:[]}",
                         "object_id", "", "data")), 0);
    assert_int_equal(bp_payload_validate_batch(doc, &LIMITS, v), -1);
    assert_int_equal(v->count, BP_MAX_VIOLATIONS);
    assert_int_equal(v->total, 150); /* one per object: an empty id is not also reported as a duplicate */
    assert_string_equal(v->items[0].pointer, "/objects/0/object_id");
    assert_string_equal(v->items[99].pointer, "/objects/99/object_id");
    assert_string_equal(v->items[99].message, "object_id must not be empty");

    json_t *arr = bp_violations_to_json(v);
    assert_int_equal(json_array_size(arr), BP_MAX_VIOLATIONS);
    json_decref(arr);
    json_decref(doc);
}

static void test_verdict_without_violations(void **state)
{
    bp_violations_t *v = *state;
    json_t *bad = parse_ok("{'batch_id':'','objects':[]}", v);
    json_t *good = parse_ok("{'batch_id':'b','objects':[{'object_id':'o','data':[]}]}", v);

    assert_int_equal(bp_payload_validate_batch(bad, &LIMITS, NULL), -1);
    assert_int_equal(bp_payload_validate_batch(good, &LIMITS, NULL), 0);
    /* a second run starts from an empty list */
    assert_int_equal(bp_payload_validate_batch(bad, &LIMITS, v), -1);
    assert_count(v, 2);
    assert_int_equal(bp_payload_validate_batch(good, &LIMITS, v), 0);
    assert_count(v, 0);
    json_decref(bad);
    json_decref(good);
}

static void test_violations_to_json(void **state)
{
    bp_violations_t *v = *state;

    assert_int_equal(batch_rc("{'batch_id':'b','objects':[{'object_id':'o','data':[{'kye':'k','value':1}]}]}",
                              &LIMITS, v),
                     -1);
    json_t *arr = bp_violations_to_json(v);
    json_t *expected = parse_ok(
        "[{'pointer':'/objects/0/data/0','message':'required property \\'key\\' is missing'},"
        "{'pointer':'/objects/0/data/0/kye',"
        "'message':'unknown property \\'kye\\'; allowed properties are \\'key\\' and \\'value\\''}]",
        v);
    assert_true(json_equal(arr, expected));
    json_decref(arr);
    json_decref(expected);

    bp_violations_t empty = {0};
    arr = bp_violations_to_json(&empty);
    assert_int_equal(json_array_size(arr), 0);
    json_decref(arr);
}

/* ---------------------------------------------------------------------------------------------
 * The single-object form
 */

/* The batch text of a single-object body (q() quoting), NUL-terminated for comparison; NULL if none. */
static char *to_batch(const char *text)
{
    char *body = q(text);
    size_t n = 0;
    char *batch = bp_payload_object_to_batch(body, strlen(body), &n);
    char *out = NULL;
    if (batch != NULL) {
        out = malloc(n + 1);
        assert_non_null(out);
        memcpy(out, batch, n);
        out[n] = '\0';
    }
    free(batch);
    free(body);
    return out;
}

static void test_object_form_valid_and_converted(void **state)
{
    bp_violations_t *v = *state;
    const char *text = "{'data':[{'key':'color','value':'red'},{'key':'price','value':19.99}],"
                       " 'object_id':'o', 'batch_id':'b'}";
    json_t *obj = parse_ok(text, v);

    assert_int_equal(bp_payload_validate_object(obj, &LIMITS, v), 0);
    assert_count(v, 0);
    json_decref(obj);
    char *batch = to_batch(text);
    assert_non_null(batch);
    assert_string_equal(batch, q_static("{'batch_id':'b','objects':[{'object_id':'o','data':"
                                        "[{'key':'color','value':'red'},{'key':'price','value':19.99}]}]}"));
    json_t *doc = parse_ok(batch, v);
    assert_int_equal(bp_payload_validate_batch(doc, &LIMITS, v), 0);
    assert_int_equal(bp_payload_object_count(doc), 1);
    json_decref(doc);
    free(batch);
}

/* Numbers, strings and names keep their spelling: the members' bytes are copied, not re-serialized. */
static void test_object_to_batch_copies_the_bytes(void **state)
{
    (void)state;
    char *batch = to_batch("{'b\\u0061tch_id': 'b\\u00e9', 'object_id': 'o\\/1',\n 'data': [ {'key': 'n',"
                           " 'value': 1e2}, {'key': 'm', 'value': -0.0},\n {'key': 'big', 'value':"
                           " 12345678901234567890123}, {'key': 'p', 'value': 1.50} ] }");
    assert_non_null(batch);
    assert_string_equal(batch, q_static("{'batch_id':'b\\u00e9','objects':[{'object_id':'o\\/1','data':"
                                        "[ {'key': 'n', 'value': 1e2}, {'key': 'm', 'value': -0.0},\n "
                                        "{'key': 'big', 'value': 12345678901234567890123}, {'key': 'p', "
                                        "'value': 1.50} ]}]}"));
    free(batch);
}

static void test_object_form_errors(void **state)
{
    bp_violations_t *v = *state;
    bp_payload_limits_t lim = LIMITS;
    lim.max_pairs = 1;

    assert_int_equal(object_rc("{}", &lim, v), -1);
    assert_count(v, 3);
    assert_violation(v, "", "required property \"batch_id\" is missing");
    assert_violation(v, "", "required property \"object_id\" is missing");
    assert_violation(v, "", "required property \"data\" is missing");

    assert_int_equal(object_rc("{'batch_id':'b','object_id':'o\\n','data':[{'kye':'k','value':[]},"
                               "{'key':'k','value':1}]}",
                               &lim, v),
                     -1);
    assert_count(v, 5);
    assert_violation(v,
                     "/object_id", "object_id must not contain control characters (byte 0x0a at offset 1)");
    assert_violation(v, "/data", "data has more than 1 pairs (it has 2)");
    assert_violation(v, "/data/0", "required property \"key\" is missing");
    assert_violation(v, "/data/0/value", "value must be a string, number, boolean or null, not an array");
    assert_violation(v,
                     "/data/0/kye", "unknown property \"kye\"; allowed properties are \"key\" and \"value\"");
}

static void test_object_and_batch_forms_are_not_interchangeable(void **state)
{
    bp_violations_t *v = *state;

    /* a batch posted to the object endpoint */
    assert_int_equal(object_rc("{'batch_id':'b','objects':[{'object_id':'o','data':[]}]}", &LIMITS, v), -1);
    assert_count(v, 3);
    assert_violation(v, "", "required property \"object_id\" is missing");
    assert_violation(v, "", "required property \"data\" is missing");
    assert_violation(v, "/objects",
                     "unknown property \"objects\"; allowed properties are \"batch_id\", \"object_id\" and "
                     "\"data\"");

    /* an object posted to the batch endpoint */
    assert_int_equal(batch_rc("{'batch_id':'b','object_id':'o','data':[]}", &LIMITS, v), -1);
    assert_count(v, 3);
    assert_violation(v, "", "required property \"objects\" is missing");
    assert_violation(v, "/object_id",
                     "unknown property \"object_id\"; allowed properties are \"batch_id\" and \"objects\"");
    assert_violation(v, "/data", "unknown property \"data\"; allowed properties are \"batch_id\" and "
                                 "\"objects\"");
}

static void test_object_to_batch_needs_the_shape(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "{'object_id':'o','data':[]}",
        "{'batch_id':'b','data':[]}",
        "{'batch_id':'b','object_id':'o'}",
        "{'batch_id':1,'object_id':'o','data':[]}",
        "{'batch_id':'b','object_id':'o','data':{}}",
        "[]",
        "",
        "{'batch_id':'b','object_id':'o','data':[1,}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
        assert_null(to_batch(bodies[i]));
    assert_int_equal(bp_payload_object_count(NULL), 0);
}

/* ---------------------------------------------------------------------------------------------
 * The project's fixtures (tests/fixtures)
 */

static void test_fixture_valid_batch(void **state)
{
    bp_violations_t *v = *state;
    json_t *doc = fixture("valid_batch.json", v);

    assert_int_equal(bp_payload_validate_batch(doc, &LIMITS, v), 0);
    assert_int_equal(bp_payload_object_count(doc), 5);
    json_decref(doc);
}

static void test_fixture_typos(void **state)
{
    bp_violations_t *v = *state;
    json_t *doc = fixture("batch_typos.json", v);

    assert_int_equal(bp_payload_validate_batch(doc, &LIMITS, v), -1);
    assert_count(v, 4);
    assert_violation(v, "/objects/2", "required property \"data\" is missing");
    assert_violation(v, "/objects/2/metadta",
                     "unknown property \"metadta\"; allowed properties are \"object_id\" and \"data\"");
    assert_violation(v, "/objects/4/data/1", "required property \"key\" is missing");
    assert_violation(v, "/objects/4/data/1/kye", "unknown property \"kye\"; allowed properties are \"key\" "
                                                 "and \"value\"");
    json_decref(doc);
}

static void test_fixture_mixed_values(void **state)
{
    bp_violations_t *v = *state;
    json_t *doc = fixture("mixed_values.json", v);

    assert_int_equal(bp_payload_validate_batch(doc, &LIMITS, v), 0);
    json_t *objects = json_object_get(doc, "objects");
    json_t *numbers = json_object_get(json_array_get(objects, 1), "data");
    assert_true(json_is_integer(json_object_get(json_array_get(numbers, 6), "value")));
    assert_true(json_is_integer(json_object_get(json_array_get(numbers, 7), "value")));
    assert_true(json_is_real(json_object_get(json_array_get(numbers, 8), "value")));
    assert_true(json_is_real(json_object_get(json_array_get(numbers, 9), "value")));
    json_t *repeated = json_object_get(json_array_get(objects, 3), "data");
    assert_int_equal(json_array_size(repeated), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(objects, 5), "object_id")),
                        "Ünïcödé id/with~slash");
    json_decref(doc);
}

static void test_fixture_two_versions_of_one_batch(void **state)
{
    bp_violations_t *v = *state;
    json_t *v1 = fixture("batch_v1.json", v);
    json_t *v2 = fixture("batch_v2.json", v);

    assert_int_equal(bp_payload_validate_batch(v1, &LIMITS, v), 0);
    assert_int_equal(bp_payload_validate_batch(v2, &LIMITS, v), 0);
    assert_true(json_equal(json_object_get(v1, "batch_id"), json_object_get(v2, "batch_id")));
    size_t n = bp_payload_object_count(v1);
    assert_int_equal(n, bp_payload_object_count(v2));
    for (size_t i = 0; i < n; i++) {
        json_t *o1 = json_array_get(json_object_get(v1, "objects"), i);
        json_t *o2 = json_array_get(json_object_get(v2, "objects"), i);
        assert_true(json_equal(json_object_get(o1, "object_id"), json_object_get(o2, "object_id")));
        assert_false(json_equal(json_object_get(o1, "data"), json_object_get(o2, "data")));
    }
    json_decref(v1);
    json_decref(v2);
}

static void test_fixture_single_object(void **state)
{
    bp_violations_t *v = *state;
    json_t *obj = fixture("object_single.json", v);

    assert_int_equal(bp_payload_validate_object(obj, &LIMITS, v), 0);
    size_t len = 0, n = 0;
    char *body = fixture_text("object_single.json", &len);
    char *text = bp_payload_object_to_batch(body, len, &n);
    assert_non_null(text);
    json_t *batch = bp_payload_parse(text, n, v);
    assert_non_null(batch);
    assert_int_equal(bp_payload_validate_batch(batch, &LIMITS, v), 0);
    assert_true(json_equal(json_object_get(json_array_get(json_object_get(batch, "objects"), 0), "data"),
                           json_object_get(obj, "data")));
    json_decref(batch);
    free(text);
    free(body);
    json_decref(obj);
}

/* The lean path decides exactly as the full path on valid batches, and gives up on everything else. */
static void test_lean_path_agrees_with_the_full_path(void **state)
{
    bp_violations_t *v = *state;
    static const char *const bodies[] = {
        "{'batch_id':'b','objects':[{'object_id':'o','data':[{'key':'k','value':1}]}]}",
        " {\n 'objects' : [ {'data':[],'object_id':'o1'} , {'object_id':'o2','data':[]} ] , 'batch_id':'b' } ",
        "{'batch_id':'b','objects':[{'object_id':'o','data':[]},{'object_id':'o','data':[]}]}", /* dup id */
        "{'batch_id':'b','objects':[]}",
        "{'batch_id':'b','objects':[{'object_id':'o','data':[]}],'extra':1}",
        "{'batch_id':'b','objects':[{'object_id':'o','data':[]}],'objects':[{'object_id':'p','data':[]}]}",
        "{'batch_id':'b' 'objects':[{'object_id':'o','data':[]}]}",            /* missing comma */
        "{'batch_id':'b','objects':[{'object_id':'o','data':[]} {'object_id':'p','data':[]}]}",
        "{'batch_id':'b','objects':[{'object_id':'o','data':[]}]} x",            /* trailing text */
        "{'batch_id':'b','objects':[{'object_id':'o','data':[],'data':[]}]}",    /* dup member */
        "{'batch_id':'','objects':[{'object_id':'o','data':[]}]}",
        "{'batch_id':'b','objects':['o']}",
        "{'batch_id':'b','objects':[{'object_id':'o','data':[{'key':'k','value':[1]}]}]}",
        "{'batch_id':'b','objects':[{'object_id':'o','data':[{'key':'k','value':12345678901234567890123}]}]}",
        "{'batch_id':'b','obj\\u0065cts':[{'object_id':'o','data':[]}]}",
        "[{'object_id':'o','data':[]}]",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        char *s = q(bodies[i]);
        json_t *doc = bp_payload_parse(s, strlen(s), v);
        int full = doc != NULL && bp_payload_validate_batch(doc, &LIMITS, NULL) == 0;
        json_t *bid = NULL;
        size_t n = 0;
        int lean = bp_payload_batch_lean(s, strlen(s), &LIMITS, &bid, &n);
        if (i == 13) /* an integer beyond int64: valid, but the lean path gives up */
            assert_true(full && !lean);
        else if (lean != full)
            fail_msg("body %zu: lean %d, full %d: %s", i, lean, full, s);
        if (lean) {
            assert_true(json_equal(bid, json_object_get(doc, "batch_id")));
            assert_int_equal(n, bp_payload_object_count(doc));
        }
        json_decref(bid);
        json_decref(doc);
        free(s);
    }
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_parse_empty_body),
        T(test_parse_syntax_error_names_line_and_column),
        T(test_parse_refuses_100000_deep_nesting),
        T(test_parse_depth_64_is_allowed),
        T(test_parse_brackets_inside_strings_do_not_nest),
        T(test_parse_invalid_utf8),
        T(test_parse_refuses_nul),
        T(test_parse_refuses_duplicate_json_keys),
        T(test_parse_keeps_huge_integers_as_reals),
        T(test_parse_error_after_huge_integer_has_the_sent_position),
        T(test_parse_refuses_numbers_beyond_double),
        T(test_numbers_postgresql_cannot_store),
        T(test_valid_batch),
        T(test_lean_path_agrees_with_the_full_path),
        T(test_delete_messages),
        T(test_document_must_be_an_object),
        T(test_batch_required_properties),
        T(test_unknown_property_pointer_is_escaped),
        T(test_unknown_property_with_odd_name),
        T(test_unknown_property_with_long_name),
        T(test_batch_id_wrong_types),
        T(test_batch_id_empty),
        T(test_batch_id_length_is_counted_in_bytes),
        T(test_ids_refuse_control_characters),
        T(test_objects_must_be_an_array),
        T(test_empty_batch_is_refused),
        T(test_too_many_objects),
        T(test_object_entries_must_be_objects),
        T(test_object_id_errors),
        T(test_duplicate_object_ids),
        T(test_duplicate_object_id_message_quotes_safely),
        T(test_duplicate_check_on_many_objects),
        T(test_data_must_be_an_array),
        T(test_empty_data_is_allowed),
        T(test_too_many_pairs),
        T(test_pairs_must_be_objects),
        T(test_pair_required_properties),
        T(test_key_errors),
        T(test_value_types),
        T(test_string_value_length),
        T(test_repeated_keys_are_kept_in_order),
        T(test_metadta_and_kye_report_both_pointers),
        T(test_every_violation_reported_in_one_pass),
        T(test_violations_cap_counts_the_rest),
        T(test_verdict_without_violations),
        T(test_violations_to_json),
        T(test_object_form_valid_and_converted),
        T(test_object_form_errors),
        T(test_object_and_batch_forms_are_not_interchangeable),
        T(test_object_to_batch_needs_the_shape),
        T(test_object_to_batch_copies_the_bytes),
        T(test_fixture_valid_batch),
        T(test_fixture_typos),
        T(test_fixture_mixed_values),
        T(test_fixture_two_versions_of_one_batch),
        T(test_fixture_single_object),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
