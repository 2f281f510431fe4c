/* cursor.h - the keyset cursors of the lists (cursor= and the next/previous links): a position in the
 * list, encoded as base64url (no padding) of a version byte and a small JSON object. Pure logic
 * (jansson only), unit-tested in tests/unit/test_query.c and fuzzed (tests/fuzz/fuzz_cursor.c). */
#ifndef BP_CURSOR_H
#define BP_CURSOR_H

#include <stddef.h>

#include "bp_error.h"

/* The created_at a batches cursor may carry, in microseconds since the epoch: years 0001 to 9999.
 * Beyond, PostgreSQL's to_timestamp fails (a 500) or the date cannot be a stored batch's. */
#define BP_CURSOR_MIN_US (-62135596800LL * 1000000)
#define BP_CURSOR_MAX_US (253402300799LL * 1000000 + 999999)
#define BP_CURSOR_MAX_BYTES 262144 /* cursor= text; a batches cursor carries a batch_id */
#define BP_CURSOR_VERSION 1        /* first byte of a decoded cursor */

/* Which list a cursor belongs to (its kind byte). */
typedef enum bp_cursor_kind { BP_CURSOR_OBJECTS = 'o', BP_CURSOR_BATCHES = 'b' } bp_cursor_kind_t;

/* A keyset position. Objects are ordered by id; batches by (created_at, batch_id), created_at in
 * microseconds since the Unix epoch. backward = 0: the page holds the rows after the key (a "next"
 * link), 1: the rows before it (a "previous" link). */
typedef struct bp_cursor {
    bp_cursor_kind_t kind;
    int backward;
    long long key;  /* objects: id; batches: created_at in microseconds */
    char *batch_id; /* batches only: malloc'd, owned; NULL for objects */
} bp_cursor_t;

struct bp_query_error; /* query.h: why a query-string value was refused */

/* Encode a cursor: base64url (no padding) of a version byte and a small JSON object. Returns a
 * malloc'd NUL-terminated string (free it), or NULL when out of memory. */
char *bp_cursor_encode(const bp_cursor_t *c);

/* Decode cursor text of len bytes that must be of kind. out is cleared first. Returns 0, or -1 with
 * e (param "cursor") when it is not base64url, has another version or kind, or a field is missing or
 * of the wrong type, or a batches cursor's time is outside BP_CURSOR_MIN_US..MAX_US; out holds
 * nothing to free then. */
int bp_cursor_decode(const char *s, size_t len, bp_cursor_kind_t kind, bp_cursor_t *out,
                     struct bp_query_error *e) BP_MUST_CHECK;

/* Free the batch_id and zero c; accepts NULL. */
void bp_cursor_clear(bp_cursor_t *c);

#endif
