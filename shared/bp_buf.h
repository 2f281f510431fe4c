/* bp_buf.h - a growable text buffer for text built by hand (SQL statements, JSON bodies that splice
 * PostgreSQL's jsonb text in as is), with JSON string escaping. Running out of memory sticks. */
#ifndef BP_BUF_H
#define BP_BUF_H

#include <stddef.h>

#include "bp_error.h"

/* Start with bp_buf_t b = {0}. Appending never fails loudly: when memory runs out, oom is set and
 * every later append does nothing, so that a builder checks once, at the end (bp_buf_take, or oom
 * before sending). p is owned by the buffer: free it with bp_buf_free, or take it with bp_buf_take. */
typedef struct bp_buf {
    char *p;    /* the text, NUL-terminated once anything was appended; NULL before */
    size_t len; /* bytes of text, without the NUL */
    size_t cap; /* bytes allocated at p */
    int oom;    /* set when memory ran out (or printf failed): the text is incomplete */
} bp_buf_t;

/* Make room for more bytes (and the NUL) after the text, so that appending up to more bytes does not
 * move p. Returns 0, or -1 with oom set (also when oom was already set). */
int bp_buf_reserve(bp_buf_t *b, size_t more);

/* Append n bytes of s (which may hold NULs; the buffer does not look at them). */
void bp_buf_add(bp_buf_t *b, const char *s, size_t n);

/* Append the NUL-terminated s. */
void bp_buf_puts(bp_buf_t *b, const char *s);

/* Append what printf would print, of any length. */
void bp_buf_printf(bp_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Append a JSON string literal of n bytes of s: quotes, and escapes for '"', '\' and the bytes below
 * 0x20 (\n, \r, \t, else \u00XX). Bytes from 0x20 up are copied: s must be valid UTF-8 already
 * (PostgreSQL's text, or input the caller validated). */
void bp_buf_json_string(bp_buf_t *b, const char *s, size_t n);

/* The text, NUL-terminated and malloc'd (free it), or NULL when memory ran out or nothing was ever
 * appended (the text is freed then). Either way b is empty again afterwards. */
char *bp_buf_take(bp_buf_t *b) BP_MUST_CHECK;

/* Free the text and empty b (oom cleared); accepts NULL. */
void bp_buf_free(bp_buf_t *b);

#endif
