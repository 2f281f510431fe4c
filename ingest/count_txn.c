/* count_txn.c - the objects one worker transaction inserted and their summed counter terms, computed in
 * C from the messages it holds (see count_txn.h), and the parameters of the statement that adds them. */
#include "count_txn.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bp_json_scan.h"
#include "bp_pg.h"
#include "count_terms.h"

/* An object a statement inserted: the ordinal-th (1-based) of msg's "objects". */
typedef struct inserted {
    const bp_ingest_msg_t *msg;
    int64_t ordinal;
} inserted_t;

struct bp_count_txn {
    inserted_t *ins;
    size_t nins, cap_ins;
    bp_count_terms_t *txn_terms;  /* the terms of ins[0..nins) */
    bp_count_terms_t *stmt_terms; /* one statement's, merged into txn_terms once they all count */
    char **sparse;                /* count_keys as last read, sorted by strcmp */
    size_t nsparse;
};

static void sparse_free(bp_count_txn_t *c)
{
    for (size_t i = 0; i < c->nsparse; i++)
        free(c->sparse[i]);
    free(c->sparse);
    c->sparse = NULL;
    c->nsparse = 0;
}

bp_count_txn_t *bp_count_txn_new(void)
{
    bp_count_txn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    if ((c->txn_terms = bp_count_terms_new()) == NULL || (c->stmt_terms = bp_count_terms_new()) == NULL) {
        bp_count_txn_free(c);
        return NULL;
    }
    return c;
}

void bp_count_txn_free(bp_count_txn_t *c)
{
    if (c == NULL)
        return;
    bp_count_terms_free(c->txn_terms);
    bp_count_terms_free(c->stmt_terms);
    sparse_free(c);
    free(c->ins);
    free(c);
}

void bp_count_txn_begin(bp_count_txn_t *c)
{
    c->nins = 0;
    bp_count_terms_clear(c->txn_terms);
}

size_t bp_count_txn_objects(const bp_count_txn_t *c)
{
    return c->nins;
}

static int cmp_inserted(const void *x, const void *y)
{
    const inserted_t *a = x, *b = y;
    if (a->msg != b->msg)
        return (uintptr_t)a->msg > (uintptr_t)b->msg ? 1 : -1;
    return (a->ordinal > b->ordinal) - (a->ordinal < b->ordinal);
}

/* Add the terms of the objects ins[0..n) (sorted here) to terms, with c's sparse keys, reading each
 * message's payload once. */
static int terms_of(const bp_count_txn_t *c, bp_count_terms_t *terms, inserted_t *ins, size_t n)
{
    if (n > 1) /* ins may be NULL when n is 0: never pass NULL to qsort (UBSan: nonnull) */
        qsort(ins, n, sizeof(*ins), cmp_inserted);
    const char *const *sparse = (const char *const *)c->sparse;
    char *bid = NULL;
    int rc = BP_COUNT_OK;
    for (size_t i = 0; i < n && rc == BP_COUNT_OK;) {
        const bp_ingest_msg_t *m = ins[i].msg;
        const char *payload = m->rkm->payload, *objs, *lit, *obj = NULL, *data;
        size_t plen = m->rkm->len, olen, llen, blen, objlen = 0, dlen, pos = 0;
        int64_t at = 0;
        if (bp_json_member(payload, plen, "objects", &objs, &olen) != 0 ||
            bp_json_member(payload, plen, "batch_id", &lit, &llen) != 0) {
            rc = BP_COUNT_MALFORMED;
            break;
        }
        char *nb = realloc(bid, llen);
        if (nb == NULL) {
            rc = BP_COUNT_NOMEM;
            break;
        }
        bid = nb;
        if (bp_json_string_decode(lit, llen, bid, &blen) != 0) {
            rc = BP_COUNT_MALFORMED;
            break;
        }
        for (; i < n && ins[i].msg == m && rc == BP_COUNT_OK; i++) {
            while (at < ins[i].ordinal && rc == BP_COUNT_OK) {
                if (bp_json_array_next(objs, olen, &pos, &obj, &objlen) != 1)
                    rc = BP_COUNT_MALFORMED;
                at++;
            }
            if (rc != BP_COUNT_OK)
                break;
            if (bp_json_member(obj, objlen, "data", &data, &dlen) != 0)
                rc = BP_COUNT_MALFORMED;
            else
                rc = bp_count_terms_add_object(terms, bid, blen, data, dlen, sparse, c->nsparse, 1);
        }
    }
    free(bid);
    return rc;
}

int bp_count_txn_add(bp_count_txn_t *c, bp_ingest_msg_t *const *set, size_t k, const int64_t *rows, size_t nrows)
{
    if (c->nins + nrows > c->cap_ins) {
        size_t cap = c->cap_ins ? c->cap_ins : 1024;
        while (cap < c->nins + nrows)
            cap *= 2;
        inserted_t *ni = realloc(c->ins, cap * sizeof(*ni));
        if (ni == NULL)
            return BP_COUNT_NOMEM;
        c->ins = ni;
        c->cap_ins = cap;
    }
    inserted_t *mine = c->ins + c->nins;
    for (size_t r = 0; r < nrows; r++) {
        int64_t mi = rows[2 * r];
        if (mi < 1 || (uint64_t)mi > k || rows[2 * r + 1] < 1)
            return BP_COUNT_MALFORMED;
        mine[r].msg = set[mi - 1];
        mine[r].ordinal = rows[2 * r + 1];
    }
    bp_count_terms_clear(c->stmt_terms);
    int rc = terms_of(c, c->stmt_terms, mine, nrows);
    if (rc == BP_COUNT_OK && (rc = bp_count_terms_merge(c->txn_terms, c->stmt_terms)) == BP_COUNT_OK)
        c->nins += nrows;
    return rc;
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

int bp_count_txn_set_sparse(bp_count_txn_t *c, const char *json)
{
    json_error_t jerr;
    json_t *arr = json_loads(json, 0, &jerr);
    int rc = BP_COUNT_OK;
    sparse_free(c);
    if (arr == NULL || !json_is_array(arr)) {
        rc = BP_COUNT_MALFORMED;
        goto done;
    }
    size_t n = json_array_size(arr);
    if (n > 0 && (c->sparse = calloc(n, sizeof(*c->sparse))) == NULL) {
        rc = BP_COUNT_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const char *k = json_string_value(json_array_get(arr, i));
        if (k == NULL) {
            rc = BP_COUNT_MALFORMED;
            goto done;
        }
        if ((c->sparse[c->nsparse] = strdup(k)) == NULL) {
            rc = BP_COUNT_NOMEM;
            goto done;
        }
        c->nsparse++;
    }
    if (c->nsparse > 1) /* c->sparse is NULL without sparse keys */
        qsort(c->sparse, c->nsparse, sizeof(*c->sparse), cmp_str);
    if (c->nins > 0) {
        bp_count_terms_clear(c->txn_terms);
        rc = terms_of(c, c->txn_terms, c->ins, c->nins);
    }
done:
    json_decref(arr);
    if (rc != BP_COUNT_OK)
        sparse_free(c);
    return rc;
}

int bp_count_txn_params(const bp_count_txn_t *c, bp_count_params_t *p)
{
    memset(p, 0, sizeof(*p));
    p->formats[0] = p->formats[1] = p->formats[2] = p->formats[3] = 1; /* binary text[]; ns: text */
    size_t nt = bp_count_terms_size(c->txn_terms) + 1, used = 0, pos = 0;
    const char **kinds = malloc(nt * sizeof(*kinds)), **keys = malloc(nt * sizeof(*keys));
    const char **vals = malloc(nt * sizeof(*vals));
    size_t *klens = malloc(nt * sizeof(*klens)), *vlens = malloc(nt * sizeof(*vlens));
    size_t *ones = malloc(nt * sizeof(*ones)), *slens = malloc((c->nsparse + 1) * sizeof(*slens));
    int64_t *ns = malloc(nt * sizeof(*ns));
    static const char kind_chars[] = "tbkvpxyB"; /* the kinds of 007, one byte each */
    int rc = BP_COUNT_NOMEM;
    if (kinds == NULL || keys == NULL || vals == NULL || klens == NULL || vlens == NULL || ones == NULL ||
        slens == NULL || ns == NULL)
        goto done;
    bp_count_term_t term;
    while (bp_count_terms_next(c->txn_terms, &pos, &term)) {
        const char *kc = strchr(kind_chars, term.kind);
        if (kc == NULL || term.kind == '\0') {
            rc = BP_COUNT_MALFORMED;
            goto done;
        }
        kinds[used] = kc;
        ones[used] = 1;
        keys[used] = term.key;
        klens[used] = term.key_len;
        vals[used] = term.value;
        vlens[used] = term.value_len;
        ns[used++] = term.n;
    }
    for (size_t i = 0; i < c->nsparse; i++)
        slens[i] = strlen(c->sparse[i]);
    if ((p->values[0] = bp_pg_text_array_binary((const char *const *)c->sparse, slens, c->nsparse, &p->lengths[0])) ==
            NULL ||
        (p->values[1] = bp_pg_text_array_binary(kinds, ones, used, &p->lengths[1])) == NULL ||
        (p->values[2] = bp_pg_text_array_binary(keys, klens, used, &p->lengths[2])) == NULL ||
        (p->values[3] = bp_pg_text_array_binary(vals, vlens, used, &p->lengths[3])) == NULL ||
        (p->values[4] = bp_pg_int_array_text(ns, used)) == NULL)
        goto done;
    rc = BP_COUNT_OK;
done:
    free(kinds);
    free(keys);
    free(vals);
    free(klens);
    free(vlens);
    free(ones);
    free(slens);
    free(ns);
    return rc;
}

void bp_count_params_free(bp_count_params_t *p)
{
    for (int i = 0; i < 5; i++) {
        free(p->values[i]);
        p->values[i] = NULL;
    }
}
