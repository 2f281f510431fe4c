/* json_scan.h - finding values in JSON text without parsing it into a tree: the batch_id of a 1 MB
 * batch file, and the exact bytes of each element of a page's "results" (jansson would turn numbers
 * beyond 64 bits into reals; the CLI's --json output keeps them as the API sent them).
 * The scanner trusts nothing: on text that is not well-formed where it looks, it returns failure. */
#ifndef BP_CLI_JSON_SCAN_H
#define BP_CLI_JSON_SCAN_H

#include <stddef.h>

/* The raw bytes of member `name` of the top-level object of text[0..len): *value points into text
 * and *vlen is the length of the value (a string includes its quotes). Returns 0, or -1 when the
 * text is not an object, the member is absent, or the text is malformed before it is found.
 * Members are compared byte for byte (a name written with escapes is not recognized). */
int cli_json_member(const char *text, size_t len, const char *name, const char **value, size_t *vlen);

/* Walks the elements of a JSON array given as its raw bytes: set *pos = array (the '[') before the
 * first call. Returns 1 with the next element in *elem (of *elen bytes), 0 at the end, -1 on malformed
 * text. */
int cli_json_array_next(const char *array, size_t alen, size_t *pos, const char **elem, size_t *elen);

#endif
