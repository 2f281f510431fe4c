/* bp_json_scan.h - finding values in JSON text without parsing it into a tree, and handing back their
 * exact bytes: the batch_id of a 1 MB batch file and each element of a page's "results" (the CLI), the
 * data of a posted object and the number lexemes of a filter (the API). A tree (jansson) would turn
 * numbers into doubles or int64 and write them back respelt (19.99 -> 19.989999999999998); the bytes
 * found here are the producer's own. The scanner trusts nothing: on text that is not well-formed where
 * it looks, it returns failure. It checks brackets and strings, not every detail of the grammar, so
 * callers that need valid JSON validate it first (the API does, with jansson). No recursion. */
#ifndef BP_JSON_SCAN_H
#define BP_JSON_SCAN_H

#include <stddef.h>

/* The raw bytes of member `name` (NUL-terminated, UTF-8) of the top-level object of text[0..len):
 * *value points into text and *vlen is the length of the value (a string includes its quotes).
 * Returns 0, or -1 when the text is not an object, the member is absent, or the text is malformed
 * before it is found. A member name written with escapes ("d\u0061ta") is decoded before it is
 * compared, as a JSON parser does; with the same name twice, the first is found. */
int bp_json_member(const char *text, size_t len, const char *name, const char **value, size_t *vlen);

/* Walks the elements of a JSON array given as its raw bytes: set *pos = 0 before the first call
 * (array[0] must be the '['). Returns 1 with the next element in *elem (of *elen bytes), 0 at the
 * end, -1 on malformed text. */
int bp_json_array_next(const char *array, size_t alen, size_t *pos, const char **elem, size_t *elen);

/* Walks the members of a JSON object given as its raw bytes: set *pos = 0 before the first call
 * (object[0] must be the '{'). Returns 1 with the next member's name (a string literal with its
 * quotes, escapes as written) in *name (*nlen bytes) and its value in *value (*vlen bytes), 0 at the
 * end, -1 on malformed text. */
int bp_json_object_next(const char *object, size_t olen, size_t *pos, const char **name, size_t *nlen,
                        const char **value, size_t *vlen);

/* Decode the string literal lit[0..llen) (with its quotes, as the functions above hand it back) into
 * out, which must have room for llen bytes (a decoded string is never longer than its literal);
 * *outlen is the decoded length (not NUL-terminated). Returns 0, or -1 when lit is not a string
 * literal or an escape does not decode (a lone surrogate, a bad \u). */
int bp_json_string_decode(const char *lit, size_t llen, char *out, size_t *outlen);

#endif
