/* bp_buf.c - the growable text buffer of bp_buf.h: the one the API's SQL builders and hand-built
 * JSON bodies share (it was two copies: query.c's and read.c's). */
#include "bp_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bp_buf_reserve(bp_buf_t *b, size_t more)
{
    if (b->oom)
        return -1;
    if (more >= (size_t)-1 - b->len) {
        b->oom = 1;
        return -1;
    }
    size_t need = b->len + more + 1;
    if (need <= b->cap)
        return 0;
    /* 1 KiB holds most statements and small bodies at once; doubling keeps appends linear */
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < need)
        cap = cap > (size_t)-1 / 2 ? need : cap * 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void bp_buf_add(bp_buf_t *b, const char *s, size_t n)
{
    if (bp_buf_reserve(b, n) != 0)
        return;
    if (n > 0)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void bp_buf_puts(bp_buf_t *b, const char *s)
{
    bp_buf_add(b, s, strlen(s));
}

void bp_buf_printf(bp_buf_t *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap); /* the length first: short fragments, twice is cheap */
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if (bp_buf_reserve(b, (size_t)n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void bp_buf_json_string(bp_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    bp_buf_add(b, "\"", 1);
    size_t run = 0; /* start of the bytes copied as they are */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        bp_buf_add(b, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        switch (c) {
        case '"': bp_buf_add(b, "\\\"", 2); break;
        case '\\': bp_buf_add(b, "\\\\", 2); break;
        case '\n': bp_buf_add(b, "\\n", 2); break;
        case '\r': bp_buf_add(b, "\\r", 2); break;
        case '\t': bp_buf_add(b, "\\t", 2); break;
        default: bp_buf_add(b, esc, 6); break;
        }
    }
    bp_buf_add(b, s + run, n - run);
    bp_buf_add(b, "\"", 1);
}

char *bp_buf_take(bp_buf_t *b)
{
    char *text = b->oom ? NULL : b->p;
    if (text == NULL)
        free(b->p);
    memset(b, 0, sizeof(*b));
    return text;
}

void bp_buf_free(bp_buf_t *b)
{
    if (b == NULL)
        return;
    free(b->p);
    memset(b, 0, sizeof(*b));
}
