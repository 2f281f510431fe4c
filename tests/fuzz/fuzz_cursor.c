/* fuzz_cursor.c - fuzz target for cursor= of the list endpoints (api/query.h): bp_cursor_decode of any
 * text for either list, the encode/decode round trip, and the keyset SQL a cursor becomes.
 *
 * Input: one byte, then the rest. Bit 0 of the byte picks the list (0 objects, 1 batches). Bit 1 clear:
 * the rest is cursor text to decode. Bit 1 set: the rest builds a cursor (8 bytes of key, 1 byte of
 * direction, then the batch_id) that must survive encode then decode unchanged. */
#include <string.h>

#include <jansson.h>

#include "query.h"
#include "fuzz.h"

static void check_statements(const bp_cursor_t *c)
{
    bp_query_list_t q = {.page_size = 25, .has_cursor = 1, .cursor = *c};
    bp_sql_t s;
    int rc = c->kind == BP_CURSOR_OBJECTS ? bp_query_sql_objects(&q, 10000, &s) : bp_query_sql_batches(&q, 10000, &s);
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(s.text != NULL && s.nparams <= BP_QUERY_MAX_PARAMS);
    for (const char *p = strchr(s.text, '$'); p != NULL; p = strchr(p + 1, '$')) {
        long n = strtol(p + 1, NULL, 10);
        FUZZ_CHECK(n >= 1 && n <= s.nparams);
    }
    bp_sql_clear(&s); /* q borrows c's batch_id: not cleared here */
}

/* A decoded cursor is of the asked kind, with the fields of that kind; it encodes to a cursor that
 * decodes to the same position (the API hands out only what bp_cursor_encode makes). */
static void check_decoded(const bp_cursor_t *c, bp_cursor_kind_t kind)
{
    FUZZ_CHECK(c->kind == kind);
    FUZZ_CHECK(c->backward == 0 || c->backward == 1);
    if (kind == BP_CURSOR_OBJECTS) {
        FUZZ_CHECK(c->batch_id == NULL);
        FUZZ_CHECK(c->key >= 0);
    } else {
        FUZZ_CHECK(c->batch_id != NULL && c->batch_id[0] != '\0');
        FUZZ_CHECK(fuzz_utf8_ok(c->batch_id, strlen(c->batch_id)));
    }
    check_statements(c);

    char *text = bp_cursor_encode(c);
    FUZZ_CHECK(text != NULL);
    for (const char *p = text; *p != '\0'; p++) /* base64url without padding: safe in a URL as is */
        FUZZ_CHECK((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                   *p == '_');
    bp_cursor_t again;
    bp_query_error_t e = {0};
    FUZZ_CHECK(bp_cursor_decode(text, strlen(text), kind, &again, &e) == 0);
    FUZZ_CHECK(again.kind == c->kind && again.backward == c->backward && again.key == c->key);
    FUZZ_CHECK((again.batch_id == NULL) == (c->batch_id == NULL));
    FUZZ_CHECK(c->batch_id == NULL || strcmp(again.batch_id, c->batch_id) == 0);
    /* the other list refuses it */
    bp_cursor_t other;
    bp_cursor_kind_t wrong = kind == BP_CURSOR_OBJECTS ? BP_CURSOR_BATCHES : BP_CURSOR_OBJECTS;
    FUZZ_CHECK(bp_cursor_decode(text, strlen(text), wrong, &other, &e) != 0);
    FUZZ_CHECK(other.batch_id == NULL);
    bp_cursor_clear(&again);
    free(text);
}

static void decode_text(const uint8_t *data, size_t size, bp_cursor_kind_t kind)
{
    /* an exact-size copy: a read past the text is caught */
    char *s = malloc(size ? size : 1);
    FUZZ_CHECK(s != NULL);
    if (size > 0)
        memcpy(s, data, size);
    bp_cursor_t c;
    memset(&c, 0x5a, sizeof(c)); /* decode must clear it first */
    bp_query_error_t e = {0};
    if (bp_cursor_decode(s, size, kind, &c, &e) == 0) {
        check_decoded(&c, kind);
    } else {
        FUZZ_CHECK(e.param != NULL && strcmp(e.param, "cursor") == 0);
        FUZZ_CHECK(fuzz_cstr_ok(e.message, sizeof(e.message)) && e.message[0] != '\0');
        FUZZ_CHECK(c.batch_id == NULL);
    }
    bp_cursor_clear(&c);
    free(s);
}

static void round_trip(const uint8_t *data, size_t size, bp_cursor_kind_t kind)
{
    if (size < 9)
        return;
    bp_cursor_t c = {.kind = kind, .backward = data[8] & 1};
    uint64_t key = 0;
    for (int i = 0; i < 8; i++)
        key = key << 8 | data[i];
    memcpy(&c.key, &key, sizeof(c.key));
    const char *id = (const char *)data + 9;
    size_t idlen = size - 9;
    if (kind == BP_CURSOR_OBJECTS) {
        if (c.key < 0) /* object ids are never negative; decode refuses them */
            return;
    } else {
        if (c.key < BP_CURSOR_MIN_US || c.key > BP_CURSOR_MAX_US) /* no batch was made then */
            return;
        /* a batch_id as the database holds it: not empty, UTF-8, no NUL */
        if (idlen == 0 || memchr(id, '\0', idlen) != NULL || !fuzz_utf8_ok(id, idlen))
            return;
        c.batch_id = strndup(id, idlen);
        FUZZ_CHECK(c.batch_id != NULL);
    }
    check_decoded(&c, kind);
    bp_cursor_clear(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    bp_cursor_kind_t kind = (data[0] & 1) ? BP_CURSOR_BATCHES : BP_CURSOR_OBJECTS;
    if (data[0] & 2)
        round_trip(data + 1, size - 1, kind);
    else
        decode_text(data + 1, size - 1, kind);
    return 0;
}
