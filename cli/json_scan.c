/* json_scan.c - finding values in JSON text without parsing it into a tree (see json_scan.h).
 * Skipping a value only tracks strings and bracket depth, so it needs no recursion; it checks that
 * brackets match in kind, not every detail of the grammar (the text comes from the API, or is a
 * file that the API validates anyway). */
#include <string.h>

#include "json_scan.h"

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

int cli_json_member(const char *text, size_t len, const char *name, const char **value, size_t *vlen)
{
    size_t nlen = strlen(name);
    size_t i = skip_ws(text, len, 0);
    if (i >= len || text[i] != '{')
        return -1;
    i = skip_ws(text, len, i + 1);
    while (i < len && text[i] == '"') {
        size_t kend = skip_string(text, len, i);
        if (kend == 0)
            return -1;
        int match = kend - i - 2 == nlen && memcmp(text + i + 1, name, nlen) == 0;
        i = skip_ws(text, len, kend);
        if (i >= len || text[i] != ':')
            return -1;
        i = skip_ws(text, len, i + 1);
        size_t vend = skip_value(text, len, i);
        if (vend == 0)
            return -1;
        if (match) {
            *value = text + i;
            *vlen = vend - i;
            return 0;
        }
        i = skip_ws(text, len, vend);
        if (i < len && text[i] == ',')
            i = skip_ws(text, len, i + 1);
        else
            break;
    }
    return -1;
}

int cli_json_array_next(const char *array, size_t alen, size_t *pos, const char **elem, size_t *elen)
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
