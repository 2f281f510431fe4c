/* fuzz_query_filter.c - fuzz target for the read path's query-string parsing (api/query.h):
 * bp_query_parse_filter (data=, key=, value=), page=, page_size=, count=, and the SQL a filter becomes.
 *
 * Input: one byte whose low three bits say which of data (1), key (2) and value (4) are present, then
 * their decoded texts separated by 0xff bytes (never part of UTF-8), in that order; a missing part is
 * empty. The value text is also given to page=, page_size= and count=. */
#include <string.h>

#include <jansson.h>

#include "query.h"
#include "fuzz.h"

static const char *const params[] = {"data", "key", "value"};

/* A refusal names a known parameter and says why in text the API can put in problem+json. */
static void check_error(const bp_query_error_t *e, const char *const *allowed, size_t nallowed)
{
    FUZZ_CHECK(e->param != NULL);
    int known = 0;
    for (size_t i = 0; i < nallowed; i++)
        known |= strcmp(e->param, allowed[i]) == 0;
    FUZZ_CHECK(known);
    FUZZ_CHECK(memchr(e->message, '\0', sizeof(e->message)) != NULL);
    FUZZ_CHECK(fuzz_cstr_ok(e->message, sizeof(e->message)));
    FUZZ_CHECK(e->message[0] != '\0');
}

static int json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* 1 if arr (a parsed alternative) holds a pair whose member ("key" or "value") equals want. */
static int has_pair(const json_t *arr, const char *member, const json_t *want)
{
    size_t i;
    json_t *pair;
    json_array_foreach(arr, i, pair)
    {
        if (json_equal(json_object_get(pair, member), want))
            return 1;
    }
    return 0;
}

/* Every alternative is a JSON array of {"key": string, "value": scalar} objects: the containment
 * array the SQL compares data with. All alternatives differ. */
static void check_filter(const bp_query_filter_t *f, const char *key, size_t keylen, const char *value,
                         size_t valuelen)
{
    FUZZ_CHECK(f->nalts <= BP_QUERY_MAX_ALTS);
    json_t *want_key = key != NULL ? json_stringn(key, keylen) : NULL;
    json_t *want_value = value != NULL ? json_stringn(value, valuelen) : NULL;
    json_t *quoted = NULL; /* value="..." (a JSON string literal) means that string */
    /* as the parser does: a value with spaces around it is always taken as plain text */
    if (value != NULL && valuelen > 0 && !json_space(value[0]) &&
        !json_space(value[valuelen - 1])) {
        json_error_t jerr;
        quoted = json_loadb(value, valuelen, JSON_DECODE_ANY, &jerr);
        if (!json_is_string(quoted)) {
            json_decref(quoted);
            quoted = NULL;
        }
    }
    for (size_t i = 0; i < BP_QUERY_MAX_ALTS; i++) {
        if (i >= f->nalts) {
            FUZZ_CHECK(f->alts[i] == NULL);
            continue;
        }
        FUZZ_CHECK(f->alts[i] != NULL);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(f->alts[i], f->alts[j]) != 0);
        json_error_t jerr;
        json_t *arr = json_loads(f->alts[i], JSON_REJECT_DUPLICATES, &jerr);
        if (arr == NULL) /* numbers are passed as written: an integer beyond int64 is one */
            arr = json_loads(f->alts[i], JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &jerr);
        FUZZ_CHECK(json_is_array(arr));
        FUZZ_CHECK(json_array_size(arr) >= 1 && json_array_size(arr) <= BP_QUERY_FILTER_MAX_PAIRS + 1);
        size_t k;
        json_t *pair;
        json_array_foreach(arr, k, pair)
        {
            FUZZ_CHECK(json_is_object(pair));
            json_t *pk = json_object_get(pair, "key"), *pv = json_object_get(pair, "value");
            FUZZ_CHECK(json_object_size(pair) == (size_t)(pk != NULL) + (pv != NULL));
            FUZZ_CHECK(pk != NULL || pv != NULL);
            FUZZ_CHECK(pk == NULL || (json_is_string(pk) && json_string_length(pk) > 0));
            FUZZ_CHECK(pv == NULL || !(json_is_object(pv) || json_is_array(pv)));
        }
        /* key= is asked for in every alternative; value= too, as the string or one typed reading */
        if (want_key != NULL)
            FUZZ_CHECK(has_pair(arr, "key", want_key));
        if (want_value != NULL && i == 0)
            FUZZ_CHECK(has_pair(arr, "value", quoted != NULL ? quoted : want_value));
        /* the typed reading of value= is its text exactly as sent (a number keeps its spelling) */
        if (want_value != NULL && i == 1)
            FUZZ_CHECK(memmem(f->alts[i], strlen(f->alts[i]), value, valuelen) != NULL);
        json_decref(arr);
    }
    json_decref(want_key);
    json_decref(want_value);
    json_decref(quoted);
}

/* Each "$n" in the statement refers to one of its nparams parameters, and each parameter is referred
 * to (PostgreSQL refuses a statement with a parameter it never sees: it has no type). */
static void check_sql(const bp_sql_t *s)
{
    FUZZ_CHECK(s->text != NULL);
    FUZZ_CHECK(s->nparams >= 0 && s->nparams <= BP_QUERY_MAX_PARAMS);
    int used[BP_QUERY_MAX_PARAMS + 1] = {0};
    for (int i = 0; i < s->nparams; i++)
        FUZZ_CHECK(s->params[i] != NULL);
    for (const char *p = strchr(s->text, '$'); p != NULL; p = strchr(p + 1, '$')) {
        long n = strtol(p + 1, NULL, 10);
        FUZZ_CHECK(n >= 1 && n <= s->nparams);
        used[n] = 1;
    }
    for (int i = 1; i <= s->nparams; i++)
        FUZZ_CHECK(used[i]);
}

static void check_statements(bp_query_list_t *q)
{
    bp_sql_t s;
    FUZZ_CHECK(bp_query_sql_objects(q, 10000, &s) == 0);
    check_sql(&s);
    bp_sql_clear(&s);
    FUZZ_CHECK(bp_query_sql_batches(q, 10000, &s) == 0);
    check_sql(&s);
    bp_sql_clear(&s);
    for (int objects = 0; objects <= 1; objects++) {
        FUZZ_CHECK(bp_query_sql_estimate(q, objects, &s) == 0);
        check_sql(&s);
        bp_sql_clear(&s);
    }
}

static void fuzz_numbers(const char *s, size_t len)
{
    static const char *const page[] = {"page"}, *const page_size[] = {"page_size"}, *const count[] = {"count"};
    bp_query_error_t e = {0};
    long long n = -7;
    if (bp_query_parse_page(s, len, &n, &e) == 0)
        FUZZ_CHECK(n >= 1 && n <= BP_QUERY_PAGE_MAX);
    else
        check_error(&e, page, 1);
    n = -7;
    if (bp_query_parse_page_size(s, len, 1000, &n, &e) == 0)
        FUZZ_CHECK(n >= 1 && n <= 1000);
    else
        check_error(&e, page_size, 1);
    bp_count_mode_t mode;
    if (bp_query_parse_count(s, len, &mode, &e) == 0)
        FUZZ_CHECK(mode == BP_COUNT_AUTO || mode == BP_COUNT_EXACT || mode == BP_COUNT_ESTIMATE ||
                   mode == BP_COUNT_NONE);
    else
        check_error(&e, count, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    unsigned mask = data[0] & 7u;
    const char *part[3] = {NULL, NULL, NULL};
    size_t partlen[3] = {0, 0, 0};
    /* copies of exactly the part's bytes, so that ASan sees any read past one */
    char *copy[3] = {NULL, NULL, NULL};
    const uint8_t *p = data + 1, *end = data + size;
    for (int i = 0; i < 3; i++) {
        const uint8_t *sep = i < 2 ? memchr(p, 0xff, (size_t)(end - p)) : NULL;
        const uint8_t *stop = sep != NULL ? sep : end;
        if (mask & (1u << i)) {
            partlen[i] = (size_t)(stop - p);
            copy[i] = malloc(partlen[i] ? partlen[i] : 1);
            FUZZ_CHECK(copy[i] != NULL);
            if (partlen[i] > 0)
                memcpy(copy[i], p, partlen[i]);
            part[i] = copy[i];
        }
        p = sep != NULL ? sep + 1 : end;
    }

    bp_query_list_t q = {.page_size = 10};
    bp_query_error_t e = {0};
    if (bp_query_parse_filter(part[0], partlen[0], part[1], partlen[1], part[2], partlen[2], &q.filter, &e) == 0) {
        check_filter(&q.filter, part[1], partlen[1], part[2], partlen[2]);
        /* no filter only when neither key= nor value= is given and data= is absent or {} */
        if (q.filter.nalts == 0)
            FUZZ_CHECK(part[1] == NULL && part[2] == NULL);
        if (part[0] == NULL && part[1] == NULL && part[2] == NULL)
            FUZZ_CHECK(q.filter.nalts == 0);
        check_statements(&q);
        q.page = 3;
        q.count = BP_COUNT_EXACT;
        check_statements(&q);
    } else {
        check_error(&e, params, 3);
        FUZZ_CHECK(q.filter.nalts == 0);
    }
    bp_query_list_clear(&q);

    if (part[2] != NULL)
        fuzz_numbers(part[2], partlen[2]);
    for (int i = 0; i < 3; i++)
        free(copy[i]);
    return 0;
}
