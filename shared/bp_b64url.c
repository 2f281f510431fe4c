/* bp_b64url.c - base64url without padding (see bp_b64url.h); decoding refuses every text that is not the
 * canonical one, so a token or cursor cannot be altered into a second spelling of the same value. */
#include "bp_b64url.h"

#include <stdint.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t bp_b64url_encode(char *out, const void *src, size_t n)
{
    const unsigned char *s = src;
    char *o = out;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *o++ = alphabet[v >> 18 & 63], *o++ = alphabet[v >> 12 & 63];
        *o++ = alphabet[v >> 6 & 63], *o++ = alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        *o++ = alphabet[v >> 18 & 63], *o++ = alphabet[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        *o++ = alphabet[v >> 18 & 63], *o++ = alphabet[v >> 12 & 63], *o++ = alphabet[v >> 6 & 63];
    }
    *o = '\0';
    return (size_t)(o - out);
}

static int value_of(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

int bp_b64url_decode(const char *s, size_t n, unsigned char *out, size_t *outlen)
{
    if (n % 4 == 1)
        return -1;
    unsigned char *o = out;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = value_of(s[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6 | (uint32_t)v) & 0xffffff; /* at most 8 + 6 bits are ever pending */
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *o++ = (unsigned char)(acc >> bits & 0xff);
        }
    }
    if ((acc & ((1u << bits) - 1)) != 0) /* non-canonical trailing bits */
        return -1;
    *outlen = (size_t)(o - out);
    return 0;
}
