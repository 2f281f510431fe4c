/* cursor.c - the lists' keyset cursors: a position as base64url(version byte + JSON), encoded for the
 * next/previous links and decoded (strictly: canonical base64url, known version and kind) from cursor=. */
#include "cursor.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bp_b64url.h"
#include "query.h"

/* base64url text of src[0..n) in a malloc'd string; NULL when out of memory. */
static char *b64url_encode(const unsigned char *src, size_t n)
{
    char *out = malloc(BP_B64URL_LEN(n) + 1);
    if (out != NULL)
        bp_b64url_encode(out, src, n);
    return out;
}

/* Decode without padding into a malloc'd buffer; NULL if not canonical base64url. */
static unsigned char *b64url_decode(const char *s, size_t n, size_t *outlen)
{
    unsigned char *out = malloc(BP_B64URL_DECODED_MAX(n));
    if (out != NULL && bp_b64url_decode(s, n, out, outlen) != 0) {
        free(out);
        out = NULL;
    }
    return out;
}

char *bp_cursor_encode(const bp_cursor_t *c)
{
    json_t *obj = json_object();
    char kind[2] = {(char)c->kind, '\0'};
    json_object_set_new(obj, "k", json_string(kind));
    json_object_set_new(obj, "d", json_string(c->backward ? "p" : "n"));
    if (c->kind == BP_CURSOR_BATCHES) {
        json_object_set_new(obj, "t", json_integer(c->key));
        json_object_set_new(obj, "b", json_string(c->batch_id != NULL ? c->batch_id : ""));
    } else {
        json_object_set_new(obj, "id", json_integer(c->key));
    }
    char *text = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (text == NULL)
        return NULL;
    size_t n = strlen(text);
    unsigned char *raw = malloc(n + 1);
    char *out = NULL;
    if (raw != NULL) {
        raw[0] = BP_CURSOR_VERSION;
        memcpy(raw + 1, text, n);
        out = b64url_encode(raw, n + 1);
    }
    free(raw);
    free(text);
    return out;
}

int bp_cursor_decode(const char *s, size_t len, bp_cursor_kind_t kind, bp_cursor_t *out,
                     struct bp_query_error *e)
{
    memset(out, 0, sizeof(*out));
    size_t n = 0;
    unsigned char *raw = NULL;
    json_t *obj = NULL;
    int rc = -1;
    if (len == 0 || len > BP_CURSOR_MAX_BYTES || (raw = b64url_decode(s, len, &n)) == NULL || n < 3 ||
        raw[0] != BP_CURSOR_VERSION)
        goto fail;
    json_error_t jerr;
    obj = json_loadb((const char *)raw + 1, n - 1, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(obj))
        goto fail;
    const char *k = json_string_value(json_object_get(obj, "k"));
    const char *d = json_string_value(json_object_get(obj, "d"));
    if (k == NULL || d == NULL || strlen(k) != 1 || k[0] != (char)kind)
        goto fail;
    if (strcmp(d, "n") != 0 && strcmp(d, "p") != 0)
        goto fail;
    out->kind = kind;
    out->backward = d[0] == 'p';
    if (kind == BP_CURSOR_BATCHES) {
        json_t *t = json_object_get(obj, "t"), *b = json_object_get(obj, "b");
        if (!json_is_integer(t) || json_integer_value(t) < BP_CURSOR_MIN_US ||
            json_integer_value(t) > BP_CURSOR_MAX_US || !json_is_string(b) || json_string_length(b) == 0 ||
            memchr(json_string_value(b), '\0', json_string_length(b)) != NULL)
            goto fail;
        out->key = json_integer_value(t);
        out->batch_id = strdup(json_string_value(b));
        if (out->batch_id == NULL)
            goto fail;
    } else {
        json_t *id = json_object_get(obj, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0)
            goto fail;
        out->key = json_integer_value(id);
    }
    rc = 0;
    goto done;
fail:
    bp_cursor_clear(out);
    e->param = "cursor";
    snprintf(e->message, sizeof(e->message), "%s",
             "cursor: not a valid cursor for this list; copy it from a next or previous link");
done:
    json_decref(obj);
    free(raw);
    return rc;
}

void bp_cursor_clear(bp_cursor_t *c)
{
    if (c == NULL)
        return;
    free(c->batch_id);
    memset(c, 0, sizeof(*c));
}

