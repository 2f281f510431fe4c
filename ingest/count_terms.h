/* count_terms.h - the counter terms of objects (docs/QUERIES.md#counting), computed in C by the worker
 * exactly as migration 007's SQL computes them (bp_count_terms_sql), and summed per term for one statement.
 *
 * A term is (kind, key, value) with value a canonical JSON text, as count_terms stores it:
 *   't' every object (no key, no value)      'b' the objects of a batch (key = batch_id)
 *   'k' objects with a key                   'v' objects with a value (under a dense key, or none)
 *   'p' objects with a (dense key, value)    'x' / 'y' objects holding both a string S that the typed
 *       rule reads as JSON (a number, true, false, null) and that typed value t: value [S, t] ('y': both
 *       under the same dense key, which is the term's key)
 * An object counts once per term however often it repeats a pair. Canonical values: a string is its
 * decoded bytes (re-escaped: "\u0041" and "A" are one term), a number is PostgreSQL's
 * to_jsonb(trim_scale(numeric)) text (1e2, 100.0 -> 100; -0.0 -> 0; no exponent, no trailing zeros),
 * true / false / null as such. Elements of a sparse key (count_keys) give their 'k' term only. */
#ifndef BP_COUNT_TERMS_H
#define BP_COUNT_TERMS_H

#include <stddef.h>
#include <stdint.h>

#include "bp_count_key.h" /* the canonical values and the result codes */
#include "bp_error.h"

typedef struct bp_count_terms bp_count_terms_t;

/* Results: BP_COUNT_OK, BP_COUNT_NOMEM, BP_COUNT_MALFORMED, BP_COUNT_OVERFLOW (bp_count_key.h). */

/* One summed term, as bp_count_terms_next hands it out. Pointers are borrowed from the set and valid
 * until it is changed or freed. key is NULL for 't', 'v', 'x'; value is NULL for 't', 'b', 'k'. */
typedef struct bp_count_term {
    char kind;
    const char *key; /* NUL-terminated (keys and batch ids cannot hold NUL) */
    size_t key_len;
    const char *value; /* canonical JSON text, NUL-terminated */
    size_t value_len;
    int64_t n;
} bp_count_term_t;

/* An empty set. NULL without memory. Free with bp_count_terms_free. */
bp_count_terms_t *bp_count_terms_new(void);

/* Accepts NULL. */
void bp_count_terms_free(bp_count_terms_t *t);

/* Forget every term (the memory is kept for the next statement). */
void bp_count_terms_clear(bp_count_terms_t *t);

/* Add sign (+1 counted in, -1 counted out) to each term of one object: 't', 'b' (batch_id[0..blen),
 * the decoded batch id) and the terms of data[0..dlen) (its JSON array of {"key", "value"} exactly as
 * stored). sparse[0..nsparse) are the sparse keys (NUL-terminated, sorted by strcmp; borrowed).
 * Returns BP_COUNT_OK; BP_COUNT_NOMEM, BP_COUNT_MALFORMED or BP_COUNT_OVERFLOW leave the set with
 * the object partly added: clear it or throw it away. */
int bp_count_terms_add_object(bp_count_terms_t *t, const char *batch_id, size_t blen, const char *data, size_t dlen,
                              const char *const *sparse, size_t nsparse, int64_t sign) BP_MUST_CHECK;

/* Add every term of src to dst (src borrowed, unchanged). BP_COUNT_OK or BP_COUNT_NOMEM (dst then
 * holds part of src). */
int bp_count_terms_merge(bp_count_terms_t *dst, const bp_count_terms_t *src) BP_MUST_CHECK;

/* Number of distinct terms in the set (some may have summed to 0). */
size_t bp_count_terms_size(const bp_count_terms_t *t);

/* Walk the terms: *pos = 0 first; returns 1 with the next term in *out, 0 at the end. Terms that
 * summed to 0 are skipped. The order is the set's own (not sorted). */
int bp_count_terms_next(const bp_count_terms_t *t, size_t *pos, bp_count_term_t *out);

#endif
