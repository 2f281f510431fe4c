/* bp_json_scan.c - finding values in JSON text without parsing it into a tree (see bp_json_scan.h).
 * Skipping a value only tracks strings and bracket depth, so it needs no recursion; it checks that
 * brackets match in kind, not every detail of the grammar. */
#include "bp_json_scan.h"

#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 4096

static size_t skip_ws(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* Index just past the string starting at s[i] == '"', or 0 when it does not end. */
static size_t skip_string(const char *s, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return 0;
}

/* Index just past the value starting at s[i] (no leading space), or 0 when it is malformed. */
static size_t skip_value(const char *s, size_t len, size_t i)
{
    if (i >= len)
        return 0;
    if (s[i] == '"')
        return skip_string(s, len, i);
    if (s[i] != '{' && s[i] != '[') {
        /* a number or a literal: up to the next delimiter */
        size_t start = i;
        while (i < len && strchr(",]} \t\r\n", s[i]) == NULL)
            i++;
        return i > start ? i : 0;
    }
    char stack[MAX_DEPTH];
    int depth = 0;
    while (i < len) {
        char c = s[i];
        if (c == '"') {
            if ((i = skip_string(s, len, i)) == 0)
                return 0;
            continue;
        }
        if (c == '{' || c == '[') {
            if (depth == MAX_DEPTH)
                return 0;
            stack[depth++] = c == '{' ? '}' : ']';
        } else if (c == '}' || c == ']') {
            if (depth == 0 || stack[depth - 1] != c)
                return 0;
            if (--depth == 0)
                return i + 1;
        }
        i++;
    }
    return 0;
}

static int hex4(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[k];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return 0;
}

/* Decode the escape or byte at lit[*i] (i < end, between the quotes) into piece[0..*plen), advancing *i.
 * -1 when an escape does not decode (a lone surrogate, a bad \u). */
static int next_piece(const char *lit, size_t *i, size_t end, char piece[4], size_t *plen)
{
    *plen = 1;
    if (lit[*i] != '\\') {
        piece[0] = lit[(*i)++];
        return 0;
    }
    if (*i + 1 >= end)
        return -1;
    char e = lit[*i + 1];
    *i += 2;
    const char *simple = strchr("\"\\/bfnrt", e);
    if (e != '\0' && simple != NULL) {
        piece[0] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
        return 0;
    }
    if (e != 'u')
        return -1;
    uint32_t cp, lo;
    if (*i + 4 > end || hex4(lit + *i, &cp) != 0)
        return -1;
    *i += 4;
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (*i + 6 > end || lit[*i] != '\\' || lit[*i + 1] != 'u' || hex4(lit + *i + 2, &lo) != 0 || lo < 0xdc00 ||
            lo > 0xdfff)
            return -1;
        *i += 6;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    } else if (cp >= 0xdc00 && cp <= 0xdfff) {
        return -1;
    }
    if (cp < 0x80) {
        piece[0] = (char)cp;
    } else if (cp < 0x800) {
        piece[0] = (char)(0xc0 | cp >> 6);
        piece[1] = (char)(0x80 | (cp & 0x3f));
        *plen = 2;
    } else if (cp < 0x10000) {
        piece[0] = (char)(0xe0 | cp >> 12);
        piece[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        piece[2] = (char)(0x80 | (cp & 0x3f));
        *plen = 3;
    } else {
        piece[0] = (char)(0xf0 | cp >> 18);
        piece[1] = (char)(0x80 | (cp >> 12 & 0x3f));
        piece[2] = (char)(0x80 | (cp >> 6 & 0x3f));
        piece[3] = (char)(0x80 | (cp & 0x3f));
        *plen = 4;
    }
    return 0;
}

/* Whether the string literal lit[0..llen) (with its quotes) decodes to name[0..nlen). An escape that
 * does not decode (a lone surrogate, a bad \u) never matches. */
static int literal_equals(const char *lit, size_t llen, const char *name, size_t nlen)
{
    size_t i = 1, o = 0, end = llen - 1; /* between the quotes */
    while (i < end) {
        char piece[4];
        size_t plen;
        if (next_piece(lit, &i, end, piece, &plen) != 0)
            return 0;
        if (o + plen > nlen || memcmp(name + o, piece, plen) != 0)
            return 0;
        o += plen;
    }
    return o == nlen;
}

int bp_json_string_decode(const char *lit, size_t llen, char *out, size_t *outlen)
{
    if (llen < 2 || lit[0] != '"' || lit[llen - 1] != '"')
        return -1;
    size_t i = 1, o = 0, end = llen - 1;
    while (i < end) {
        char piece[4];
        size_t plen;
        if (next_piece(lit, &i, end, piece, &plen) != 0)
            return -1;
        memcpy(out + o, piece, plen);
        o += plen;
    }
    *outlen = o;
    return 0;
}

int bp_json_object_next(const char *object, size_t olen, size_t *pos, const char **name, size_t *nlen,
                        const char **value, size_t *vlen)
{
    size_t i = *pos;
    if (i == 0) {
        if (olen == 0 || object[0] != '{')
            return -1;
        i = skip_ws(object, olen, 1);
        if (i < olen && object[i] == '}') {
            *pos = i;
            return 0;
        }
    } else {
        i = skip_ws(object, olen, i);
        if (i < olen && object[i] == '}')
            return 0;
        if (i >= olen || object[i] != ',')
            return -1;
        i = skip_ws(object, olen, i + 1);
    }
    if (i >= olen || object[i] != '"')
        return -1;
    size_t kend = skip_string(object, olen, i);
    if (kend == 0)
        return -1;
    size_t j = skip_ws(object, olen, kend);
    if (j >= olen || object[j] != ':')
        return -1;
    j = skip_ws(object, olen, j + 1);
    size_t vend = skip_value(object, olen, j);
    if (vend == 0)
        return -1;
    *name = object + i;
    *nlen = kend - i;
    *value = object + j;
    *vlen = vend - j;
    *pos = vend;
    return 1;
}

int bp_json_member(const char *text, size_t len, const char *name, const char **value, size_t *vlen)
{
    size_t want = strlen(name);
    size_t i = skip_ws(text, len, 0);
    if (i >= len || text[i] != '{')
        return -1;
    const char *object = text + i, *n, *v;
    size_t olen = len - i, pos = 0, nl, vl;
    int rc;
    while ((rc = bp_json_object_next(object, olen, &pos, &n, &nl, &v, &vl)) == 1) {
        if (literal_equals(n, nl, name, want)) {
            *value = v;
            *vlen = vl;
            return 0;
        }
    }
    return -1;
}

int bp_json_array_next(const char *array, size_t alen, size_t *pos, const char **elem, size_t *elen)
{
    size_t i = *pos;
    if (i == 0) {
        if (alen == 0 || array[0] != '[')
            return -1;
        i = skip_ws(array, alen, 1);
        if (i < alen && array[i] == ']') {
            *pos = i;
            return 0;
        }
    } else {
        i = skip_ws(array, alen, i);
        if (i < alen && array[i] == ']')
            return 0;
        if (i >= alen || array[i] != ',')
            return -1;
        i = skip_ws(array, alen, i + 1);
    }
    size_t end = skip_value(array, alen, i);
    if (end == 0)
        return -1;
    *elem = array + i;
    *elen = end - i;
    *pos = end;
    return 1;
}
