/* bp_utf8.h - keeping text that goes into JSON valid UTF-8 (jansson refuses anything else). */
#ifndef BP_UTF8_H
#define BP_UTF8_H

#include <stddef.h>

/* Bytes of the well-formed sequence that starts at s (len bytes available, len >= 1): 1 to 4, or 0
 * when s does not start one. The one decoding step every UTF-8 check in the tree uses. */
size_t bp_utf8_sequence(const char *s, size_t len);

/* Length of the longest prefix of s[0..len) that is well-formed UTF-8 (no overlongs, no surrogates,
 * nothing above U+10FFFF). */
size_t bp_utf8_valid_prefix(const char *s, size_t len);

/* Replace, in place, every byte of the NUL-terminated s that is not part of a well-formed UTF-8
 * sequence with '?'. Use on messages that quote client input or library text. */
void bp_utf8_sanitize(char *s);

#endif
