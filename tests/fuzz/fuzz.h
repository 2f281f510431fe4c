/* fuzz.h - what every fuzz target in tests/fuzz shares: libFuzzer's entry point and the checks the
 * targets make on what the code under test hands back (text fit for json_string(), hard failures). */
#ifndef BP_FUZZ_H
#define BP_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* libFuzzer calls this once per input; so does driver.c for every file of a corpus. Returns 0. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant: say which and abort, so that libFuzzer keeps the input as a crash and the
 * replay driver fails its ctest. Not assert(): it must hold in builds with NDEBUG too. */
#define FUZZ_CHECK(cond)                                                                                    \
    do {                                                                                                    \
        if (!(cond)) {                                                                                      \
            fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                                        \
        }                                                                                                   \
    } while (0)

/* 1 if s (n bytes) is strict UTF-8: shortest forms only, no surrogates, nothing above U+10FFFF.
 * Written here rather than borrowed from jansson so that the oracle does not share the code's bugs. */
static inline int fuzz_utf8_ok(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t need;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            need = 2, cp = c & 0x1fu;
        else if (c >= 0xe0 && c <= 0xef)
            need = 3, cp = c & 0x0fu;
        else if (c >= 0xf0 && c <= 0xf4)
            need = 4, cp = c & 0x07u;
        else
            return 0;
        if (n - i < need)
            return 0;
        for (size_t k = 1; k < need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3fu);
        }
        if ((need == 3 && cp < 0x800) || (need == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += need;
    }
    return 1;
}

/* 1 if buf (size bytes) holds a NUL-terminated string that is strict UTF-8. */
static inline int fuzz_cstr_ok(const char *buf, size_t size)
{
    size_t n = 0;
    while (n < size && buf[n] != '\0')
        n++;
    return n < size && fuzz_utf8_ok(buf, n);
}

#endif
