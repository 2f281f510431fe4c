/* cmd_read.c - batchpipe get and query: one object (GET /api/v1/objects/{id}/) or the objects whose
 * data matches key=value pairs (GET /api/v1/objects/?data=...), as tables or as the API's JSON. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bp_utf8.h"
#include "cli.h"
#include "http_client.h"
#include "bp_json_scan.h"
#include "table.h"

#define ID_MAX_BYTES 65536
#define LIMIT_DEFAULT 100
#define LIMIT_MAX 100000
#define PAGE_SIZE_MAX 1000 /* the API's default BP_PAGE_SIZE_MAX */
#define FILTER_PAIRS_MAX 64
#define ID_COLUMN_MAX 36   /* on a terminal, longer ids are cut */

static const char get_usage[] =
    "usage: batchpipe [settings] get [--json] OBJECT_ID\n"
    "Show one object of BP_API_URL (GET /api/v1/objects/{object_id}/): its ids and times, then its data\n"
    "as a key/value table. A string value that could be mistaken for another type (\"42\", \"true\", \"\",\n"
    "one with surrounding spaces) is shown in JSON quotes; every other value as it is.\n"
    "  --json   print the API's JSON exactly as it came\n"
    "Exit status: 0 found, 1 not found or the API failed, 2 usage error.\n";

static const char query_usage[] =
    "usage: batchpipe [settings] query [OPTIONS] [KEY=VALUE | KEY:=JSON]...\n"
    "List the objects of BP_API_URL whose data has every pair given (GET /api/v1/objects/?data={...}),\n"
    "in insertion order, following the API's next links.\n"
    "  KEY=VALUE    the string VALUE:   color=red   size=42 (the string \"42\")\n"
    "  KEY:=JSON    a typed JSON value: size:=42   in_stock:=true   price:=9.99   note:=null\n"
    "               size:='\"42\"' (a JSON string)\n"
    "               (numbers compare by value; see docs/QUERIES.md)\n"
    "Options:\n"
    "  --batch ID   only the objects of batch ID\n"
    "  --limit N    at most N objects, 1 to 100000 (default 100)\n"
    "  --json       one JSON array of the objects, each exactly as the API sent it, instead of the table\n"
    "The table shows object_id, batch_id and the data as key=value (strings that could be mistaken for\n"
    "another type in JSON quotes), cut to the terminal's width on a terminal, then \"N of COUNT objects\".\n"
    "Exit status: 0 success (also with no match), 1 the API refused or failed, 2 usage error.\n";

/* ---------------------------------------------------------------------------------------------
 * Shared pieces.
 */

/* Print s to f in at most `cols` columns: cut at a code point with "..." when longer, padded with spaces
 * to `pad` columns (0: no padding). Control characters become '?', so nothing reaches the terminal
 * as an escape sequence. */
static void put_cell(FILE *f, const char *s, size_t cols, size_t pad)
{
    size_t width = cli_text_width(s);
    size_t shown = 0;
    int cut = width > cols;
    size_t room = cut ? (cols > 3 ? cols - 3 : 0) : width;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        int lead = (*c & 0xc0) != 0x80;
        if (lead && shown == room)
            break;
        shown += lead;
        fputc(*c < 0x20 || *c == 0x7f ? '?' : *c, f);
    }
    if (cut) {
        for (size_t i = room; i < cols && i < room + 3; i++, shown++)
            fputc('.', f);
    }
    for (; shown < pad; shown++)
        fputc(' ', f);
}

/* 1 when a string would be mistaken for something else if shown bare. */
static int ambiguous(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || s[0] == '"' || s[0] == ' ' || s[n - 1] == ' ')
        return 1;
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return 1;
    json_t *as_json = json_loads(s, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL);
    int other = as_json != NULL;
    json_decref(as_json);
    return other;
}

/* A value as the tables show it: a string bare unless ambiguous (then as a JSON string), a number as
 * the API wrote it (raw, rawlen: its bytes in the answer; jansson would show 19.99 as
 * 19.989999999999998), anything else as compact JSON. Caller frees. */
static char *show_value(const json_t *v, const char *raw, size_t rawlen)
{
    if (json_is_string(v) && !ambiguous(json_string_value(v)))
        return strdup(json_string_value(v));
    if (json_is_number(v) && raw != NULL && rawlen > 0 && (raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')))
        return strndup(raw, rawlen);
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    return text != NULL ? text : strdup("?");
}

/* A key for "key=value": bare unless ambiguous or holding '=' or a space. Caller frees. */
static char *show_key(const char *key)
{
    if (!ambiguous(key) && strpbrk(key, "= ") == NULL)
        return strdup(key);
    json_t *s = json_string(key);
    char *text = s != NULL ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
    json_decref(s);
    return text != NULL ? text : strdup("?");
}

/* The raw bytes of the value of the next pair of an object's data (walk: data and pos from
 * pairs_start); *raw = NULL when they cannot be found (then the parsed value is shown). */
typedef struct raw_pairs {
    const char *data;
    size_t dlen, pos;
    int ok;
} raw_pairs_t;

static void pairs_start(raw_pairs_t *w, const char *object, size_t len)
{
    w->pos = 0;
    w->ok = object != NULL && bp_json_member(object, len, "data", &w->data, &w->dlen) == 0 &&
            w->data[0] == '[';
}

static void pairs_next(raw_pairs_t *w, const char **raw, size_t *rawlen)
{
    const char *pair;
    size_t plen;
    *raw = NULL;
    *rawlen = 0;
    if (!w->ok || bp_json_array_next(w->data, w->dlen, &w->pos, &pair, &plen) != 1) {
        w->ok = 0;
        return;
    }
    if (bp_json_member(pair, plen, "value", raw, rawlen) != 0)
        *raw = NULL;
}

static const char *str_member(const json_t *obj, const char *name)
{
    const char *s = json_string_value(json_object_get(obj, name));
    return s != NULL ? s : "";
}

/* The error line of a request that did not succeed; returns 1 (the exit status). */
static int api_failed(const char *cmd, const cli_http_response_t *resp, const char *url)
{
    char *why = cli_http_problem_text(resp, url);
    if (resp->status == 0)
        fprintf(stderr, "batchpipe %s: %s\n", cmd, why ? why : "out of memory");
    else
        fprintf(stderr, "batchpipe %s: the API answered %ld: %s\n", cmd, resp->status,
                why ? why : "out of memory");
    free(why);
    return 1;
}

/* ---------------------------------------------------------------------------------------------
 * get
 */

static void print_object(const json_t *obj, const char *raw_obj, size_t raw_len)
{
    printf("object_id:  %s\n", str_member(obj, "object_id"));
    printf("batch_id:   %s\n", str_member(obj, "batch_id"));
    printf("created_at: %s\n", str_member(obj, "created_at"));
    printf("updated_at: %s\n", str_member(obj, "updated_at"));
    const json_t *data = json_object_get(obj, "data");
    size_t n = json_is_array(data) ? json_array_size(data) : 0;
    if (n == 0) {
        printf("data:       (none)\n");
        return;
    }
    char **keys = calloc(n, sizeof(*keys));
    char **values = calloc(n, sizeof(*values));
    size_t width = 3;
    raw_pairs_t walk;
    pairs_start(&walk, raw_obj, raw_len);
    for (size_t i = 0; keys != NULL && values != NULL && i < n; i++) {
        const json_t *pair = json_array_get(data, i);
        const json_t *key = json_object_get(pair, "key");
        const char *raw;
        size_t rawlen;
        pairs_next(&walk, &raw, &rawlen);
        keys[i] = json_is_string(key) ? show_key(json_string_value(key)) : show_value(key, NULL, 0);
        values[i] = show_value(json_object_get(pair, "value"), raw, rawlen);
        if (keys[i] != NULL && cli_text_width(keys[i]) > width)
            width = cli_text_width(keys[i]);
    }
    if (width > 40)
        width = 40;
    printf("\n");
    put_cell(stdout, "KEY", width, width + 2);
    printf("VALUE\n");
    for (size_t i = 0; keys != NULL && values != NULL && i < n; i++) {
        const char *key = keys[i] ? keys[i] : "?";
        put_cell(stdout, key, (size_t)-1, width);
        printf("  ");
        put_cell(stdout, values[i] ? values[i] : "?", (size_t)-1, 0);
        putchar('\n');
    }
    for (size_t i = 0; i < n; i++) {
        free(keys ? keys[i] : NULL);
        free(values ? values[i] : NULL);
    }
    free(keys);
    free(values);
}

int cli_get(const bp_config_t *cfg, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("%s", get_usage);
        return 0;
    }
    int as_json = 0, only_ids = 0;
    const char *id = NULL;
    for (int i = 1; i < argc; i++) {
        if (!only_ids && strcmp(argv[i], "--") == 0) {
            only_ids = 1;
        } else if (!only_ids && strcmp(argv[i], "--json") == 0) {
            as_json = 1;
        } else if (!only_ids && argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "batchpipe get: unknown option %s (see batchpipe get --help)\n", argv[i]);
            return 2;
        } else if (id != NULL) {
            fprintf(stderr, "batchpipe get: takes one OBJECT_ID (see batchpipe get --help)\n");
            return 2;
        } else {
            id = argv[i];
        }
    }
    if (id == NULL || id[0] == '\0' || strlen(id) > ID_MAX_BYTES) {
        fprintf(stderr, "batchpipe get: %s\n", id == NULL    ? "which object? (batchpipe get OBJECT_ID)"
                                               : id[0] == '\0' ? "the OBJECT_ID is empty"
                                                               : "the OBJECT_ID is longer than 64 KiB");
        return 2;
    }
    char err[256];
    char *escaped = cli_http_escape(id, strlen(id));
    size_t plen = (escaped ? strlen(escaped) : 0) + 32;
    char *path = malloc(plen);
    char *url = NULL;
    if (escaped != NULL && path != NULL) {
        snprintf(path, plen, "/api/v1/objects/%s/", escaped);
        url = cli_http_url(cfg, path, err, sizeof(err));
    } else {
        snprintf(err, sizeof(err), "out of memory");
    }
    free(escaped);
    free(path);
    if (url == NULL) {
        fprintf(stderr, "batchpipe get: %s\n", err);
        return 2;
    }
    if (cli_http_init() != 0) {
        fprintf(stderr, "batchpipe get: libcurl could not be initialized\n");
        free(url);
        return 1;
    }
    cli_http_response_t resp = {0};
    int rc;
    if (cli_http_get(cfg, url, &resp) != 0 || (resp.status != 200 && resp.status != 404)) {
        rc = api_failed("get", &resp, url);
    } else if (resp.status == 404) {
        fprintf(stderr, "batchpipe get: object ");
        put_cell(stderr, id, (size_t)-1, 0);
        fprintf(stderr, " not found\n");
        rc = 1;
    } else if (as_json) {
        fwrite(resp.body, 1, resp.len, stdout);
        putchar('\n');
        rc = 0;
    } else {
        json_t *obj = resp.body != NULL ? cli_http_json(resp.body, resp.len) : NULL;
        if (!json_is_object(obj)) {
            fprintf(stderr, "batchpipe get: the API's answer is not a JSON object\n");
            rc = 1;
        } else {
            print_object(obj, resp.body, resp.len);
            rc = 0;
        }
        json_decref(obj);
    }
    cli_http_response_reset(&resp);
    free(url);
    cli_http_cleanup();
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * query
 */

typedef struct query {
    const bp_config_t *cfg;
    json_t *filter;       /* the data={...} object */
    const char *batch_id; /* --batch, or NULL */
    long limit;
    int as_json;
    /* what came back */
    json_t *rows;         /* the objects, parsed (table) */
    json_t *raw_rows;     /* the same objects' bytes, as JSON strings (table: numbers as sent) */
    json_t *typed_text;   /* key -> the text of a KEY:=JSON value, sent as written */
    FILE *raw;            /* the objects' bytes, comma-separated (--json) */
    char *raw_text;
    size_t raw_len;
    size_t nrows;
    json_t *count;        /* the first page's count (borrowed from first_page) */
    int count_exact;
    json_t *first_page;
} query_t;

/* KEY=VALUE (a string) or KEY:=JSON (a typed scalar) into q->filter. Returns 0 or 2 (usage). */
static int add_pair(query_t *q, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (eq == NULL) {
        fprintf(stderr, "batchpipe query: \"%s\" is not KEY=VALUE or KEY:=JSON (see --help)\n", arg);
        return 2;
    }
    int typed = eq > arg && eq[-1] == ':';
    size_t klen = (size_t)(eq - arg) - (typed ? 1 : 0);
    if (klen == 0) {
        fprintf(stderr, "batchpipe query: \"%s\" has an empty key\n", arg);
        return 2;
    }
    char *key = strndup(arg, klen);
    if (key == NULL) {
        fprintf(stderr, "batchpipe query: out of memory\n");
        return 2;
    }
    if (bp_utf8_valid_prefix(key, klen) != klen) {
        bp_utf8_sanitize(key);
        fprintf(stderr, "batchpipe query: the key %s is not valid UTF-8\n", key);
        free(key);
        return 2;
    }
    json_t *value;
    if (typed) {
        json_error_t jerr;
        value = json_loads(eq + 1, JSON_DECODE_ANY, &jerr);
        if (value == NULL) /* an integer beyond 64 bits: a real, as when a batch is posted */
            value = json_loads(eq + 1, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL);
        if (value == NULL || json_is_object(value) || json_is_array(value)) {
            fprintf(stderr,
                    "batchpipe query: %s:= takes a JSON number, true, false, null or \"string\"%s%s\n", key,
                    value == NULL ? ": " : ", not an object or array", value == NULL ? jerr.text : "");
            json_decref(value);
            free(key);
            return 2;
        }
    } else {
        value = json_string(eq + 1);
        if (value == NULL) {
            fprintf(stderr, "batchpipe query: the value of %s is not valid UTF-8\n", key);
            free(key);
            return 2;
        }
    }
    int rc = 0;
    if (json_object_get(q->filter, key) != NULL) {
        fprintf(stderr, "batchpipe query: the key %s is given twice (one value per key)\n", key);
        rc = 2;
    } else if (json_object_size(q->filter) >= FILTER_PAIRS_MAX) {
        fprintf(stderr, "batchpipe query: at most %d pairs\n", FILTER_PAIRS_MAX);
        rc = 2;
    } else if (json_object_set(q->filter, key, value) != 0 ||
               (typed && json_object_set_new(q->typed_text, key, json_string(eq + 1)) != 0)) {
        fprintf(stderr, "batchpipe query: out of memory\n");
        rc = 2;
    }
    json_decref(value);
    free(key);
    return rc;
}

/* Returns 0, or 2 on a usage error (said). */
static int query_args(query_t *q, int argc, char **argv)
{
    int only_pairs = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *v = NULL;
        int r;
        if (!only_pairs && strcmp(arg, "--") == 0) {
            only_pairs = 1;
        } else if (only_pairs || arg[0] != '-' || arg[1] == '\0') {
            if (add_pair(q, arg) != 0)
                return 2;
        } else if (strcmp(arg, "--json") == 0) {
            q->as_json = 1;
        } else if ((r = cli_option(argc, argv, &i, "--batch", &v)) != 0) {
            if (r < 0 || v[0] == '\0' || strlen(v) > ID_MAX_BYTES) {
                fprintf(stderr, "batchpipe query: --batch takes a batch_id\n");
                return 2;
            }
            q->batch_id = v;
        } else if ((r = cli_option(argc, argv, &i, "--limit", &v)) != 0) {
            long long n;
            if (r < 0 || cli_parse_ll(v, 1, LIMIT_MAX, &n) != 0) {
                fprintf(stderr, "batchpipe query: --limit takes a number from 1 to %d\n", LIMIT_MAX);
                return 2;
            }
            q->limit = n;
        } else {
            fprintf(stderr, "batchpipe query: unknown option %s (see batchpipe query --help)\n", arg);
            return 2;
        }
    }
    return 0;
}

/* The data={...} text: a KEY:=JSON value goes as the user wrote it, so that a number keeps its text
 * (the API compares numbers exactly: 19.99 written back by jansson would be 19.989999999999998).
 * Caller frees; NULL when out of memory. */
static char *filter_text(const query_t *q)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (f == NULL)
        return NULL;
    const char *key;
    json_t *value;
    int first = 1, ok = 1;
    fputc('{', f);
    json_object_foreach(q->filter, key, value)
    {
        json_t *k = json_string(key);
        char *ktext = k != NULL ? json_dumps(k, JSON_ENCODE_ANY) : NULL;
        const char *typed = json_string_value(json_object_get(q->typed_text, key));
        char *vtext = typed != NULL ? NULL : json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
        ok &= ktext != NULL && (typed != NULL || vtext != NULL);
        if (ok)
            fprintf(f, "%s%s:%s", first ? "" : ",", ktext, typed != NULL ? typed : vtext);
        first = 0;
        json_decref(k);
        free(ktext);
        free(vtext);
    }
    fputc('}', f);
    if (fclose(f) != 0 || !ok) {
        free(text);
        return NULL;
    }
    return text;
}

/* The query string of the first page: ?page_size=...&data=...&batch_id=... Caller frees. */
static char *first_query(const query_t *q)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (f == NULL)
        return NULL;
    fprintf(f, "?page_size=%ld", q->limit < PAGE_SIZE_MAX ? q->limit : PAGE_SIZE_MAX);
    if (json_object_size(q->filter) > 0) {
        char *data = filter_text(q);
        char *esc = data != NULL ? cli_http_escape(data, strlen(data)) : NULL;
        fprintf(f, "&data=%s", esc ? esc : "");
        free(data);
        free(esc);
    }
    if (q->batch_id != NULL) {
        char *esc = cli_http_escape(q->batch_id, strlen(q->batch_id));
        fprintf(f, "&batch_id=%s", esc ? esc : "");
        free(esc);
    }
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* Take the rows of one page (up to the limit). Returns 0, or -1 when the page is not what the API
 * sends (said). */
static int take_page(query_t *q, const cli_http_response_t *resp, json_t *page)
{
    const json_t *results = json_object_get(page, "results");
    const char *raw;
    size_t rawlen, pos = 0;
    if (!json_is_array(results) || bp_json_member(resp->body, resp->len, "results", &raw, &rawlen) != 0) {
        fprintf(stderr, "batchpipe query: the API's answer has no results list\n");
        return -1;
    }
    const char *elem;
    size_t elen;
    for (size_t i = 0; i < json_array_size(results) && q->nrows < (size_t)q->limit; i++) {
        if (q->as_json) {
            if (bp_json_array_next(raw, rawlen, &pos, &elem, &elen) != 1) {
                fprintf(stderr, "batchpipe query: the API's results list is malformed\n");
                return -1;
            }
            if (q->nrows > 0)
                fputc(',', q->raw);
            fwrite(elem, 1, elen, q->raw);
        } else {
            json_array_append(q->rows, json_array_get(results, i));
            /* the bytes too, for numbers as sent; a row without them shows jansson's reading */
            json_t *text =
                bp_json_array_next(raw, rawlen, &pos, &elem, &elen) == 1 ? json_stringn(elem, elen) : NULL;
            json_array_append_new(q->raw_rows, text != NULL ? text : json_null());
        }
        q->nrows++;
    }
    return 0;
}

/* GET every page until the limit or the last page. Returns 0 or 1 (said). */
static int fetch(query_t *q)
{
    char err[256];
    char *query = first_query(q);
    char *url = NULL;
    char *path = NULL;
    int rc = 0;
    if (query != NULL && (path = malloc(strlen(query) + 32)) != NULL) {
        sprintf(path, "/api/v1/objects/%s", query);
        url = cli_http_url(q->cfg, path, err, sizeof(err));
    } else {
        snprintf(err, sizeof(err), "out of memory");
    }
    free(query);
    free(path);
    if (url == NULL) {
        fprintf(stderr, "batchpipe query: %s\n", err);
        return 1;
    }
    cli_http_response_t resp = {0};
    /* every page holds at least one row, so the limit bounds the pages; the +1 guards a server
     * whose next link never ends */
    for (long pages = 0; pages <= q->limit; pages++) {
        if (cli_http_get(q->cfg, url, &resp) != 0 || resp.status != 200) {
            rc = api_failed("query", &resp, url);
            break;
        }
        json_t *page = cli_http_json(resp.body, resp.len);
        if (!json_is_object(page)) {
            fprintf(stderr, "batchpipe query: the API's answer is not a JSON object\n");
            json_decref(page);
            rc = 1;
            break;
        }
        if (take_page(q, &resp, page) != 0) {
            json_decref(page);
            rc = 1;
            break;
        }
        if (q->first_page == NULL) {
            q->first_page = json_incref(page);
            q->count = json_object_get(page, "count");
            q->count_exact = json_is_true(json_object_get(page, "count_exact"));
        }
        /* follow next with our own base URL: the link may name another host (BP_PUBLIC_URL), and
         * the API key must only go to BP_API_URL */
        const char *next = json_string_value(json_object_get(page, "next"));
        const char *qmark = next != NULL ? strchr(next, '?') : NULL;
        size_t got = json_array_size(json_object_get(page, "results"));
        char *next_url = NULL;
        if (qmark != NULL && got > 0 && q->nrows < (size_t)q->limit &&
            (path = malloc(strlen(qmark) + 32)) != NULL) {
            sprintf(path, "/api/v1/objects/%s", qmark);
            next_url = cli_http_url(q->cfg, path, err, sizeof(err));
            free(path);
        }
        json_decref(page);
        free(url);
        url = next_url;
        if (url == NULL)
            break;
    }
    cli_http_response_reset(&resp);
    free(url);
    return rc;
}

static void print_table(const query_t *q)
{
    int tty = isatty(STDOUT_FILENO);
    size_t width = (size_t)cli_term_width(stdout); /* 0 off a terminal */
    size_t wid = 9, wbatch = 8;
    for (size_t i = 0; i < q->nrows; i++) {
        const json_t *row = json_array_get(q->rows, i);
        size_t a = cli_text_width(str_member(row, "object_id")), b = cli_text_width(str_member(row, "batch_id"));
        wid = a > wid ? a : wid;
        wbatch = b > wbatch ? b : wbatch;
    }
    if (tty) {
        wid = wid < ID_COLUMN_MAX ? wid : ID_COLUMN_MAX;
        wbatch = wbatch < ID_COLUMN_MAX ? wbatch : ID_COLUMN_MAX;
    }
    /* on a terminal, every line fits in width - 1 columns (no wrapping): the id columns shrink when
     * the data column would get fewer than 10; off a terminal nothing is cut */
    size_t wdata = (size_t)-1;
    if (width > 0) {
        size_t room = width > 1 + 4 + 10 + 16 ? width - 1 - 4 - 10 : 16; /* for both id columns */
        if (wid + wbatch > room) {
            size_t half = room / 2;
            if (wid > half && wbatch > half)
                wid = wbatch = half;
            else if (wid > half)
                wid = room - wbatch;
            else
                wbatch = room - wid;
        }
        wdata = width > 1 + wid + wbatch + 4 + 10 ? width - 1 - wid - wbatch - 4 : 10;
    }
    if (q->nrows > 0) {
        put_cell(stdout, "OBJECT_ID", wid, wid + 2);
        put_cell(stdout, "BATCH_ID", wbatch, wbatch + 2);
        printf("DATA\n");
    }
    for (size_t i = 0; i < q->nrows; i++) {
        const json_t *row = json_array_get(q->rows, i);
        put_cell(stdout, str_member(row, "object_id"), wid, wid + 2);
        put_cell(stdout, str_member(row, "batch_id"), wbatch, wbatch + 2);
        char *data = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&data, &size);
        const json_t *pairs = json_object_get(row, "data");
        const json_t *raw_row = json_array_get(q->raw_rows, i);
        raw_pairs_t walk;
        pairs_start(&walk, json_string_value(raw_row), json_string_length(raw_row));
        for (size_t k = 0; f != NULL && k < json_array_size(pairs); k++) {
            const json_t *pair = json_array_get(pairs, k);
            const json_t *key = json_object_get(pair, "key");
            const char *raw;
            size_t rawlen;
            pairs_next(&walk, &raw, &rawlen);
            char *ks = json_is_string(key) ? show_key(json_string_value(key)) : show_value(key, NULL, 0);
            char *vs = show_value(json_object_get(pair, "value"), raw, rawlen);
            fprintf(f, "%s%s=%s", k ? " " : "", ks ? ks : "?", vs ? vs : "?");
            free(ks);
            free(vs);
        }
        if (f != NULL && fclose(f) == 0) {
            put_cell(stdout, data, wdata, 0);
            free(data);
        }
        putchar('\n');
    }
    if (json_is_integer(q->count))
        printf("%zu of %s%lld objects\n", q->nrows, q->count_exact ? "" : "about ",
               (long long)json_integer_value(q->count));
    else
        printf("%zu objects\n", q->nrows);
}

int cli_query(const bp_config_t *cfg, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("%s", query_usage);
        return 0;
    }
    query_t q = {.cfg = cfg, .limit = LIMIT_DEFAULT, .filter = json_object(), .rows = json_array(),
                 .raw_rows = json_array(), .typed_text = json_object()};
    int rc = q.filter != NULL && q.rows != NULL && q.raw_rows != NULL && q.typed_text != NULL
                 ? query_args(&q, argc, argv)
                 : 1;
    if (rc == 0 && q.as_json && (q.raw = open_memstream(&q.raw_text, &q.raw_len)) == NULL)
        rc = 1;
    if (rc == 0 && cli_http_init() != 0) {
        fprintf(stderr, "batchpipe query: libcurl could not be initialized\n");
        rc = 1;
    } else if (rc == 0) {
        rc = fetch(&q);
        cli_http_cleanup();
    }
    if (q.raw != NULL && fclose(q.raw) != 0 && rc == 0) {
        fprintf(stderr, "batchpipe query: out of memory\n");
        rc = 1;
    }
    if (rc == 0 && q.as_json) {
        putchar('[');
        fwrite(q.raw_text, 1, q.raw_len, stdout);
        printf("]\n");
    }
    else if (rc == 0)
        print_table(&q);
    free(q.raw_text);
    json_decref(q.first_page);
    json_decref(q.rows);
    json_decref(q.raw_rows);
    json_decref(q.typed_text);
    json_decref(q.filter);
    return rc;
}
