/* fuzz_json_scan.c - fuzz target for the JSON scanner (shared/bp_json_scan.h), which reads what a batch
 * file or an API server hands the CLI, and what a client posts to the API (the data of an object, the
 * members of a data= filter): bp_json_member (a member of the top-level object), bp_json_array_next
 * and bp_json_object_next (the elements of an array, the members of an object), on any bytes.
 *
 * Input: one byte, then the text. Bit 0 of the byte clear: look up member "batch_id" of the text and
 * walk the text (from its first non-blank byte) as an object; set: walk it as an array. Oracle:
 * jansson. Whatever the text, every value handed back lies inside it. When jansson reads the text as
 * valid JSON (duplicate members refused), the scanner agrees: it finds the member exactly when jansson
 * has it (names written with escapes included), with jansson's value, and the walks yield exactly
 * jansson's elements or members, in order. */
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "bp_json_scan.h"

/* jansson as the oracle of "valid JSON". A raw NUL byte is never valid JSON, but jansson accepted one
 * after a number (corpus/json_scan/array_nul_after_number), so texts with one get no oracle. */
static json_t *parse(const char *text, size_t len)
{
    json_error_t err;
    if (memchr(text, '\0', len) != NULL)
        return NULL;
    return json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
}

static int inside(const char *text, size_t len, const char *p, size_t n)
{
    return p >= text && n <= len && (size_t)(p - text) <= len - n;
}

static void check_member(const char *text, size_t len)
{
    const char *value = NULL;
    size_t vlen = 0;
    int rc = bp_json_member(text, len, "batch_id", &value, &vlen);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc == 0)
        FUZZ_CHECK(vlen > 0 && inside(text, len, value, vlen));
    json_t *doc = parse(text, len);
    if (doc == NULL)
        return;
    json_t *expected = json_is_object(doc) ? json_object_get(doc, "batch_id") : NULL;
    if (rc == 0) {
        json_t *got = parse(value, vlen);
        FUZZ_CHECK(expected != NULL && got != NULL && json_equal(got, expected));
        json_decref(got);
    } else {
        FUZZ_CHECK(expected == NULL);
    }
    json_decref(doc);
}

/* The object walk: each member's name parses as a string that jansson has, with the same value. */
static void check_object(const char *text, size_t len)
{
    while (len > 0 && (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r'))
        text++, len--;
    size_t pos = 0, n = 0, nlen = 0, vlen = 0;
    const char *name = NULL, *value = NULL;
    int rc;
    json_t *doc = parse(text, len);
    int valid = json_is_object(doc);
    while ((rc = bp_json_object_next(text, len, &pos, &name, &nlen, &value, &vlen)) == 1) {
        FUZZ_CHECK(nlen >= 2 && inside(text, len, name, nlen) && name[0] == '"');
        FUZZ_CHECK(vlen > 0 && inside(text, len, value, vlen));
        FUZZ_CHECK(pos <= len);
        if (valid) {
            json_t *k = parse(name, nlen), *v = parse(value, vlen);
            FUZZ_CHECK(json_is_string(k) && v != NULL);
            FUZZ_CHECK(json_equal(v, json_object_getn(doc, json_string_value(k), json_string_length(k))));
            json_decref(k);
            json_decref(v);
        }
        FUZZ_CHECK(++n <= len); /* always progresses */
    }
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (valid)
        FUZZ_CHECK(rc == 0 && n == json_object_size(doc));
    json_decref(doc);
}

/* The array as the CLI hands it over: its raw bytes, from the '[' (JSON whitespace before it is
 * skipped here, as bp_json_member never includes it in a value). */
static void check_array(const char *text, size_t len)
{
    while (len > 0 && (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r'))
        text++, len--;
    size_t pos = 0, n = 0;
    const char *elem = NULL;
    size_t elen = 0;
    int rc;
    json_t *doc = parse(text, len);
    int valid = json_is_array(doc);
    while ((rc = bp_json_array_next(text, len, &pos, &elem, &elen)) == 1) {
        FUZZ_CHECK(elen > 0 && inside(text, len, elem, elen));
        FUZZ_CHECK(pos <= len);
        if (valid) {
            json_t *got = parse(elem, elen);
            FUZZ_CHECK(got != NULL && n < json_array_size(doc) && json_equal(got, json_array_get(doc, n)));
            json_decref(got);
        }
        FUZZ_CHECK(++n <= len); /* always progresses */
    }
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (valid)
        FUZZ_CHECK(rc == 0 && n == json_array_size(doc));
    json_decref(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (data[0] & 1)
        check_array(text, len);
    else {
        check_member(text, len);
        check_object(text, len);
    }
    return 0;
}
