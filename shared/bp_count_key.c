/* bp_count_key.c - canonical values and term hashes of count_terms, as migration 007's SQL has them
 * (see bp_count_key.h). */
#include "bp_count_key.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "bp_json_scan.h"
#include "bp_utf8.h"

/* PostgreSQL's numeric limits (numeric.c, PostgreSQL 15): an exponent of INT_MAX/2 or more in
 * magnitude is refused; so is a display scale (digits after the point) above 16383, and a value whose
 * first digit sits more than 131071 places before the point (a base-10000 weight beyond int16). */
#define NUMERIC_EXP_LIMIT 1073741823LL
#define NUMERIC_DSCALE_MAX 16383LL
#define NUMERIC_DWEIGHT_MAX 131071LL

char *bp_count_dup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

int bp_count_canon_number(const char *s, size_t n, char **out, size_t *outlen)
{
    size_t i = 0;
    int neg = 0;
    if (i < n && s[i] == '-') {
        neg = 1;
        i++;
    }
    size_t int_start = i;
    if (i >= n || s[i] < '0' || s[i] > '9')
        return BP_COUNT_MALFORMED;
    if (s[i] == '0')
        i++;
    else
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    size_t int_len = i - int_start, frac_start = i, frac_len = 0;
    if (i < n && s[i] == '.') {
        frac_start = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        frac_len = i - frac_start;
        if (frac_len == 0)
            return BP_COUNT_MALFORMED;
    }
    long long exp = 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        int eneg = 0;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            eneg = s[i++] == '-';
        size_t estart = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (exp < NUMERIC_EXP_LIMIT) /* saturate: PostgreSQL refuses anything from the limit up */
                exp = exp * 10 + (s[i] - '0');
            i++;
        }
        if (i == estart)
            return BP_COUNT_MALFORMED;
        if (eneg)
            exp = -exp;
    }
    if (i != n)
        return BP_COUNT_MALFORMED;
    if (exp >= NUMERIC_EXP_LIMIT || exp <= -NUMERIC_EXP_LIMIT)
        return BP_COUNT_OVERFLOW;
    long long dscale = (long long)frac_len - exp;
    if (dscale > NUMERIC_DSCALE_MAX)
        return BP_COUNT_OVERFLOW;
    /* the digits D = integer part then fraction; the point sits after int_len + exp of them */
    size_t nd = int_len + frac_len;
    char *d = malloc(nd + 1);
    if (d == NULL)
        return BP_COUNT_NOMEM;
    memcpy(d, s + int_start, int_len);
    memcpy(d + int_len, s + frac_start, frac_len);
    size_t f = 0, l = nd;
    while (f < nd && d[f] == '0')
        f++;
    if (f == nd) { /* zero, whatever its sign or scale */
        free(d);
        *out = bp_count_dup("0", 1);
        *outlen = 1;
        return *out ? BP_COUNT_OK : BP_COUNT_NOMEM;
    }
    while (d[l - 1] == '0')
        l--;
    long long dw = (long long)int_len + exp - 1 - (long long)f; /* the first digit's power of ten */
    if (dw > NUMERIC_DWEIGHT_MAX) {
        free(d);
        return BP_COUNT_OVERFLOW;
    }
    size_t sig = l - f;
    size_t cap = 4 + sig + (size_t)(dw > 0 ? dw : -dw);
    char *o = malloc(cap), *p = o;
    if (o == NULL) {
        free(d);
        return BP_COUNT_NOMEM;
    }
    if (neg)
        *p++ = '-';
    if (dw >= 0) {
        for (long long j = 0; j <= dw; j++)
            *p++ = (size_t)j < sig ? d[f + (size_t)j] : '0';
        if ((size_t)dw + 1 < sig) {
            *p++ = '.';
            memcpy(p, d + f + (size_t)dw + 1, sig - (size_t)dw - 1);
            p += sig - (size_t)dw - 1;
        }
    } else {
        *p++ = '0';
        *p++ = '.';
        memset(p, '0', (size_t)(-dw - 1));
        p += -dw - 1;
        memcpy(p, d + f, sig);
        p += sig;
    }
    *p = '\0';
    free(d);
    *out = o;
    *outlen = (size_t)(p - o);
    return BP_COUNT_OK;
}

int bp_count_typed(const char *s, size_t n, char **out, size_t *outlen)
{
    static const char *const words[] = {"true", "false", "null"};
    for (size_t i = 0; i < 3; i++) {
        if (n == strlen(words[i]) && memcmp(s, words[i], n) == 0) {
            *outlen = n;
            *out = bp_count_dup(s, n);
            return *out ? 1 : BP_COUNT_NOMEM;
        }
    }
    int rc = bp_count_canon_number(s, n, out, outlen);
    if (rc == BP_COUNT_MALFORMED)
        return 0;
    return rc == BP_COUNT_OK ? 1 : rc;
}


size_t bp_count_json_string(char *dst, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char *p = dst;
    *p++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = (char)c;
        } else if (c < 0x20) {
            *p++ = '\\';
            switch (c) {
            case '\b': *p++ = 'b'; break;
            case '\f': *p++ = 'f'; break;
            case '\n': *p++ = 'n'; break;
            case '\r': *p++ = 'r'; break;
            case '\t': *p++ = 't'; break;
            default:
                *p++ = 'u';
                *p++ = '0';
                *p++ = '0';
                *p++ = hex[c >> 4];
                *p++ = hex[c & 15];
            }
        } else {
            *p++ = (char)c;
        }
    }
    *p++ = '"';
    return (size_t)(p - dst);
}

int bp_count_canon_value(const char *v, size_t vlen, char **out, size_t *outlen)
{
    if (vlen == 0)
        return BP_COUNT_MALFORMED;
    if (v[0] == '-' || (v[0] >= '0' && v[0] <= '9'))
        return bp_count_canon_number(v, vlen, out, outlen);
    if ((vlen == 4 && memcmp(v, "true", 4) == 0) || (vlen == 5 && memcmp(v, "false", 5) == 0) ||
        (vlen == 4 && memcmp(v, "null", 4) == 0)) {
        *outlen = vlen;
        *out = bp_count_dup(v, vlen);
        return *out != NULL ? BP_COUNT_OK : BP_COUNT_NOMEM;
    }
    if (v[0] != '"')
        return BP_COUNT_MALFORMED;
    char *dec = malloc(vlen), *o = NULL;
    size_t dlen;
    int rc = BP_COUNT_NOMEM;
    if (dec == NULL)
        goto done;
    rc = BP_COUNT_MALFORMED;
    /* jsonb refuses \u0000 (text cannot hold NUL): no counter to name */
    if (bp_json_string_decode(v, vlen, dec, &dlen) != 0 || memchr(dec, '\0', dlen) != NULL)
        goto done;
    rc = BP_COUNT_NOMEM;
    if ((o = malloc(2 + 6 * dlen + 1)) == NULL)
        goto done;
    *outlen = bp_count_json_string(o, dec, dlen);
    o[*outlen] = '\0';
    *out = o;
    rc = BP_COUNT_OK;
done:
    free(dec);
    return rc;
}

int bp_count_hash(char kind, const char *key, size_t klen, const char *value, size_t vlen,
                  char out[BP_COUNT_HASH_LEN])
{
    char len[24];
    size_t lenlen = 0;
    if (key != NULL) {
        if (bp_utf8_valid_prefix(key, klen) != klen)
            return -1;
        size_t chars = 0;
        for (size_t i = 0; i < klen; i++)
            chars += ((unsigned char)key[i] & 0xC0) != 0x80; /* every byte but a continuation byte */
        lenlen = (size_t)snprintf(len, sizeof(len), "%zu:", chars);
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1;
    ok = ok && EVP_DigestUpdate(ctx, &kind, 1) == 1;
    if (ok && key != NULL)
        ok = EVP_DigestUpdate(ctx, len, lenlen) == 1 && EVP_DigestUpdate(ctx, key, klen) == 1;
    else if (ok)
        ok = EVP_DigestUpdate(ctx, "-", 1) == 1;
    if (ok)
        ok = value != NULL ? EVP_DigestUpdate(ctx, value, vlen) == 1 : EVP_DigestUpdate(ctx, "-", 1) == 1;
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 16;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    for (unsigned int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[md[i] >> 4];
        *p++ = hex[md[i] & 15];
    }
    *p = '\0';
    return 0;
}
