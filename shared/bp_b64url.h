/* bp_b64url.h - base64url without padding (RFC 4648, section 5), strict on the way in: the one codec of
 * the lists' cursors (api/cursor.c) and the receipt tokens' batch ids (bp_token.c). */
#ifndef BP_B64URL_H
#define BP_B64URL_H

#include <stddef.h>

/* Characters bp_b64url_encode writes for n bytes (without the NUL). */
#define BP_B64URL_LEN(n) ((n) / 3 * 4 + ((n) % 3 == 0 ? 0 : (n) % 3 + 1))

/* Most bytes bp_b64url_decode writes for n characters. */
#define BP_B64URL_DECODED_MAX(n) ((n) / 4 * 3 + 2)

/* Write src[0..n) as base64url into out, which holds BP_B64URL_LEN(n) + 1 bytes, NUL-terminated.
 * Returns the characters written (BP_B64URL_LEN(n)). */
size_t bp_b64url_encode(char *out, const void *src, size_t n);

/* Decode s[0..n) into out, which holds BP_B64URL_DECODED_MAX(n) bytes, and set *outlen. Returns 0, or
 * -1 when s is not canonical base64url without padding (another character, a length of 4k+1, or
 * trailing bits that are not zero: so one byte string has exactly one text). */
int bp_b64url_decode(const char *s, size_t n, unsigned char *out, size_t *outlen);

#endif
