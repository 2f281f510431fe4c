/* bp_count_key.h - the identity of a counter row of count_terms (docs/QUERIES.md#counting): a value's
 * canonical JSON text and a term's hash, computed in C exactly as migration 007's bp_count_canon and
 * bp_count_hash compute them in SQL. The worker uses the canonical text for the terms it sends; the API
 * names the counter a filter reads by its hash, a parameter, so that PostgreSQL has no SQL function to
 * inline and fold while planning the page statement (which cost more than the page itself). */
#ifndef BP_COUNT_KEY_H
#define BP_COUNT_KEY_H

#include <stddef.h>

#include "bp_error.h"

/* Results of the canonical helpers (and of count_terms.h's functions). */
#define BP_COUNT_OK 0
#define BP_COUNT_NOMEM (-1)
#define BP_COUNT_MALFORMED (-2) /* not what the function reads (the validator lets none through) */
#define BP_COUNT_OVERFLOW (-3)  /* a number, or a string the typed rule reads as one, that PostgreSQL's
                                 * numeric cannot hold: 007's SQL fails on it ("value overflows numeric
                                 * format", SQLSTATE 22003), and so must the worker */

/* A term's hash as text: a uuid's 32 hex digits in the 8-4-4-4-12 form PostgreSQL prints, and a NUL. */
#define BP_COUNT_HASH_LEN 37

/* The canonical text of the JSON number lexeme s[0..n) (PostgreSQL's to_jsonb(trim_scale(s::numeric))):
 * a malloc'd NUL-terminated string in *out (free it), its length in *outlen. Returns BP_COUNT_OK,
 * BP_COUNT_OVERFLOW when numeric cannot hold it, BP_COUNT_MALFORMED when s is not a JSON number, or
 * BP_COUNT_NOMEM. */
int bp_count_canon_number(const char *s, size_t n, char **out, size_t *outlen) BP_MUST_CHECK;

/* The typed rule (007's bp_count_typed) for the decoded string s[0..n): when it is a JSON number, true,
 * false or null as a whole, 1 with its canonical text in *out (malloc'd, free it; *outlen bytes); 0
 * when it is not (no *out); BP_COUNT_OVERFLOW when it is a number numeric cannot hold;
 * BP_COUNT_NOMEM. */
int bp_count_typed(const char *s, size_t n, char **out, size_t *outlen) BP_MUST_CHECK;

/* Write the decoded string s[0..n) as jsonb prints it (quotes; '"', '\' and control bytes escaped,
 * the rest as is) into dst, which has room for 2 + 6 * n bytes. Returns the length written. Not
 * bp_buf_json_string: jsonb writes \b and \f where that writes \u0008 and \u000c, and the term's hash
 * is of jsonb's text. */
size_t bp_count_json_string(char *dst, const char *s, size_t n);

/* A malloc'd copy of s[0..n) with a NUL after it (terms' keys and canonical values), or NULL. */
char *bp_count_dup(const char *s, size_t n);

/* The canonical text of the JSON scalar lexeme v[0..vlen) as written by a client (a string with its
 * quotes and escapes, a number, true, false, null): malloc'd in *out, *outlen bytes. Returns
 * BP_COUNT_OK, BP_COUNT_MALFORMED (an object, an array, a string holding NUL or a bad escape),
 * BP_COUNT_OVERFLOW or BP_COUNT_NOMEM. */
int bp_count_canon_value(const char *v, size_t vlen, char **out, size_t *outlen) BP_MUST_CHECK;

/* bp_count_hash(kind, key, value) of migration 007 into out: md5 of the kind, then the key's length
 * in characters, ':' and the key (or '-' without a key), then the canonical value text (or '-').
 * key must be valid UTF-8 (PostgreSQL's length() counts its characters). Returns 0, or -1 when the
 * key is not valid UTF-8 or the digest fails. */
int bp_count_hash(char kind, const char *key, size_t klen, const char *value, size_t vlen,
                  char out[BP_COUNT_HASH_LEN]) BP_MUST_CHECK;

#endif
