/* query.c - filters and page parameters of the read path, and the SQL they become (cursors: cursor.c).
 * Pure logic (jansson only): the handlers in read_*.c parse with it, then hand the SQL to the pool. */
#include "query.h"

#include "bp_buf.h"
#include "bp_count_key.h"
#include "bp_json_scan.h"
#include "bp_payload.h"
#include "bp_utf8.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static void set_error(bp_query_error_t *e, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_error(bp_query_error_t *e, const char *param, const char *fmt, ...)
{
    e->param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    /* messages quote client text (cut at a byte count) and jansson's: keep them valid UTF-8 */
    bp_utf8_sanitize(e->message);
}

/* ---- filters ---- */

/* A query-string text must be UTF-8 without NUL to become a JSON string and a SQL parameter. */
static int check_text(const char *param, const char *s, size_t n, bp_query_error_t *e)
{
    if (n > BP_QUERY_FILTER_MAX_BYTES) {
        set_error(e, param, "%s: longer than %d bytes", param, BP_QUERY_FILTER_MAX_BYTES);
        return -1;
    }
    if (memchr(s, '\0', n) != NULL) {
        set_error(e, param, "%s: must not contain a NUL character", param);
        return -1;
    }
    json_t *probe = json_stringn(s, n); /* NULL when not valid UTF-8 */
    if (probe == NULL) {
        set_error(e, param, "%s: is not valid UTF-8", param);
        return -1;
    }
    json_decref(probe);
    return 0;
}

/* Numbers go into the containment JSON as the client wrote them (the lexeme's bytes): jsonb compares
 * numerics exactly and by value, so 1e2 finds a stored 100 and 19.99 finds 19.99 but not
 * 19.989999999999998. jansson only validates: its tree would have turned each number into a double or
 * an int64 and written it back respelt. Every other scalar and each key is copied as written too
 * (jsonb decodes the escapes of a string as jansson does). */

/* Parse JSON text for validation; an integer beyond int64 becomes a double, as the payload parser
 * does (the tree's numbers are never written out). */
static json_t *load(const char *s, size_t n, size_t flags, json_error_t *jerr)
{
    json_t *v = json_loadb(s, n, flags, jerr);
    if (v == NULL && strstr(jerr->text, "too big integer") != NULL)
        v = json_loadb(s, n, flags | JSON_DECODE_INT_AS_REAL, jerr);
    return v;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* A number the database cannot store (bp_payload_number_fits) matches nothing and would make the
 * statement fail: refuse it. Returns 0, or -1 with e. */
static int check_number(const char *param, const char *s, size_t n, bp_query_error_t *e)
{
    if ((s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) && !bp_payload_number_fits(s, n)) {
        set_error(e, param,
                  "%s: the number %.*s%s is beyond what PostgreSQL's numeric stores (at most %d digits "
                  "after the decimal point)",
                  param, n > 40 ? 40 : (int)n, s, n > 40 ? "..." : "", BP_NUMERIC_MAX_SCALE);
        return -1;
    }
    return 0;
}

void bp_query_filter_clear(bp_query_filter_t *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < BP_QUERY_MAX_ALTS; i++)
        free(f->alts[i]);
    memset(f, 0, sizeof(*f));
}

/* data={...}: validate (jansson) and write its pairs ("{..},{..}", no brackets) into pairs, each key
 * and value copied from the text as written. */
static int data_pairs(const char *data, size_t datalen, bp_buf_t *pairs, size_t *npairs, bp_query_error_t *e)
{
    if (datalen > BP_QUERY_FILTER_MAX_BYTES) {
        set_error(e, "data", "data: longer than %d bytes", BP_QUERY_FILTER_MAX_BYTES);
        return -1;
    }
    if (memchr(data, '\0', datalen) != NULL) { /* jansson takes {"a":1\0}; the text goes to SQL as is */
        set_error(e, "data", "data: must not contain a NUL character");
        return -1;
    }
    json_error_t jerr;
    json_t *obj = load(data, datalen, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (obj == NULL) {
        set_error(e, "data", "data: not valid JSON (%s at column %d); expected an object like "
                  "{\"type\":\"shoe\"}", jerr.text, jerr.column);
        return -1;
    }
    int rc = -1;
    if (!json_is_object(obj)) {
        set_error(e, "data", "data: must be a JSON object like {\"type\":\"shoe\"}");
        goto done;
    }
    if (json_object_size(obj) > BP_QUERY_FILTER_MAX_PAIRS) {
        set_error(e, "data", "data: more than %d pairs", BP_QUERY_FILTER_MAX_PAIRS);
        goto done;
    }
    const char *k;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach(obj, k, klen, v)
    {
        if (klen == 0) {
            set_error(e, "data", "data: keys must not be empty");
            goto done;
        }
        if (json_is_object(v) || json_is_array(v)) {
            set_error(e, "data", "data: the value of \"%.*s\" is %s; values are strings, numbers, "
                      "true, false or null", klen > 64 ? 64 : (int)klen, k,
                      json_is_object(v) ? "an object" : "an array");
            goto done;
        }
    }
    /* valid: now the members' bytes, in the text's order */
    size_t start = 0;
    while (start < datalen && is_space(data[start]))
        start++;
    size_t pos = 0, nlen, vlen;
    const char *name, *value;
    int more;
    while ((more = bp_json_object_next(data + start, datalen - start, &pos, &name, &nlen, &value,
                                       &vlen)) == 1) {
        if (check_number("data", value, vlen, e) != 0)
            goto done;
        if (*npairs > 0)
            bp_buf_add(pairs, ",", 1);
        bp_buf_add(pairs, "{\"key\":", 7);
        bp_buf_add(pairs, name, nlen);
        bp_buf_add(pairs, ",\"value\":", 9);
        bp_buf_add(pairs, value, vlen);
        bp_buf_add(pairs, "}", 1);
        (*npairs)++;
    }
    if (more != 0 || *npairs != json_object_size(obj)) { /* cannot be: jansson read it as valid */
        set_error(e, "data", "data: not a JSON object the filter can read");
        goto done;
    }
    rc = 0;
done:
    json_decref(obj);
    return rc;
}

/* One alternative: "[" base pairs, extra pair "]". */
static char *alternative(const bp_buf_t *base, size_t nbase, const bp_buf_t *extra)
{
    bp_buf_t b = {0};
    bp_buf_add(&b, "[", 1);
    if (nbase > 0)
        bp_buf_add(&b, base->p, base->len);
    if (extra != NULL) {
        if (nbase > 0)
            bp_buf_add(&b, ",", 1);
        bp_buf_add(&b, extra->p, extra->len);
    }
    bp_buf_add(&b, "]", 1);
    return bp_buf_take(&b);
}

/* Add an alternative (alt may be NULL: out of memory). Returns 0, or -1 out of memory. */
static int add_alternative(bp_query_filter_t *f, char *alt)
{
    if (alt == NULL)
        return -1;
    f->alts[f->nalts++] = alt; /* at most the string and the typed reading of value= */
    return 0;
}

int bp_query_parse_filter(const char *data, size_t datalen, const char *key, size_t keylen, const char *value,
                          size_t valuelen, bp_query_filter_t *out, bp_query_error_t *e)
{
    memset(out, 0, sizeof(*out));
    bp_buf_t base = {0}, plain = {0}, typed = {0};
    size_t nbase = 0;
    int has_typed = 0, rc = -1;

    if (data != NULL && data_pairs(data, datalen, &base, &nbase, e) != 0)
        goto done;
    if (key != NULL) {
        if (keylen == 0) {
            set_error(e, "key", "key: must not be empty");
            goto done;
        }
        if (check_text("key", key, keylen, e) != 0)
            goto done;
    }
    if (value != NULL && check_text("value", value, valuelen, e) != 0)
        goto done;

    if (key != NULL || value != NULL) {
        /* the pair asked with key= and/or value=: plain takes V as a string; typed as JSON, as written */
        json_t *parsed = NULL;
        if (value != NULL && valuelen > 0 && !is_space(value[0]) && !is_space(value[valuelen - 1])) {
            json_error_t jerr;
            parsed = load(value, valuelen, JSON_DECODE_ANY, &jerr);
            if (parsed != NULL && (json_is_object(parsed) || json_is_array(parsed))) {
                json_decref(parsed); /* values are never nested: take it as a string */
                parsed = NULL;
            }
            if (parsed != NULL && check_number("value", value, valuelen, e) != 0) {
                json_decref(parsed);
                goto done;
            }
        }
        bp_buf_add(&plain, "{", 1);
        if (key != NULL) {
            bp_buf_add(&plain, "\"key\":", 6);
            bp_buf_json_string(&plain, key, keylen);
        }
        if (value != NULL) {
            if (key != NULL)
                bp_buf_add(&plain, ",", 1);
            bp_buf_add(&typed, plain.p, plain.len);
            bp_buf_add(&typed, "\"value\":", 8);
            bp_buf_add(&plain, "\"value\":", 8);
            if (parsed != NULL && json_is_string(parsed)) {
                bp_buf_add(&plain, value, valuelen); /* "42" in quotes: only the string 42 */
            } else {
                bp_buf_json_string(&plain, value, valuelen);
                if (parsed != NULL) {
                    bp_buf_add(&typed, value, valuelen); /* the number, true, false or null as written */
                    bp_buf_add(&typed, "}", 1);
                    has_typed = 1;
                }
            }
        }
        bp_buf_add(&plain, "}", 1);
        json_decref(parsed);
    }
    if (base.oom || plain.oom || typed.oom) {
        set_error(e, "data", "out of memory");
        goto done;
    }

    int r = 0;
    if (plain.len > 0) {
        r |= add_alternative(out, alternative(&base, nbase, &plain));
        if (has_typed)
            r |= add_alternative(out, alternative(&base, nbase, &typed));
    } else if (nbase > 0) {
        r |= add_alternative(out, alternative(&base, nbase, NULL));
    }
    if (r != 0) {
        set_error(e, "data", "out of memory");
        bp_query_filter_clear(out);
        goto done;
    }
    rc = 0;
done:
    bp_buf_free(&base);
    bp_buf_free(&typed);
    bp_buf_free(&plain);
    return rc;
}

/* ---- page, page_size, count ---- */

static int parse_whole(const char *param, const char *s, size_t len, long long min, long long max, long long *out,
                       bp_query_error_t *e)
{
    long long v = 0;
    int ok = len > 0 && len <= 19;
    for (size_t i = 0; ok && i < len; i++) {
        int d = s[i] - '0';
        if (d < 0 || d > 9 || v > (LLONG_MAX - d) / 10) /* a digit, and no overflow */
            ok = 0;
        else
            v = v * 10 + d;
    }
    if (!ok || v < min || v > max) {
        set_error(e, param, "%s: must be a whole number from %lld to %lld", param, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

int bp_query_parse_page(const char *s, size_t len, long long *out, bp_query_error_t *e)
{
    return parse_whole("page", s, len, 1, BP_QUERY_PAGE_MAX, out, e);
}

int bp_query_check_offset(long long page, long long page_size, bp_query_error_t *e)
{
    if (page <= 1 || (page - 1) <= BP_QUERY_OFFSET_MAX / page_size)
        return 0;
    set_error(e, "page",
              "page: page %lld of %lld rows skips more than %lld rows; follow the next links instead, "
              "which use cursor= (no page=) and cost the same at any depth",
              page, page_size, BP_QUERY_OFFSET_MAX);
    return -1;
}

int bp_query_parse_page_size(const char *s, size_t len, long long max, long long *out, bp_query_error_t *e)
{
    return parse_whole("page_size", s, len, 1, max, out, e);
}

int bp_query_parse_count(const char *s, size_t len, bp_count_mode_t *out, bp_query_error_t *e)
{
    static const struct {
        const char *name;
        bp_count_mode_t mode;
    } modes[] = {{"auto", BP_COUNT_AUTO}, {"exact", BP_COUNT_EXACT}, {"estimate", BP_COUNT_ESTIMATE},
                 {"none", BP_COUNT_NONE}};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strlen(modes[i].name) == len && memcmp(modes[i].name, s, len) == 0) {
            *out = modes[i].mode;
            return 0;
        }
    }
    set_error(e, "count", "count: must be one of auto, exact, estimate, none");
    return -1;
}

void bp_query_list_clear(bp_query_list_t *q)
{
    if (q == NULL)
        return;
    bp_query_filter_clear(&q->filter);
    free(q->batch_id);
    bp_cursor_clear(&q->cursor);
    memset(q, 0, sizeof(*q));
}

/* ---- SQL ---- */

void bp_sql_clear(bp_sql_t *s)
{
    if (s == NULL)
        return;
    free(s->text);
    for (int i = 0; i < s->nparams; i++)
        free(s->params[i]);
    memset(s, 0, sizeof(*s));
}

/* Add a parameter; returns its number ($n), or 0 when out of memory or slots. */
static int param(bp_sql_t *s, const char *v)
{
    if (s->nparams >= BP_QUERY_MAX_PARAMS)
        return 0;
    char *copy = strdup(v);
    if (copy == NULL)
        return 0;
    s->params[s->nparams++] = copy;
    return s->nparams;
}

static int param_ll(bp_sql_t *s, long long v)
{
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%lld", v);
    return param(s, tmp);
}

/* Parameter numbers of a list statement's filter, shared by the count and the page. */
typedef struct filter_params {
    int alt[BP_QUERY_MAX_ALTS];
    size_t nalts;
    int batch; /* objects' batch_id=, 0 if none */
} filter_params_t;

static int add_filter_params(bp_sql_t *s, const bp_query_list_t *q, int objects, filter_params_t *fp)
{
    memset(fp, 0, sizeof(*fp));
    for (size_t i = 0; i < q->filter.nalts; i++) {
        if ((fp->alt[i] = param(s, q->filter.alts[i])) == 0)
            return -1;
    }
    fp->nalts = q->filter.nalts;
    if (objects && q->batch_id != NULL && (fp->batch = param(s, q->batch_id)) == 0)
        return -1;
    return 0;
}

static void cond(bp_buf_t *b, int *first)
{
    bp_buf_puts(b, *first ? " WHERE " : " AND ");
    *first = 0;
}

/* The containment test on alias.data. */
static void containment(bp_buf_t *b, const char *alias, const filter_params_t *fp)
{
    if (fp->nalts > 1)
        bp_buf_puts(b, "(");
    for (size_t i = 0; i < fp->nalts; i++)
        bp_buf_printf(b, "%s%s.data @> $%d::jsonb", i > 0 ? " OR " : "", alias, fp->alt[i]);
    if (fp->nalts > 1)
        bp_buf_puts(b, ")");
}

/* WHERE of the filter alone (what the count counts). */
static void where_filter(bp_buf_t *b, int objects, const filter_params_t *fp, int *first)
{
    if (objects) {
        if (fp->nalts > 0) {
            cond(b, first);
            containment(b, "o", fp);
        }
        if (fp->batch > 0) {
            cond(b, first);
            bp_buf_printf(b, "o.batch_id = $%d", fp->batch);
        }
    } else if (fp->nalts > 0) {
        cond(b, first);
        bp_buf_puts(b, "EXISTS (SELECT 1 FROM objects o WHERE o.batch_id = b.batch_id AND ");
        containment(b, "o", fp);
        bp_buf_puts(b, ")");
    }
}

/* The one term of a filter of one alternative holding one pair object with only "key" and/or
 * "value" (data={"k":v}, key=K, value=V that is only a string, key=K&value=V), read from the filter's
 * text (the client's lexemes: numbers are not respelt): its counter's hash, its key (decoded) and the
 * pair object's JSON text. */
typedef struct single_term {
    char kind; /* 'p', 'k' or 'v' */
    char hash[BP_COUNT_HASH_LEN];
    char *key;  /* NULL for 'v' */
    char *json; /* {"key", "value"} as in the filter */
} single_term_t;

static void single_term_clear(single_term_t *t)
{
    free(t->key);
    free(t->json);
    memset(t, 0, sizeof(*t));
}

/* Decode the string literal lit[0..llen) into a malloc'd NUL-terminated string holding no NUL. */
static char *decode_text(const char *lit, size_t llen)
{
    char *out = malloc(llen + 1);
    size_t n;
    if (out == NULL || bp_json_string_decode(lit, llen, out, &n) != 0 || memchr(out, '\0', n) != NULL) {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    return out;
}

/* 0 with *t filled, or -1 when the filter is not one term (or names no counter: then the counters'
 * functions count it). */
static int single_term(const bp_query_filter_t *f, single_term_t *t)
{
    memset(t, 0, sizeof(*t));
    if (f->nalts != 1)
        return -1;
    const char *alt = f->alts[0], *elem, *name, *v, *key = NULL, *value = NULL;
    size_t alen = strlen(alt), apos = 0, elen, opos = 0, nlen, vlen, klen = 0, valen = 0;
    if (bp_json_array_next(alt, alen, &apos, &elem, &elen) != 1 || elen == 0 || elem[0] != '{' ||
        bp_json_array_next(alt, alen, &apos, &v, &vlen) != 0)
        return -1;
    int rc;
    while ((rc = bp_json_object_next(elem, elen, &opos, &name, &nlen, &v, &vlen)) == 1) {
        if (nlen == 5 && memcmp(name, "\"key\"", 5) == 0 && key == NULL && vlen > 0 && v[0] == '"') {
            key = v;
            klen = vlen;
        } else if (nlen == 7 && memcmp(name, "\"value\"", 7) == 0 && value == NULL) {
            value = v;
            valen = vlen;
        } else {
            return -1; /* another member, one written with escapes, a key that is not a string */
        }
    }
    if (rc != 0 || (key == NULL && value == NULL))
        return -1;
    char *canon = NULL;
    size_t clen = 0;
    t->kind = key == NULL ? 'v' : value == NULL ? 'k' : 'p';
    if ((key != NULL && (t->key = decode_text(key, klen)) == NULL) ||
        (value != NULL && bp_count_canon_value(value, valen, &canon, &clen) != BP_COUNT_OK) ||
        bp_count_hash(t->kind, t->key, t->key != NULL ? strlen(t->key) : 0, canon, clen, t->hash) != 0 ||
        (t->json = strndup(elem, elen)) == NULL) {
        free(canon);
        single_term_clear(t);
        return -1;
    }
    free(canon);
    return 0;
}

/* A counter read in the page statement itself: an index scan of at most 64 rows (the writers' slots),
 * the counter named by its hash, a parameter computed here. Counters of all objects, a batch, all
 * batches and a key are kept whatever the data. */
#define COUNTER_SQL "(SELECT coalesce(sum(x.n), 0)::bigint AS n, true AS exact FROM count_terms x WHERE x.h = $%d::uuid)"

/* The parameter of the hash of the term (kind, key) (no value): 0 on failure. */
static int hash_param(bp_sql_t *s, char kind, const char *key)
{
    char h[BP_COUNT_HASH_LEN];
    if (bp_count_hash(kind, key, key != NULL ? strlen(key) : 0, NULL, 0, h) != 0)
        return 0;
    return param(s, h);
}

/* The count of one term as a relation c(n, total, exact), read right here (no SQL function to inline
 * while planning: the hashes are parameters): the term's counter and the counter of all objects
 * (total: what the page's plan is chosen by) in one index scan. A pair's or a value's count adds,
 * only when a key is sparse (migration 007: its pairs and values are not kept in counters), the
 * matches the counters leave out, read through the GIN index (rare); whether it is sparse: its
 * marker row (migration 012: kind 's' for the pair's key, 'S' for any key), read by the same scan.
 * The term's text and the marker only where the statement uses them (a parameter it never names
 * has no type: PostgreSQL refuses the statement). Without sparse (count=none: the count is not shown,
 * only the page's plan follows it), the counter alone: a sparse key's pair counts 0 and is read from
 * the GIN index, which is right for it (rare), and costs no count of its matches. */
static void term_count(bp_buf_t *b, bp_sql_t *s, const single_term_t *t, int sparse)
{
    int ph = param(s, t->hash), ptot = hash_param(s, 't', NULL), pm = -1, pt = -1;
    if (sparse && (t->kind == 'p' || t->kind == 'v')) {
        pm = hash_param(s, t->kind == 'p' ? 's' : 'S', t->kind == 'p' ? t->key : NULL);
        pt = param(s, t->json);
    }
    if (ph == 0 || ptot == 0 || pm == 0 || pt == 0)
        b->oom = 1;
    bp_buf_printf(b, "(SELECT coalesce(sum(x.n) FILTER (WHERE x.h = $%d::uuid), 0)::bigint", ph);
    if (pm > 0)
        bp_buf_printf(b, " + CASE WHEN bool_or(x.h = $%d::uuid) "
                      "THEN bp_count_sparse_extra($%d::jsonb) ELSE 0 END", pm, pt);
    bp_buf_printf(b, " AS n, coalesce(sum(x.n) FILTER (WHERE x.h = $%d::uuid), 0)::bigint AS total, "
                  "true AS exact FROM count_terms x WHERE x.h IN ($%d::uuid, $%d::uuid", ptot, ph, ptot);
    if (pm > 0)
        bp_buf_printf(b, ", $%d::uuid", pm);
    bp_buf_puts(b, "))");
}

/* The list's count as a relation c(n, exact) for the lists that are not one term (term_count): a
 * counter read right here for no filter (all objects, a batch, all batches), else the counters'
 * functions of migration 007 (bp_count_objects / bp_count_batches: exact from the counters for the
 * filters they serve, exact within the bound otherwise, else an estimate from the counters with
 * exact = false), or nothing with count=none. The alternatives go in as one JSON array of the
 * containment arrays. */
static void count_source(bp_buf_t *b, bp_sql_t *s, const bp_query_list_t *q, long long cap, int objects,
                         const filter_params_t *fp)
{
    if (q->count == BP_COUNT_NONE) {
        bp_buf_puts(b, "(SELECT NULL::bigint AS n, false AS exact)");
        return;
    }
    if (q->filter.nalts == 0) {
        const char *batch = objects && fp->batch > 0 ? q->batch_id : NULL;
        int ph = hash_param(s, !objects ? 'B' : batch != NULL ? 'b' : 't', batch);
        if (ph == 0)
            b->oom = 1;
        bp_buf_printf(b, COUNTER_SQL, ph);
        return;
    }
    bp_buf_t alts = {0};
    bp_buf_add(&alts, "[", 1);
    for (size_t i = 0; i < q->filter.nalts; i++) {
        if (i > 0)
            bp_buf_add(&alts, ",", 1);
        bp_buf_puts(&alts, q->filter.alts[i]);
    }
    bp_buf_add(&alts, "]", 1);
    char *text = bp_buf_take(&alts);
    const char *mode = q->count == BP_COUNT_EXACT ? "exact" : q->count == BP_COUNT_ESTIMATE ? "estimate" : "auto";
    int pa = text != NULL ? param(s, text) : 0;
    free(text);
    int pc = param_ll(s, cap), pm = param(s, mode);
    int px = param_ll(s, q->count_exact_max > 0 ? q->count_exact_max : cap);
    if (pa == 0 || pc == 0 || pm == 0 || px == 0) {
        b->oom = 1;
        return;
    }
    if (objects) {
        char batch[24] = "NULL";
        if (fp->batch > 0)
            snprintf(batch, sizeof(batch), "$%d", fp->batch);
        bp_buf_printf(b, "bp_count_objects($%d::jsonb, %s::text, $%d::bigint, $%d::text, $%d::bigint)", pa,
                      batch, pc, pm, px);
    } else {
        bp_buf_printf(b, "bp_count_batches($%d::jsonb, $%d::bigint, $%d::text, $%d::bigint)", pa, pc, pm, px);
    }
}

/* A page's LIMIT (page_size + 1) and, in page mode, OFFSET, as parameters (off 0: none); reach is
 * the rows the page reads up to, offset included. */
typedef struct page_params {
    int lim, off;
    long long reach;
} page_params_t;

static void page_params(bp_buf_t *b, bp_sql_t *s, const bp_query_list_t *q, page_params_t *pp)
{
    long long skip = !q->has_cursor && q->page > 1 ? (q->page - 1) * q->page_size : 0;
    pp->lim = param_ll(s, q->page_size + 1);
    pp->off = skip > 0 ? param_ll(s, skip) : -1;
    pp->reach = q->page_size + 1 + skip;
    if (pp->lim == 0 || pp->off == 0)
        b->oom = 1;
}

static void limit_offset(bp_buf_t *b, const page_params_t *pp)
{
    bp_buf_printf(b, " LIMIT $%d::bigint", pp->lim);
    if (pp->off > 0)
        bp_buf_printf(b, " OFFSET $%d::bigint", pp->off);
}

/* Every statement's start: out and b empty, then the filter's parameters (a failure sticks in b). */
static void begin(bp_sql_t *out, bp_buf_t *b, const bp_query_list_t *q, int objects, filter_params_t *fp)
{
    memset(out, 0, sizeof(*out));
    memset(b, 0, sizeof(*b));
    if (add_filter_params(out, q, objects, fp) != 0)
        b->oom = 1;
}

/* Every statement's end: the text into out, or out cleared and -1 when memory ran out. */
static int finish(bp_buf_t *b, bp_sql_t *out)
{
    out->text = bp_buf_take(b);
    if (out->text == NULL) {
        bp_sql_clear(out);
        return -1;
    }
    return 0;
}

#define OBJECT_COLUMNS "o.id, o.object_id, o.batch_id, o.data, o.created_at, o.updated_at"

/* The page of one term, planned once (prepared) for every value: two ways to read it, chosen while
 * the statement runs by the term's count (c.n) and all objects' (c.total), both exact from the
 * counters. A frequent term: objects in id order, each tested until the page is full (reach *
 * total / n rows; jsonb_contains is the @> that no index serves, so the plan stays that one). A rare
 * one: its matches from the GIN index, sorted (n rows; id + 0 is the order no index serves). The
 * two cost the same at n^2 = reach * total; each branch runs only under its One-Time Filter. A wrong
 * count costs time, never rows: 0 goes to the index. */
static void term_page(bp_buf_t *b, bp_sql_t *s, const bp_query_list_t *q, const filter_params_t *fp,
                      int backward)
{
    const char *dir = backward ? "DESC" : "ASC";
    int k = q->has_cursor ? param_ll(s, q->cursor.key) : -1;
    page_params_t pp;
    page_params(b, s, q, &pp);
    int pr = param_ll(s, pp.reach);
    if (k == 0 || pr == 0)
        b->oom = 1;
    char scan[160];
    snprintf(scan, sizeof(scan), "c.n > 0 AND c.n::float8 * c.n >= $%d::float8 * c.total", pr);
    for (int gin = 0; gin <= 1; gin++) {
        bp_buf_printf(b, "%s(SELECT " OBJECT_COLUMNS " FROM objects o WHERE ", gin ? " UNION ALL " : "(");
        if (gin)
            bp_buf_printf(b, "NOT (%s) AND o.data @> $%d::jsonb", scan, fp->alt[0]);
        else
            bp_buf_printf(b, "%s AND jsonb_contains(o.data, $%d::jsonb)", scan, fp->alt[0]);
        if (k > 0)
            bp_buf_printf(b, " AND o.id %s $%d::bigint", backward ? "<" : ">", k);
        bp_buf_printf(b, " ORDER BY o.id%s %s", gin ? " + 0" : "", dir);
        limit_offset(b, &pp);
        bp_buf_puts(b, ")");
    }
    bp_buf_puts(b, ")");
}

int bp_query_sql_objects(const bp_query_list_t *q, long long count_cap, bp_sql_t *out)
{
    bp_buf_t b;
    filter_params_t fp;
    begin(out, &b, q, 1, &fp);
    int backward = q->has_cursor && q->cursor.backward;
    const char *dir = backward ? "DESC" : "ASC";
    single_term_t t;
    int term = fp.batch == 0 && single_term(&q->filter, &t) == 0;

    bp_buf_puts(&b, "SELECT c.n, p.id, p.object_id, p.batch_id, p.data::text, "
                    BP_SQL_ISO8601("p.created_at") ", " BP_SQL_ISO8601("p.updated_at") ", c.exact FROM ");
    if (term) {
        term_count(&b, out, &t, q->count != BP_COUNT_NONE);
        single_term_clear(&t);
        bp_buf_puts(&b, " c LEFT JOIN LATERAL ");
        term_page(&b, out, q, &fp, backward);
    } else {
        count_source(&b, out, q, count_cap, 1, &fp);
        bp_buf_puts(&b, " c LEFT JOIN LATERAL (SELECT " OBJECT_COLUMNS " FROM objects o");
        int first = 1;
        where_filter(&b, 1, &fp, &first);
        if (q->has_cursor) {
            int k = param_ll(out, q->cursor.key);
            if (k == 0)
                b.oom = 1;
            cond(&b, &first);
            bp_buf_printf(&b, "o.id %s $%d::bigint", backward ? "<" : ">", k);
        }
        bp_buf_printf(&b, " ORDER BY o.id %s", dir);
        page_params_t pp;
        page_params(&b, out, q, &pp);
        limit_offset(&b, &pp);
        bp_buf_puts(&b, ")");
    }
    bp_buf_printf(&b, " p ON true ORDER BY p.id %s", dir);
    /* one plan for every value: without a filter, and for one term (term_page) */
    out->plan_free = q->filter.nalts == 0 || term;
    return finish(&b, out);
}

int bp_query_sql_batches(const bp_query_list_t *q, long long count_cap, bp_sql_t *out)
{
    bp_buf_t b;
    filter_params_t fp;
    begin(out, &b, q, 0, &fp);
    int backward = q->has_cursor && q->cursor.backward;
    const char *dir = backward ? "DESC" : "ASC";

    bp_buf_puts(&b, "SELECT c.n, p.batch_id, (extract(epoch FROM p.created_at) * 1000000)::bigint, "
                BP_SQL_ISO8601("p.created_at") ", " BP_SQL_ISO8601("p.updated_at") ", "
                "(SELECT coalesce(sum(x.n), 0) FROM count_terms x WHERE x.h = bp_count_hash('b', p.batch_id, NULL)), "
                "c.exact FROM ");
    count_source(&b, out, q, count_cap, 0, &fp);
    bp_buf_puts(&b, " c LEFT JOIN LATERAL (SELECT b.batch_id, b.created_at, b.updated_at FROM batches b");
    int first = 1;
    where_filter(&b, 0, &fp, &first);
    if (q->has_cursor) {
        /* microseconds split in seconds and the rest: both exact in the float8 PostgreSQL converts to */
        long long us = q->cursor.key, secs = us / 1000000, rest = us % 1000000;
        if (rest < 0)
            secs--, rest += 1000000;
        int ps = param_ll(out, secs), pr = param_ll(out, rest);
        int pb = param(out, q->cursor.batch_id != NULL ? q->cursor.batch_id : "");
        if (ps == 0 || pr == 0 || pb == 0)
            b.oom = 1;
        cond(&b, &first);
        bp_buf_printf(&b, "(b.created_at, b.batch_id) %s (to_timestamp($%d::bigint) + $%d::bigint * "
                      "interval '1 microsecond', $%d::text)", backward ? "<" : ">", ps, pr, pb);
    }
    bp_buf_printf(&b, " ORDER BY b.created_at %s, b.batch_id %s", dir, dir);
    page_params_t pp;
    page_params(&b, out, q, &pp);
    limit_offset(&b, &pp);
    bp_buf_printf(&b, ") p ON true ORDER BY p.created_at %s, p.batch_id %s", dir, dir);
    out->plan_free = q->filter.nalts == 0;
    return finish(&b, out);
}

int bp_query_sql_estimate(const bp_query_list_t *q, int objects, bp_sql_t *out)
{
    bp_buf_t b;
    filter_params_t fp;
    begin(out, &b, q, objects, &fp);
    bp_buf_printf(&b, "EXPLAIN (FORMAT JSON) SELECT 1 FROM %s", objects ? "objects o" : "batches b");
    int first = 1;
    where_filter(&b, objects, &fp, &first);
    return finish(&b, out);
}

long long bp_query_plan_rows(const char *explain_json)
{
    json_error_t jerr;
    json_t *doc = json_loads(explain_json, 0, &jerr);
    json_t *rows = json_object_get(json_object_get(json_array_get(doc, 0), "Plan"), "Plan Rows");
    long long n = -1;
    if (json_is_number(rows) && json_number_value(rows) >= 0 && json_number_value(rows) < 9e18)
        n = (long long)json_number_value(rows);
    json_decref(doc);
    return n;
}
