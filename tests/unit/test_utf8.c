/* test_utf8.c - shared/bp_utf8.c: the strict UTF-8 decoder (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF) behind the valid prefix and the sanitizer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "bp_utf8.h"

static size_t prefix(const char *s)
{
    return bp_utf8_valid_prefix(s, strlen(s));
}

static void test_valid_text_is_whole(void **state)
{
    (void)state;
    assert_int_equal(prefix(""), 0);
    assert_int_equal(prefix("ascii"), 5);
    assert_int_equal(prefix("\xc2\x80"), 2);              /* U+0080, the first two-byte one */
    assert_int_equal(prefix("caf\xc3\xa9"), 5);           /* é */
    assert_int_equal(prefix("\xe0\xa0\x80"), 3);          /* U+0800 */
    assert_int_equal(prefix("\xe2\x82\xac"), 3);          /* € */
    assert_int_equal(prefix("\xed\x9f\xbf"), 3);          /* U+D7FF, just below the surrogates */
    assert_int_equal(prefix("\xee\x80\x80"), 3);          /* U+E000, just above them */
    assert_int_equal(prefix("\xf0\x90\x80\x80"), 4);      /* U+10000 */
    assert_int_equal(prefix("\xf0\x9f\x98\x80"), 4);      /* an emoji */
    assert_int_equal(prefix("\xf4\x8f\xbf\xbf"), 4);      /* U+10FFFF, the last */
    assert_int_equal(bp_utf8_valid_prefix("a\0b", 3), 3); /* NUL is a character */
}

static void test_prefix_stops_at_the_first_bad_sequence(void **state)
{
    (void)state;
    assert_int_equal(prefix("ab\x80"), 2);             /* a lone continuation byte */
    assert_int_equal(prefix("ab\xc0\x80"), 2);         /* overlong NUL */
    assert_int_equal(prefix("ab\xc1\xbf"), 2);         /* overlong */
    assert_int_equal(prefix("ab\xe0\x9f\xbf"), 2);     /* overlong three-byte */
    assert_int_equal(prefix("ab\xf0\x8f\xbf\xbf"), 2); /* overlong four-byte */
    assert_int_equal(prefix("ab\xed\xa0\x80"), 2);     /* U+D800, a surrogate */
    assert_int_equal(prefix("ab\xed\xbf\xbf"), 2);     /* U+DFFF */
    assert_int_equal(prefix("ab\xf4\x90\x80\x80"), 2); /* U+110000 */
    assert_int_equal(prefix("ab\xf5\x80\x80\x80"), 2);
    assert_int_equal(prefix("ab\xff"), 2);
    assert_int_equal(prefix("ab\xe2\x82"), 2);         /* cut short */
    assert_int_equal(prefix("ab\xe2\x82x"), 2);        /* a non-continuation inside */
    assert_int_equal(prefix("ab\xc3\xa9\xc3"), 4);     /* the whole é, not the cut one */
    assert_int_equal(bp_utf8_valid_prefix("\xe2\x82\xac", 2), 0); /* len bounds the sequence */
}

static void test_sanitize_replaces_each_bad_byte(void **state)
{
    (void)state;
    char s1[] = "ok caf\xc3\xa9";
    bp_utf8_sanitize(s1);
    assert_string_equal(s1, "ok caf\xc3\xa9");
    char s2[] = "a\xff" "b\xc0\x80" "c";
    bp_utf8_sanitize(s2);
    assert_string_equal(s2, "a?b??c");
    char s3[] = "x\xe2\x82";
    bp_utf8_sanitize(s3);
    assert_string_equal(s3, "x??");
    char s4[] = "\xed\xa0\x80\xe2\x82\xac";
    bp_utf8_sanitize(s4);
    assert_string_equal(s4, "???\xe2\x82\xac");
    char s5[] = "";
    bp_utf8_sanitize(s5);
    assert_string_equal(s5, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_text_is_whole),
        cmocka_unit_test(test_prefix_stops_at_the_first_bad_sequence),
        cmocka_unit_test(test_sanitize_replaces_each_bad_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
