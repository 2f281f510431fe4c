/* table.c - aligned text tables and terminal-safe text for the CLI's output (table.h).
 * Widths count code points: every cell is valid UTF-8, since callers pass text through cli_escape. */
#include "table.h"

#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "bp_utf8.h"

struct cli_table {
    size_t ncols;
    char **cells; /* rows * ncols, row 0 is the header */
    size_t rows, cap;
    unsigned char *right;
};

size_t cli_text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

cli_table_t *cli_table_new(size_t ncols, const char *const *headers)
{
    cli_table_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->ncols = ncols;
    t->right = calloc(ncols, 1);
    if (t->right == NULL || cli_table_add(t, headers) != 0) {
        cli_table_free(t);
        return NULL;
    }
    return t;
}

void cli_table_align_right(cli_table_t *t, size_t col)
{
    if (col < t->ncols)
        t->right[col] = 1;
}

int cli_table_add(cli_table_t *t, const char *const *cells)
{
    if (t->rows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **nc = realloc(t->cells, cap * t->ncols * sizeof(*nc));
        if (nc == NULL)
            return -1;
        t->cells = nc;
        t->cap = cap;
    }
    char **row = t->cells + t->rows * t->ncols;
    for (size_t c = 0; c < t->ncols; c++) {
        row[c] = strdup(cells[c] ? cells[c] : "-");
        if (row[c] == NULL) {
            while (c-- > 0)
                free(row[c]);
            return -1;
        }
    }
    t->rows++;
    return 0;
}

size_t cli_table_rows(const cli_table_t *t)
{
    return t->rows > 0 ? t->rows - 1 : 0;
}

/* Print at most max code points of s (all when max is 0), ending in "..." when cut. */
static void print_cut(FILE *out, const char *s, size_t max)
{
    if (max == 0 || cli_text_width(s) <= max) {
        fputs(s, out);
        return;
    }
    size_t keep = max > 3 ? max - 3 : 0, n = 0;
    const char *p = s;
    for (; *p; p++) {
        if (((unsigned char)*p & 0xC0) != 0x80 && n++ == keep)
            break;
    }
    fwrite(s, 1, (size_t)(p - s), out);
    fputs("...", out);
}

void cli_table_print(const cli_table_t *t, FILE *out, int width)
{
    size_t *w = calloc(t->ncols, sizeof(*w));
    if (w == NULL)
        return;
    for (size_t r = 0; r < t->rows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t cw = cli_text_width(t->cells[r * t->ncols + c]);
            if (cw > w[c])
                w[c] = cw;
        }
    size_t used = 0;
    for (size_t c = 0; c + 1 < t->ncols; c++)
        used += w[c] + 2;
    size_t last_max = 0;
    if (width > 0)
        last_max = (size_t)width > used + 10 ? (size_t)width - used : 10;
    for (size_t r = 0; r < t->rows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            size_t pad = w[c] - cli_text_width(s);
            int last = c + 1 == t->ncols;
            if (t->right[c])
                fprintf(out, "%*s", (int)pad, "");
            if (last)
                print_cut(out, s, last_max);
            else
                fputs(s, out);
            if (!last)
                fprintf(out, "%*s", (int)(t->right[c] ? 2 : pad + 2), "");
        }
        fputc('\n', out);
    }
    free(w);
}

void cli_table_free(cli_table_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->rows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->right);
    free(t);
}

int cli_term_width(FILE *out)
{
    struct winsize ws;
    int fd = fileno(out);
    if (fd < 0 || !isatty(fd))
        return 0;
    if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 80;
}

char *cli_escape(const void *buf, size_t len, int keep_newlines)
{
    const char *s = buf;
    char *out = malloc(len * 4 + 1); /* worst case: every byte becomes \xNN (C1: 2 bytes to 6) */
    if (out == NULL)
        return NULL;
    size_t o = 0, i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            size_t ok = bp_utf8_valid_prefix(s + i, len - i < 4 ? len - i : 4);
            size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            if (ok >= need && c == 0xC2 && (unsigned char)s[i + 1] < 0xA0) {
                /* C1 controls (U+0080..U+009F): some terminals act on them */
                o += (size_t)snprintf(out + o, 7, "\\u%04x", (unsigned char)s[i + 1]);
                i += 2;
                continue;
            }
            if (ok >= need) {
                memcpy(out + o, s + i, need);
                o += need;
                i += need;
                continue;
            }
        } else if (c >= 0x20 && c != 0x7F) {
            out[o++] = (char)c;
            i++;
            continue;
        } else if (keep_newlines && (c == '\n' || c == '\t')) {
            out[o++] = (char)c;
            i++;
            continue;
        }
        o += (size_t)snprintf(out + o, 5, "\\x%02x", c);
        i++;
    }
    out[o] = '\0';
    return out;
}

int cli_json_set_bytes(json_t *obj, const char *name, const void *buf, size_t len)
{
    if (buf == NULL)
        return json_object_set_new(obj, name, json_null());
    if (bp_utf8_valid_prefix(buf, len) == len && memchr(buf, '\0', len) == NULL)
        return json_object_set_new(obj, name, json_stringn(buf, len));
    if (len > ((size_t)1 << 30))
        return -1;
    char *b64 = malloc(4 * ((len + 2) / 3) + 1);
    if (b64 == NULL)
        return -1;
    EVP_EncodeBlock((unsigned char *)b64, buf, (int)len);
    char key[128];
    snprintf(key, sizeof(key), "%s_base64", name);
    int rc = json_object_set_new(obj, name, json_null()) || json_object_set_new(obj, key, json_string(b64))
                 ? -1
                 : 0;
    free(b64);
    return rc;
}

static void newline(FILE *out, int depth)
{
    fputc('\n', out);
    for (int i = 0; i < depth; i++)
        fputs("  ", out);
}

void cli_print_json_pretty(FILE *out, const char *text, size_t len)
{
    int depth = 0, in_string = 0, escaped = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if ((unsigned char)c == 0xC2 && i + 1 < len && (unsigned char)text[i + 1] >= 0x80 &&
                (unsigned char)text[i + 1] < 0xA0) {
                fprintf(out, "\\u%04x", (unsigned char)text[++i]); /* a C1 control, as its JSON escape */
                continue;
            }
            fputc(c, out);
            if (escaped)
                escaped = 0;
            else if (c == '\\')
                escaped = 1;
            else if (c == '"')
                in_string = 0;
            continue;
        }
        switch (c) {
        case ' ':
        case '\t':
        case '\n':
        case '\r':
            break;
        case '"':
            in_string = 1;
            fputc(c, out);
            break;
        case '{':
        case '[': {
            /* an empty object or array stays on one line */
            size_t j = i + 1;
            while (j < len && strchr(" \t\r\n", text[j]) != NULL)
                j++;
            if (j < len && (text[j] == '}' || text[j] == ']')) {
                fputc(c, out);
                fputc(text[j], out);
                i = j;
                break;
            }
            fputc(c, out);
            newline(out, ++depth);
            break;
        }
        case '}':
        case ']':
            newline(out, depth > 0 ? --depth : 0);
            fputc(c, out);
            break;
        case ',':
            fputc(c, out);
            newline(out, depth);
            break;
        case ':':
            fputs(": ", out);
            break;
        default:
            fputc(c, out);
        }
    }
    fputc('\n', out);
}
