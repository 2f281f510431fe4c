/* fuzz_payload.c - fuzz target for what POST /api/v1/batches/ and /api/v1/objects/ do with a body:
 * bp_payload_parse, bp_payload_check_numbers, both validators (default and tiny limits), the lean path,
 * bp_payload_object_to_batch, bp_violations_to_json, and the checks that their contracts in
 * shared/bp_payload.h promise. */
#include <string.h>

#include <jansson.h>

#include "bp_payload.h"
#include "fuzz.h"

/* The API's defaults (shared/bp_config.c), and limits small enough for short inputs to cross them. */
static const bp_payload_limits_t default_limits = {100000, 1000, 255, 255, 65536};
static const bp_payload_limits_t tiny_limits = {3, 2, 4, 3, 5};

/* Every stored violation is a JSON pointer and a message, both NUL-terminated strict UTF-8. */
static void check_violations(const bp_violations_t *v)
{
    FUZZ_CHECK(v->count <= BP_MAX_VIOLATIONS);
    FUZZ_CHECK(v->count <= v->total);
    FUZZ_CHECK(v->count == (v->total < BP_MAX_VIOLATIONS ? v->total : BP_MAX_VIOLATIONS));
    for (size_t i = 0; i < v->count; i++) {
        const bp_violation_t *it = &v->items[i];
        FUZZ_CHECK(fuzz_cstr_ok(it->pointer, sizeof(it->pointer)));
        FUZZ_CHECK(fuzz_cstr_ok(it->message, sizeof(it->message)));
        FUZZ_CHECK(it->pointer[0] == '\0' || it->pointer[0] == '/'); /* RFC 6901 */
        FUZZ_CHECK(it->message[0] != '\0');
    }
    /* what the API sends back: one entry per stored violation, the same text */
    json_t *arr = bp_violations_to_json(v);
    FUZZ_CHECK(arr != NULL);
    FUZZ_CHECK(json_array_size(arr) == v->count);
    for (size_t i = 0; i < v->count; i++) {
        json_t *e = json_array_get(arr, i);
        FUZZ_CHECK(json_is_string(json_object_get(e, "pointer")) && json_is_string(json_object_get(e, "message")));
        FUZZ_CHECK(strcmp(json_string_value(json_object_get(e, "pointer")), v->items[i].pointer) == 0);
        FUZZ_CHECK(strcmp(json_string_value(json_object_get(e, "message")), v->items[i].message) == 0);
    }
    char *text = json_dumps(arr, JSON_COMPACT);
    FUZZ_CHECK(text != NULL);
    free(text);
    json_decref(arr);
}

/* POST /api/v1/objects/ publishes a valid object as a one-object batch built around the body's own
 * bytes: that text parses and validates again as a batch (the worker re-validates what it reads from
 * Kafka), and holds the object's data unchanged. (A valid batch is published as the body itself.) */
static void check_object_batch(const char *body, size_t len, const json_t *doc, const bp_payload_limits_t *lim,
                               bp_violations_t *v)
{
    size_t n = 0;
    char *text = bp_payload_object_to_batch(body, len, &n);
    FUZZ_CHECK(text != NULL);
    json_t *batch = bp_payload_parse(text, n, v);
    FUZZ_CHECK(batch != NULL);
    FUZZ_CHECK(bp_payload_validate_batch(batch, lim, v) == 0);
    FUZZ_CHECK(v->count == 0 && v->total == 0);
    FUZZ_CHECK(bp_payload_object_count(batch) == 1);
    const json_t *entry = json_array_get(json_object_get(batch, "objects"), 0);
    FUZZ_CHECK(json_equal(json_object_get(entry, "data"), json_object_get(doc, "data")));
    FUZZ_CHECK(json_equal(json_object_get(entry, "object_id"), json_object_get(doc, "object_id")));
    FUZZ_CHECK(json_equal(json_object_get(batch, "batch_id"), json_object_get(doc, "batch_id")));
    json_decref(batch);
    free(text);
}

static void validate(const char *body, size_t len, const json_t *doc, const bp_payload_limits_t *lim,
                     bp_violations_t *v)
{
    int rc = bp_payload_validate_batch(doc, lim, v);
    check_violations(v);
    FUZZ_CHECK((rc == 0) == (v->total == 0));
    FUZZ_CHECK(bp_payload_validate_batch(doc, lim, NULL) == rc); /* the verdict does not depend on v */
    if (rc == 0) {
        FUZZ_CHECK(bp_payload_object_count(doc) >= 1);
        FUZZ_CHECK(bp_payload_object_count(doc) <= (size_t)lim->max_objects);
    }

    rc = bp_payload_validate_object(doc, lim, v);
    check_violations(v);
    FUZZ_CHECK((rc == 0) == (v->total == 0));
    FUZZ_CHECK(bp_payload_validate_object(doc, lim, NULL) == rc);
    if (rc == 0)
        check_object_batch(body, len, doc, lim, v);
}

/* A run of 19 digits or more: an integer that may lie beyond int64, where the lean path gives up. */
static int has_long_digit_run(const char *s, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        run = s[i] >= '0' && s[i] <= '9' ? run + 1 : 0;
        if (run >= 19)
            return 1;
    }
    return 0;
}

/* The lean path (the API's way to check a valid batch without its tree) gives the full path's
 * verdict, batch_id and object count; it may give up only on integers beyond int64. */
static void check_lean(const char *body, size_t len, const json_t *doc, const bp_payload_limits_t *lim)
{
    json_t *bid = NULL;
    size_t n = 0;
    int lean = bp_payload_batch_lean(body, len, lim, &bid, &n);
    int full = doc != NULL && bp_payload_validate_batch(doc, lim, NULL) == 0;
    FUZZ_CHECK(lean == 0 || lean == 1);
    if (lean) {
        FUZZ_CHECK(full);
        FUZZ_CHECK(json_equal(bid, json_object_get(doc, "batch_id")));
        FUZZ_CHECK(n == bp_payload_object_count(doc));
    } else {
        FUZZ_CHECK(bid == NULL && n == 0);
        FUZZ_CHECK(!full || has_long_digit_run(body, len));
    }
    json_decref(bid);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bp_violations_t v; /* 51 KB: not on the stack */
    memset(&v, 0xa5, sizeof(v)); /* stale bytes must not leak into the result */
    json_t *doc = bp_payload_parse((const char *)data, size, &v);
    check_lean((const char *)data, size, doc, &default_limits);
    check_lean((const char *)data, size, doc, &tiny_limits);
    if (doc == NULL) {
        FUZZ_CHECK(v.count == 1 && v.total == 1);
        FUZZ_CHECK(v.items[0].pointer[0] == '\0');
        check_violations(&v);
        return 0;
    }
    FUZZ_CHECK(v.count == 0 && v.total == 0);
    FUZZ_CHECK(json_is_object(doc) || json_is_array(doc));
    /* the API's check that PostgreSQL can store every number as written: a verdict and at most one
     * violation, at "" */
    int fits = bp_payload_check_numbers((const char *)data, size, &v);
    FUZZ_CHECK(fits == 0 || fits == -1);
    FUZZ_CHECK(v.total == (fits == 0 ? 0u : 1u));
    check_violations(&v);
    if (fits != 0)
        FUZZ_CHECK(v.items[0].pointer[0] == '\0');
    validate((const char *)data, size, doc, &default_limits, &v);
    validate((const char *)data, size, doc, &tiny_limits, &v);
    json_decref(doc);
    return 0;
}
