/* count_terms.c - an object's counter terms in C, the rules of migration 007's bp_count_terms_sql
 * (see count_terms.h), summed per term in a hash table for the one statement that adds them. */
#include "count_terms.h"

#include <stdlib.h>
#include <string.h>

#include "bp_count_key.h"
#include "bp_json_scan.h"

typedef struct entry {
    uint64_t hash;
    char kind;
    char *key; /* NULL: none */
    size_t key_len;
    char *value; /* NULL: none */
    size_t value_len;
    int64_t n;
} entry_t;

/* One element of the object being added: offsets into scratch. */
typedef struct element {
    int has_key, has_value, dense, is_string;
    size_t key_off, key_len;
    size_t val_off, val_len; /* canonical JSON text */
    size_t str_off, str_len; /* a string value, decoded */
} element_t;

/* One term of the object being added, before deduplication: offsets into scratch. */
typedef struct cand {
    char kind;
    int has_key, has_value;
    size_t key_off, key_len, val_off, val_len;
} cand_t;

struct bp_count_terms {
    entry_t *entries;
    size_t nentries, cap_entries;
    size_t *slots; /* open addressing: index + 1 into entries, 0 empty */
    size_t nslots;
    /* per object, reused */
    char *scratch;
    size_t scratch_len, scratch_cap;
    element_t *els;
    size_t nels, cap_els;
    cand_t *cands;
    size_t ncands, cap_cands;
};

bp_count_terms_t *bp_count_terms_new(void)
{
    return calloc(1, sizeof(bp_count_terms_t));
}

void bp_count_terms_clear(bp_count_terms_t *t)
{
    for (size_t i = 0; i < t->nentries; i++) {
        free(t->entries[i].key);
        free(t->entries[i].value);
    }
    t->nentries = 0;
    if (t->slots != NULL)
        memset(t->slots, 0, t->nslots * sizeof(*t->slots));
}

void bp_count_terms_free(bp_count_terms_t *t)
{
    if (t == NULL)
        return;
    bp_count_terms_clear(t);
    free(t->entries);
    free(t->slots);
    free(t->scratch);
    free(t->els);
    free(t->cands);
    free(t);
}

size_t bp_count_terms_size(const bp_count_terms_t *t)
{
    return t->nentries;
}

int bp_count_terms_next(const bp_count_terms_t *t, size_t *pos, bp_count_term_t *out)
{
    while (*pos < t->nentries) {
        const entry_t *e = &t->entries[(*pos)++];
        if (e->n == 0)
            continue;
        out->kind = e->kind;
        out->key = e->key;
        out->key_len = e->key_len;
        out->value = e->value;
        out->value_len = e->value_len;
        out->n = e->n;
        return 1;
    }
    return 0;
}

/* ---- the hash table ---- */

static uint64_t fnv(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static uint64_t term_hash(char kind, const char *key, size_t klen, const char *val, size_t vlen)
{
    uint64_t h = 14695981039346656037ULL;
    char head[2] = {kind, (char)((key != NULL) | (val != NULL) << 1)};
    h = fnv(h, head, 2);
    if (key != NULL) {
        h = fnv(h, key, klen);
        h = fnv(h, "\0", 1); /* keys hold no NUL: the key ends here */
    }
    if (val != NULL)
        h = fnv(h, val, vlen);
    return h;
}

static int same(const entry_t *e, char kind, const char *key, size_t klen, const char *val, size_t vlen)
{
    if (e->kind != kind || (e->key == NULL) != (key == NULL) || (e->value == NULL) != (val == NULL))
        return 0;
    if (key != NULL && (e->key_len != klen || memcmp(e->key, key, klen) != 0))
        return 0;
    return val == NULL || (e->value_len == vlen && memcmp(e->value, val, vlen) == 0);
}

static int grow_slots(bp_count_terms_t *t)
{
    size_t n = t->nslots ? t->nslots * 2 : 256;
    size_t *slots = calloc(n, sizeof(*slots));
    if (slots == NULL)
        return BP_COUNT_NOMEM;
    for (size_t i = 0; i < t->nentries; i++) {
        size_t s = (size_t)t->entries[i].hash & (n - 1);
        while (slots[s] != 0)
            s = (s + 1) & (n - 1);
        slots[s] = i + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->nslots = n;
    return BP_COUNT_OK;
}

/* Add n to the term (kind, key, val); key / val NULL when the term has none. */
static int term_add(bp_count_terms_t *t, char kind, const char *key, size_t klen, const char *val, size_t vlen,
                    int64_t n)
{
    if ((t->nentries + 1) * 2 > t->nslots && grow_slots(t) != BP_COUNT_OK)
        return BP_COUNT_NOMEM;
    uint64_t h = term_hash(kind, key, klen, val, vlen);
    size_t s = (size_t)h & (t->nslots - 1);
    while (t->slots[s] != 0) {
        entry_t *e = &t->entries[t->slots[s] - 1];
        if (e->hash == h && same(e, kind, key, klen, val, vlen)) {
            e->n += n;
            return BP_COUNT_OK;
        }
        s = (s + 1) & (t->nslots - 1);
    }
    if (t->nentries == t->cap_entries) {
        size_t cap = t->cap_entries ? t->cap_entries * 2 : 128;
        entry_t *ne = realloc(t->entries, cap * sizeof(*ne));
        if (ne == NULL)
            return BP_COUNT_NOMEM;
        t->entries = ne;
        t->cap_entries = cap;
    }
    entry_t *e = &t->entries[t->nentries];
    *e = (entry_t){.hash = h, .kind = kind, .key_len = klen, .value_len = vlen, .n = n};
    if ((key != NULL && (e->key = bp_count_dup(key, klen)) == NULL) ||
        (val != NULL && (e->value = bp_count_dup(val, vlen)) == NULL)) {
        free(e->key);
        return BP_COUNT_NOMEM;
    }
    t->slots[s] = ++t->nentries;
    return BP_COUNT_OK;
}

int bp_count_terms_merge(bp_count_terms_t *dst, const bp_count_terms_t *src)
{
    for (size_t i = 0; i < src->nentries; i++) {
        const entry_t *e = &src->entries[i];
        int rc = term_add(dst, e->kind, e->key, e->key_len, e->value, e->value_len, e->n);
        if (rc != BP_COUNT_OK)
            return rc;
    }
    return BP_COUNT_OK;
}

/* ---- one object ---- */

/* Room for more bytes in scratch; returns the offset where they go, or (size_t)-1 without memory. */
static size_t scratch_reserve(bp_count_terms_t *t, size_t more)
{
    if (t->scratch_len + more > t->scratch_cap) {
        size_t cap = t->scratch_cap ? t->scratch_cap : 4096;
        while (cap < t->scratch_len + more)
            cap *= 2;
        char *s = realloc(t->scratch, cap);
        if (s == NULL)
            return (size_t)-1;
        t->scratch = s;
        t->scratch_cap = cap;
    }
    return t->scratch_len;
}

static size_t scratch_put(bp_count_terms_t *t, const char *s, size_t n)
{
    size_t off = scratch_reserve(t, n);
    if (off != (size_t)-1) {
        memcpy(t->scratch + off, s, n);
        t->scratch_len += n;
    }
    return off;
}

/* Append the decoded string at scratch[src..src+n) as JSON text (bp_count_json_string). The source
 * is an offset: reserving room may move scratch. */
static size_t put_json_string(bp_count_terms_t *t, size_t src, size_t n, size_t *len)
{
    size_t off = scratch_reserve(t, 2 + 6 * n);
    if (off == (size_t)-1)
        return off;
    *len = bp_count_json_string(t->scratch + off, t->scratch + src, n);
    t->scratch_len += *len;
    return off;
}

/* Decode a string literal into scratch. */
static size_t put_decoded(bp_count_terms_t *t, const char *lit, size_t llen, size_t *len)
{
    size_t off = scratch_reserve(t, llen);
    if (off == (size_t)-1)
        return off;
    if (bp_json_string_decode(lit, llen, t->scratch + off, len) != 0)
        return (size_t)-2;
    t->scratch_len += *len;
    return off;
}

static int is_sparse(const bp_count_terms_t *t, const element_t *el, const char *const *sparse, size_t nsparse)
{
    const char *k = t->scratch + el->key_off;
    size_t lo = 0, hi = nsparse;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        size_t sl = strlen(sparse[mid]);
        int c = memcmp(sparse[mid], k, sl < el->key_len ? sl : el->key_len);
        if (c == 0)
            c = (sl > el->key_len) - (sl < el->key_len);
        if (c == 0)
            return 1;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* Read the elements of data into t->els (strings into scratch). */
static int read_elements(bp_count_terms_t *t, const char *data, size_t dlen, const char *const *sparse,
                         size_t nsparse)
{
    size_t apos = 0, elen;
    const char *elem;
    int rc;
    while ((rc = bp_json_array_next(data, dlen, &apos, &elem, &elen)) == 1) {
        if (t->nels == t->cap_els) {
            size_t cap = t->cap_els ? t->cap_els * 2 : 16;
            element_t *ne = realloc(t->els, cap * sizeof(*ne));
            if (ne == NULL)
                return BP_COUNT_NOMEM;
            t->els = ne;
            t->cap_els = cap;
        }
        element_t *el = &t->els[t->nels];
        memset(el, 0, sizeof(*el));
        if (elen == 0 || elem[0] != '{')
            continue; /* not an object: no term (007: key and value NULL) */
        t->nels++;
        size_t opos = 0, nlen, vlen;
        const char *name, *v;
        int orc;
        while ((orc = bp_json_object_next(elem, elen, &opos, &name, &nlen, &v, &vlen)) == 1) {
            char nm[8];
            size_t nml;
            if (nlen > sizeof(nm) || bp_json_string_decode(name, nlen, nm, &nml) != 0)
                continue;
            if (nml == 3 && memcmp(nm, "key", 3) == 0) {
                /* a key that is not a string counts as none (007: jsonb_typeof(e -> 'key') = 'string') */
                el->has_key = 0;
                if (vlen > 0 && v[0] == '"') {
                    size_t off = put_decoded(t, v, vlen, &el->key_len);
                    if (off >= (size_t)-2)
                        return off == (size_t)-1 ? BP_COUNT_NOMEM : BP_COUNT_MALFORMED;
                    el->key_off = off;
                    el->has_key = 1;
                }
            } else if (nml == 5 && memcmp(nm, "value", 5) == 0) {
                el->has_value = 1;
                el->is_string = 0;
                if (vlen > 0 && v[0] == '"') {
                    size_t off = put_decoded(t, v, vlen, &el->str_len);
                    if (off >= (size_t)-2)
                        return off == (size_t)-1 ? BP_COUNT_NOMEM : BP_COUNT_MALFORMED;
                    el->str_off = off;
                    el->is_string = 1;
                    if ((off = put_json_string(t, el->str_off, el->str_len, &el->val_len)) ==
                        (size_t)-1)
                        return BP_COUNT_NOMEM;
                    el->val_off = off;
                } else if (vlen > 0 && (v[0] == 't' || v[0] == 'f' || v[0] == 'n')) {
                    if ((el->val_off = scratch_put(t, v, vlen)) == (size_t)-1)
                        return BP_COUNT_NOMEM;
                    el->val_len = vlen;
                } else if (vlen > 0 && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9'))) {
                    char *num;
                    size_t numlen;
                    int nrc = bp_count_canon_number(v, vlen, &num, &numlen);
                    if (nrc != BP_COUNT_OK)
                        return nrc;
                    el->val_off = scratch_put(t, num, numlen);
                    el->val_len = numlen;
                    free(num);
                    if (el->val_off == (size_t)-1)
                        return BP_COUNT_NOMEM;
                } else {
                    return BP_COUNT_MALFORMED; /* an object or array value: the validator refuses them */
                }
            }
        }
        if (orc != 0)
            return BP_COUNT_MALFORMED;
        /* an element without a key is dense (007's jsonpath: no key is not a sparse key) */
        el->dense = !el->has_key || !is_sparse(t, el, sparse, nsparse);
    }
    return rc == 0 ? BP_COUNT_OK : BP_COUNT_MALFORMED;
}

static int cand_add(bp_count_terms_t *t, char kind, int has_key, size_t koff, size_t klen, int has_value, size_t voff,
                    size_t vlen)
{
    if (t->ncands == t->cap_cands) {
        size_t cap = t->cap_cands ? t->cap_cands * 2 : 64;
        cand_t *nc = realloc(t->cands, cap * sizeof(*nc));
        if (nc == NULL)
            return BP_COUNT_NOMEM;
        t->cands = nc;
        t->cap_cands = cap;
    }
    t->cands[t->ncands++] = (cand_t){.kind = kind, .has_key = has_key, .key_off = koff, .key_len = klen,
                                     .has_value = has_value, .val_off = voff, .val_len = vlen};
    return BP_COUNT_OK;
}

static int cmp_bytes(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    return c != 0 ? c : (al > bl) - (al < bl);
}

/* Order of candidates (arg: the scratch buffer their offsets point into). */
static int cmp_cand(const void *x, const void *y, void *arg)
{
    const cand_t *a = x, *b = y;
    const char *sort_base = arg;
    if (a->kind != b->kind)
        return (a->kind > b->kind) - (a->kind < b->kind);
    if (a->has_key != b->has_key)
        return a->has_key - b->has_key;
    int c = a->has_key ? cmp_bytes(sort_base + a->key_off, a->key_len, sort_base + b->key_off, b->key_len) : 0;
    if (c != 0 || a->has_value != b->has_value)
        return c != 0 ? c : a->has_value - b->has_value;
    return a->has_value ? cmp_bytes(sort_base + a->val_off, a->val_len, sort_base + b->val_off, b->val_len) : 0;
}

/* The 'x' / 'y' terms: a dense string element S that the typed rule reads as t, in an object that
 * also holds t as the value of a dense element (under the same key for 'y'). */
static int typed_terms(bp_count_terms_t *t)
{
    size_t nels = t->nels;
    for (size_t i = 0; i < nels; i++) {
        element_t *el = &t->els[i];
        if (!el->dense || !el->has_value || !el->is_string)
            continue;
        char *typed;
        size_t tlen;
        int rc = bp_count_typed(t->scratch + el->str_off, el->str_len, &typed, &tlen);
        if (rc <= 0) {
            if (rc == 0)
                continue;
            return rc;
        }
        size_t pair_off = (size_t)-1, pair_len = 0;
        for (size_t j = 0; j < nels && rc >= 0; j++) {
            const element_t *e2 = &t->els[j];
            if (!e2->dense || !e2->has_value || e2->val_len != tlen ||
                memcmp(t->scratch + e2->val_off, typed, tlen) != 0)
                continue;
            if (pair_off == (size_t)-1) { /* [S, t], as jsonb_build_array(S, t) prints it */
                size_t need = el->val_len + tlen + 4;
                if ((pair_off = scratch_reserve(t, need)) == (size_t)-1) {
                    rc = BP_COUNT_NOMEM;
                    break;
                }
                char *p = t->scratch + pair_off;
                *p++ = '[';
                memcpy(p, t->scratch + el->val_off, el->val_len);
                p += el->val_len;
                *p++ = ',';
                *p++ = ' ';
                memcpy(p, typed, tlen);
                p += tlen;
                *p++ = ']';
                pair_len = need;
                t->scratch_len += need;
            }
            if (cand_add(t, 'x', 0, 0, 0, 1, pair_off, pair_len) != BP_COUNT_OK)
                rc = BP_COUNT_NOMEM;
            else if (el->has_key && e2->has_key &&
                     cmp_bytes(t->scratch + el->key_off, el->key_len, t->scratch + e2->key_off, e2->key_len) == 0 &&
                     cand_add(t, 'y', 1, el->key_off, el->key_len, 1, pair_off, pair_len) != BP_COUNT_OK)
                rc = BP_COUNT_NOMEM;
        }
        free(typed);
        if (rc < 0)
            return rc;
    }
    return BP_COUNT_OK;
}

int bp_count_terms_add_object(bp_count_terms_t *t, const char *batch_id, size_t blen, const char *data, size_t dlen,
                              const char *const *sparse, size_t nsparse, int64_t sign)
{
    t->scratch_len = t->nels = t->ncands = 0;
    int rc = read_elements(t, data, dlen, sparse, nsparse);
    if (rc != BP_COUNT_OK)
        return rc;
    for (size_t i = 0; i < t->nels; i++) {
        const element_t *el = &t->els[i];
        if (el->has_key && (rc = cand_add(t, 'k', 1, el->key_off, el->key_len, 0, 0, 0)) != BP_COUNT_OK)
            return rc;
        if (!el->dense || !el->has_value)
            continue;
        if ((rc = cand_add(t, 'v', 0, 0, 0, 1, el->val_off, el->val_len)) != BP_COUNT_OK ||
            (el->has_key &&
             (rc = cand_add(t, 'p', 1, el->key_off, el->key_len, 1, el->val_off, el->val_len)) != BP_COUNT_OK))
            return rc;
    }
    if ((rc = typed_terms(t)) != BP_COUNT_OK)
        return rc;
    /* once per object: sort, then add each distinct term */
    if (t->ncands > 1) /* cands is NULL until an object has a term: never pass NULL to qsort_r */
        qsort_r(t->cands, t->ncands, sizeof(*t->cands), cmp_cand, t->scratch);
    for (size_t i = 0; i < t->ncands; i++) {
        const cand_t *c = &t->cands[i];
        if (i > 0 && cmp_cand(&t->cands[i - 1], c, t->scratch) == 0)
            continue;
        if ((rc = term_add(t, c->kind, c->has_key ? t->scratch + c->key_off : NULL, c->key_len,
                           c->has_value ? t->scratch + c->val_off : NULL, c->val_len, sign)) != BP_COUNT_OK)
            return rc;
    }
    if ((rc = term_add(t, 't', NULL, 0, NULL, 0, sign)) != BP_COUNT_OK)
        return rc;
    return term_add(t, 'b', batch_id, blen, NULL, 0, sign);
}
