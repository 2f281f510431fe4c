/* bp_payload.c - parsing request bodies into jansson documents and validating batches and single
 * objects, reporting every violation with a JSON pointer. The rules are listed in bp_payload.h. */
#include "bp_payload.h"

#include "bp_json_scan.h"
#include "bp_utf8.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ---------------------------------------------------------------------------------------------
 * UTF-8 and text helpers. Every pointer and message must be valid UTF-8, or json_string() in
 * bp_violations_to_json refuses it; jansson's error texts may quote a broken byte sequence.
 */

/* Copy src (n bytes) into dst (size bytes, NUL-terminated) for reading by a person: valid UTF-8 is
 * kept, '"' and '\' are escaped when quoted, control bytes and broken sequences become \xNN. When the
 * text is longer than max bytes, or dst is full, it is cut at a character boundary and ends in "...".
 * Returns the number of bytes written (without the NUL). */
static size_t text_render(char *dst, size_t size, const char *src, size_t n, size_t max, int quoted)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t o = 0, i = 0;

    if (size < 4) {
        if (size > 0)
            dst[0] = '\0';
        return 0;
    }
    while (i < n) {
        char piece[8];
        size_t plen, adv;
        size_t seq = bp_utf8_sequence(src + i, n - i);

        if (seq == 0 || s[i] < 0x20 || s[i] == 0x7f) {
            snprintf(piece, sizeof piece, "\\x%02x", s[i]);
            plen = 4;
            adv = 1;
        } else if (quoted && (s[i] == '"' || s[i] == '\\')) {
            piece[0] = '\\';
            piece[1] = (char)s[i];
            plen = 2;
            adv = 1;
        } else {
            memcpy(piece, s + i, seq);
            plen = seq;
            adv = seq;
        }
        /* keep room for "..." and the NUL */
        if (o + plen > max || o + plen + 4 > size) {
            memcpy(dst + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(dst + o, piece, plen);
        o += plen;
        i += adv;
    }
    dst[o] = '\0';
    return o;
}

/* Cut a NUL-terminated buffer that snprintf may have truncated back to a character boundary. */
static void utf8_trim(char *s)
{
    s[bp_utf8_valid_prefix(s, strlen(s))] = '\0';
}

/* "an object", "a string", ... for messages. */
static const char *type_phrase(const json_t *j)
{
    if (j == NULL)
        return "nothing";
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "an unknown type";
}

/* ---------------------------------------------------------------------------------------------
 * Collecting violations. Pointers are built only when something is wrong: the hot path of a valid
 * 3,000-object batch formats nothing.
 */

#define QUOTE_MAX 64 /* bytes of a user-supplied name or id quoted in a message */

struct id_store;

typedef struct vctx {
    const bp_payload_limits_t *lim;
    bp_violations_t *v; /* may be NULL */
    size_t total;
    struct id_store *ids_store; /* NULL: ids stay in the document; else copied there (lean path) */
} vctx_t;

/* Where a value is: the index in "objects" (-1: not inside one, as in the single-object form) and the
 * index in "data" (-1: not inside a pair). A member name is passed beside it. */
typedef struct loc {
    long long obj;
    long long pair;
} loc_t;

static const loc_t LOC_ROOT = {-1, -1};

static void pointer_render(char *dst, size_t size, loc_t loc, const char *member, size_t member_len)
{
    int n = 0;

    if (loc.obj >= 0 && loc.pair >= 0)
        n = snprintf(dst, size, "/objects/%lld/data/%lld", loc.obj, loc.pair);
    else if (loc.obj >= 0)
        n = snprintf(dst, size, "/objects/%lld", loc.obj);
    else if (loc.pair >= 0)
        n = snprintf(dst, size, "/data/%lld", loc.pair);
    else
        dst[0] = '\0';
    if (member == NULL || n < 0 || (size_t)n + 1 >= size)
        return;

    /* RFC 6901: '~' is written "~0" and '/' "~1"; a name that does not fit is cut at a character */
    size_t o = (size_t)n;
    const unsigned char *s = (const unsigned char *)member;
    dst[o++] = '/';
    for (size_t i = 0; i < member_len;) {
        size_t seq = bp_utf8_sequence(member + i, member_len - i);
        const char *piece = (const char *)s + i;
        size_t plen = seq;

        if (seq == 0 || s[i] == '\0') /* cannot come from the parser; stop rather than mislead */
            break;
        if (s[i] == '~') {
            piece = "~0";
            plen = 2;
        } else if (s[i] == '/') {
            piece = "~1";
            plen = 2;
        }
        if (o + plen >= size)
            break;
        memcpy(dst + o, piece, plen);
        o += plen;
        i += seq;
    }
    dst[o] = '\0';
}

static void report(vctx_t *ctx, loc_t loc, const char *member, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Record one violation at loc (+ member). The message is formatted only if it will be stored. */
static void report(vctx_t *ctx, loc_t loc, const char *member, const char *fmt, ...)
{
    ctx->total++;
    if (ctx->v == NULL)
        return;
    ctx->v->total = ctx->total;
    if (ctx->v->count >= BP_MAX_VIOLATIONS)
        return;

    bp_violation_t *item = &ctx->v->items[ctx->v->count++];
    pointer_render(item->pointer, sizeof item->pointer, loc, member, member ? strlen(member) : 0);

    va_list ap;
    va_start(ap, fmt);
    vsnprintf(item->message, sizeof item->message, fmt, ap);
    va_end(ap);
    utf8_trim(item->message);
}

/* The same for a member name that came from the document (any bytes, maybe long). */
static void report_unknown(vctx_t *ctx, loc_t loc, const char *name, size_t name_len, const char *allowed)
{
    ctx->total++;
    if (ctx->v == NULL)
        return;
    ctx->v->total = ctx->total;
    if (ctx->v->count >= BP_MAX_VIOLATIONS)
        return;

    bp_violation_t *item = &ctx->v->items[ctx->v->count++];
    char quoted[QUOTE_MAX + 8];

    pointer_render(item->pointer, sizeof item->pointer, loc, name, name_len);
    text_render(quoted, sizeof quoted, name, name_len, QUOTE_MAX, 1);
    snprintf(item->message, sizeof item->message, "unknown property \"%s\"; allowed properties are %s",
             quoted, allowed);
    utf8_trim(item->message);
}

/* The members an object of the document may have: names[0..n), the first `required` of them
 * required. One table per kind of object (batch, object, pair, single object, delete). */
typedef struct members {
    const char *const *names;
    size_t n, required;
} members_t;

#define MEMBERS(required, ...)                                                                            \
    {(const char *const[]){__VA_ARGS__}, sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *), \
     (required)}

/* Before the members' own checks: look up o's members of the table into vals[0..m->n) (NULL when
 * absent; one lookup each) and report the required ones that o lacks, in the table's order. Returns how
 * many are present, for report_unknown_members. */
static size_t get_members(vctx_t *ctx, loc_t loc, const json_t *o, const members_t *m, const json_t **vals)
{
    size_t present = 0;
    for (size_t i = 0; i < m->n; i++) {
        vals[i] = json_object_get(o, m->names[i]);
        if (vals[i] != NULL)
            present++;
        else if (i < m->required)
            report(ctx, loc, NULL, "required property \"%s\" is missing", m->names[i]);
    }
    return present;
}

/* After them: when o holds more than the present members of the table, report each member the table
 * does not name; the message lists the ones it does ("a", "b" and "c"). */
static void report_unknown_members(vctx_t *ctx, loc_t loc, const json_t *o, const members_t *m, size_t present)
{
    if (json_object_size(o) <= present)
        return;
    char allowed[128];
    size_t len = 0;
    allowed[0] = '\0';
    for (size_t i = 0; i < m->n && len < sizeof(allowed); i++) {
        const char *sep = i == 0 ? "" : i + 1 == m->n ? " and " : ", ";
        int w = snprintf(allowed + len, sizeof(allowed) - len, "%s\"%s\"", sep, m->names[i]);
        len += w > 0 ? (size_t)w : 0;
    }
    const char *name;
    size_t name_len;
    json_t *member;
    json_object_keylen_foreach((json_t *)o, name, name_len, member)
    {
        (void)member;
        size_t i = 0;
        while (i < m->n && strcmp(name, m->names[i]) != 0)
            i++;
        if (i == m->n)
            report_unknown(ctx, loc, name, name_len, allowed);
    }
}

static void violations_clear(bp_violations_t *v)
{
    if (v != NULL) {
        v->count = 0;
        v->total = 0;
    }
}

/* ---------------------------------------------------------------------------------------------
 * The duplicate object_id check: an open-addressing set of (id, first index), keyed by SipHash-1-3
 * with a fresh random key per call, so a client cannot send ids crafted to collide and turn the
 * linear check into a quadratic one.
 */

typedef struct id_slot {
    const char *id; /* borrowed from the document; NULL = empty */
    uint32_t len;
    uint32_t index; /* position in "objects" of the first occurrence */
} id_slot_t;

typedef struct id_set {
    id_slot_t *slots;
    size_t mask;
    uint64_t k0, k1;
} id_set_t;

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                           \
    do {                                                                                                   \
        v0 += v1;                                                                                          \
        v1 = ROTL(v1, 13);                                                                                 \
        v1 ^= v0;                                                                                          \
        v0 = ROTL(v0, 32);                                                                                 \
        v2 += v3;                                                                                          \
        v3 = ROTL(v3, 16);                                                                                 \
        v3 ^= v2;                                                                                          \
        v0 += v3;                                                                                          \
        v3 = ROTL(v3, 21);                                                                                 \
        v3 ^= v0;                                                                                          \
        v2 += v1;                                                                                          \
        v1 = ROTL(v1, 17);                                                                                 \
        v1 ^= v2;                                                                                          \
        v2 = ROTL(v2, 32);                                                                                 \
    } while (0)

static uint64_t siphash13(uint64_t k0, uint64_t k1, const unsigned char *in, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
    uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
    uint64_t v3 = 0x7465646279746573ULL ^ k1;
    uint64_t b = (uint64_t)len << 56;
    const unsigned char *end = in + (len & ~(size_t)7);

    for (; in != end; in += 8) {
        uint64_t m = 0;
        for (int i = 0; i < 8; i++)
            m |= (uint64_t)in[i] << (8 * i);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)in[i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* Room for n ids at a load of at most one half. Returns 0, or -1 without memory. */
static int id_set_init(id_set_t *set, size_t n)
{
    size_t cap = 16;
    uint64_t key[2];

    while (cap < 2 * n)
        cap <<= 1;
    set->slots = calloc(cap, sizeof *set->slots);
    if (set->slots == NULL)
        return -1;
    set->mask = cap - 1;
    if (getrandom(key, sizeof key, GRND_NONBLOCK) != (ssize_t)sizeof key) {
        /* no entropy yet (early boot): a weaker key still beats a fixed one */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        key[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)set->slots;
        key[1] = key[0] * 0x9e3779b97f4a7c15ULL;
    }
    set->k0 = key[0];
    set->k1 = key[1];
    return 0;
}

/* Add id; returns -1 if new, or the index of its first occurrence. */
static long long id_set_add(id_set_t *set, const char *id, size_t len, size_t index)
{
    size_t i = (size_t)siphash13(set->k0, set->k1, (const unsigned char *)id, len) & set->mask;

    for (;; i = (i + 1) & set->mask) {
        id_slot_t *slot = &set->slots[i];
        if (slot->id == NULL) {
            slot->id = id;
            slot->len = (uint32_t)len;
            slot->index = (uint32_t)index;
            return -1;
        }
        if (slot->len == len && memcmp(slot->id, id, len) == 0)
            return slot->index;
    }
}

/* Copies of object ids for the lean path, whose documents are freed one object at a time: blocks of
 * at least 64 KiB, freed together. */
typedef struct id_block {
    struct id_block *next;
    size_t used, size;
    char bytes[];
} id_block_t;

typedef struct id_store {
    id_block_t *head;
} id_store_t;

/* A copy of id[0..len) that lives until id_store_free, or NULL without memory. */
static const char *id_store_copy(id_store_t *st, const char *id, size_t len)
{
    id_block_t *b = st->head;
    if (b == NULL || b->size - b->used < len) {
        size_t size = len > 65536 ? len : 65536;
        if ((b = malloc(sizeof(*b) + size)) == NULL)
            return NULL;
        b->next = st->head;
        b->used = 0;
        b->size = size;
        st->head = b;
    }
    char *copy = b->bytes + b->used;
    memcpy(copy, id, len);
    b->used += len;
    return copy;
}

static void id_store_free(id_store_t *st)
{
    while (st->head != NULL) {
        id_block_t *next = st->head->next;
        free(st->head);
        st->head = next;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Field checks.
 */

/* batch_id or object_id at loc/name. Returns 1 if it is valid. */
static int check_id(vctx_t *ctx, loc_t loc, const char *name, const json_t *id)
{
    if (!json_is_string(id)) {
        report(ctx, loc, name, "%s must be a string, not %s", name, type_phrase(id));
        return 0;
    }
    const unsigned char *s = (const unsigned char *)json_string_value(id);
    size_t len = json_string_length(id);
    int valid = 1;

    if (len == 0) {
        report(ctx, loc, name, "%s must not be empty", name);
        return 0;
    }
    if ((long long)len > ctx->lim->max_id_len) {
        report(ctx, loc, name, "%s is longer than %lld bytes (it has %zu)", name, ctx->lim->max_id_len, len);
        valid = 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f) {
            report(ctx, loc, name, "%s must not contain control characters (byte 0x%02x at offset %zu)", name,
                   s[i], i);
            valid = 0;
            break;
        }
    }
    return valid;
}

/* One pair {"key", "value"} at loc (obj, pair set). */
static void check_pair(vctx_t *ctx, loc_t loc, const json_t *pair)
{
    if (!json_is_object(pair)) {
        report(ctx, loc, NULL, "each entry of data must be an object with \"key\" and \"value\", not %s",
               type_phrase(pair));
        return;
    }
    const members_t members = MEMBERS(2, "key", "value");
    const json_t *vals[2];
    size_t present = get_members(ctx, loc, pair, &members, vals);
    const json_t *key = vals[0], *value = vals[1];

    if (key != NULL) {
        if (!json_is_string(key)) {
            report(ctx, loc, "key", "key must be a string, not %s", type_phrase(key));
        } else {
            size_t len = json_string_length(key);
            if (len == 0)
                report(ctx, loc, "key", "key must not be empty");
            else if ((long long)len > ctx->lim->max_key_len)
                report(ctx, loc, "key", "key is longer than %lld bytes (it has %zu)", ctx->lim->max_key_len,
                       len);
        }
    }
    if (value != NULL) {
        if (json_is_object(value) || json_is_array(value)) {
            report(ctx, loc, "value", "value must be a string, number, boolean or null, not %s",
                   type_phrase(value));
        } else if (json_is_string(value)) {
            size_t len = json_string_length(value);
            if ((long long)len > ctx->lim->max_string_len)
                report(ctx, loc, "value", "value is longer than %lld bytes (it has %zu)",
                       ctx->lim->max_string_len, len);
        }
    }
    report_unknown_members(ctx, loc, pair, &members, present);
}

/* The data array of the object at loc (loc.pair unset). */
static void check_data(vctx_t *ctx, loc_t loc, const json_t *data)
{
    if (!json_is_array(data)) {
        report(ctx, loc, "data", "data must be an array, not %s", type_phrase(data));
        return;
    }
    size_t n = json_array_size(data);
    if ((long long)n > ctx->lim->max_pairs)
        report(ctx, loc, "data", "data has more than %lld pairs (it has %zu)", ctx->lim->max_pairs, n);
    for (size_t i = 0; i < n; i++) {
        loc_t at = {loc.obj, (long long)i};
        check_pair(ctx, at, json_array_get(data, i));
    }
}

/* One entry of "objects" at loc.obj; records its object_id in ids (may be NULL for a single object). */
static void check_object(vctx_t *ctx, loc_t loc, const json_t *obj, id_set_t *ids, size_t index)
{
    if (!json_is_object(obj)) {
        report(ctx, loc, NULL,
               "each entry of objects must be an object with \"object_id\" and \"data\", not %s",
               type_phrase(obj));
        return;
    }
    const members_t members = MEMBERS(2, "object_id", "data");
    const json_t *vals[2];
    size_t present = get_members(ctx, loc, obj, &members, vals);
    const json_t *object_id = vals[0], *data = vals[1];

    if (object_id != NULL) {
        /* only valid ids take part in the uniqueness check: an empty id is reported once, as empty */
        if (check_id(ctx, loc, "object_id", object_id) && ids != NULL) {
            const char *id = json_string_value(object_id);
            size_t len = json_string_length(object_id);
            long long first = -1;
            if (ctx->ids_store == NULL)
                first = id_set_add(ids, id, len, index);
            else if ((id = id_store_copy(ctx->ids_store, id, len)) != NULL)
                first = id_set_add(ids, id, len, index);
            else
                report(ctx, LOC_ROOT, NULL, "out of memory while checking object_id uniqueness");
            if (first >= 0) {
                char quoted[QUOTE_MAX + 8];
                text_render(quoted, sizeof quoted, id, len, QUOTE_MAX, 1);
                report(ctx, loc, "object_id", "object_id \"%s\" already appears at /objects/%lld", quoted,
                       first);
            }
        }
    }
    if (data != NULL)
        check_data(ctx, loc, data);
    report_unknown_members(ctx, loc, obj, &members, present);
}

static void check_objects(vctx_t *ctx, const json_t *objects)
{
    if (!json_is_array(objects)) {
        report(ctx, LOC_ROOT, "objects", "objects must be an array, not %s", type_phrase(objects));
        return;
    }
    size_t n = json_array_size(objects);
    if (n == 0) {
        report(ctx, LOC_ROOT, "objects", "objects must contain at least 1 object");
        return;
    }
    if ((long long)n > ctx->lim->max_objects)
        report(ctx, LOC_ROOT, "objects", "objects has more than %lld entries (it has %zu)",
               ctx->lim->max_objects, n);

    id_set_t ids;
    id_set_t *idsp = NULL;
    if (n > 1) {
        if (n > UINT32_MAX || id_set_init(&ids, n) < 0)
            report(ctx, LOC_ROOT, NULL, "out of memory while checking object_id uniqueness");
        else
            idsp = &ids;
    }
    for (size_t i = 0; i < n; i++) {
        loc_t at = {(long long)i, -1};
        check_object(ctx, at, json_array_get(objects, i), idsp, i);
    }
    if (idsp != NULL)
        free(ids.slots);
}

/* ---------------------------------------------------------------------------------------------
 * Validation entry points.
 */

int bp_payload_validate_batch(const json_t *doc, const bp_payload_limits_t *lim, bp_violations_t *v)
{
    vctx_t ctx = {.lim = lim, .v = v, .total = 0};

    violations_clear(v);
    if (!json_is_object(doc)) {
        report(&ctx, LOC_ROOT, NULL, "the document must be a JSON object, not %s", type_phrase(doc));
        return -1;
    }
    const members_t members = MEMBERS(2, "batch_id", "objects");
    const json_t *vals[2];
    size_t present = get_members(&ctx, LOC_ROOT, doc, &members, vals);
    const json_t *batch_id = vals[0], *objects = vals[1];

    if (batch_id != NULL)
        check_id(&ctx, LOC_ROOT, "batch_id", batch_id);
    if (objects != NULL)
        check_objects(&ctx, objects);
    report_unknown_members(&ctx, LOC_ROOT, doc, &members, present);
    return ctx.total == 0 ? 0 : -1;
}

int bp_payload_validate_object(const json_t *doc, const bp_payload_limits_t *lim, bp_violations_t *v)
{
    vctx_t ctx = {.lim = lim, .v = v, .total = 0};

    violations_clear(v);
    if (!json_is_object(doc)) {
        report(&ctx, LOC_ROOT, NULL, "the document must be a JSON object, not %s", type_phrase(doc));
        return -1;
    }
    const members_t members = MEMBERS(3, "batch_id", "object_id", "data");
    const json_t *vals[3];
    size_t present = get_members(&ctx, LOC_ROOT, doc, &members, vals);
    const json_t *batch_id = vals[0], *object_id = vals[1], *data = vals[2];

    if (batch_id != NULL)
        check_id(&ctx, LOC_ROOT, "batch_id", batch_id);
    if (object_id != NULL)
        check_id(&ctx, LOC_ROOT, "object_id", object_id);
    if (data != NULL)
        check_data(&ctx, LOC_ROOT, data);
    report_unknown_members(&ctx, LOC_ROOT, doc, &members, present);
    return ctx.total == 0 ? 0 : -1;
}

int bp_payload_is_delete(const json_t *doc)
{
    return json_is_object(doc) && json_object_get(doc, "op") != NULL;
}

int bp_payload_validate_delete(const json_t *doc, const bp_payload_limits_t *lim, bp_violations_t *v)
{
    vctx_t ctx = {.lim = lim, .v = v, .total = 0};

    violations_clear(v);
    if (!json_is_object(doc)) {
        report(&ctx, LOC_ROOT, NULL, "the document must be a JSON object, not %s", type_phrase(doc));
        return -1;
    }
    const members_t members = MEMBERS(2, "op", "batch_id", "object_id", "cascade");
    const json_t *vals[4];
    size_t present = get_members(&ctx, LOC_ROOT, doc, &members, vals);
    const json_t *op = vals[0], *batch_id = vals[1], *object_id = vals[2], *cascade = vals[3];

    if (op != NULL) {
        if (!json_is_string(op) || strcmp(json_string_value(op), "delete") != 0 ||
            json_string_length(op) != strlen("delete")) {
            char shown[QUOTE_MAX + 8] = "";
            if (json_is_string(op))
                text_render(shown, sizeof shown, json_string_value(op), json_string_length(op), QUOTE_MAX, 1);
            report(&ctx, LOC_ROOT, "op", "op must be \"delete\" (the only operation besides a batch), not %s%s%s",
                   json_is_string(op) ? "\"" : "", json_is_string(op) ? shown : type_phrase(op),
                   json_is_string(op) ? "\"" : "");
        }
    }
    if (batch_id != NULL)
        check_id(&ctx, LOC_ROOT, "batch_id", batch_id);
    if (object_id != NULL)
        check_id(&ctx, LOC_ROOT, "object_id", object_id);
    if (cascade != NULL) {
        if (!json_is_boolean(cascade))
            report(&ctx, LOC_ROOT, "cascade", "cascade must be true or false, not %s", type_phrase(cascade));
        else if (object_id != NULL)
            report(&ctx, LOC_ROOT, "cascade",
                   "cascade applies to a batch: give object_id (delete one object) or cascade (delete the batch), "
                   "not both");
    }
    report_unknown_members(&ctx, LOC_ROOT, doc, &members, present);
    return ctx.total == 0 ? 0 : -1;
}

char *bp_payload_object_to_batch(const char *body, size_t len, size_t *outlen)
{
    static const char p1[] = "{\"batch_id\":", p2[] = ",\"objects\":[{\"object_id\":", p3[] = ",\"data\":",
                      p4[] = "}]}";
    const char *batch_id, *object_id, *data;
    size_t blen, olen, dlen;

    if (bp_json_member(body, len, "batch_id", &batch_id, &blen) != 0 || batch_id[0] != '"' ||
        bp_json_member(body, len, "object_id", &object_id, &olen) != 0 || object_id[0] != '"' ||
        bp_json_member(body, len, "data", &data, &dlen) != 0 || data[0] != '[')
        return NULL;
    size_t n = sizeof(p1) - 1 + blen + sizeof(p2) - 1 + olen + sizeof(p3) - 1 + dlen + sizeof(p4) - 1;
    char *out = malloc(n), *o = out;
    if (out == NULL)
        return NULL;
#define PUT(s, l) (memcpy(o, (s), (l)), o += (l))
    PUT(p1, sizeof(p1) - 1);
    PUT(batch_id, blen);
    PUT(p2, sizeof(p2) - 1);
    PUT(object_id, olen);
    PUT(p3, sizeof(p3) - 1);
    PUT(data, dlen);
    PUT(p4, sizeof(p4) - 1);
#undef PUT
    *outlen = n;
    return out;
}

size_t bp_payload_object_count(const json_t *batch)
{
    return json_array_size(json_object_get(batch, "objects"));
}

json_t *bp_violations_to_json(const bp_violations_t *v)
{
    json_t *arr = json_array();

    if (arr == NULL)
        return NULL;
    for (size_t i = 0; i < v->count && i < BP_MAX_VIOLATIONS; i++) {
        const bp_violation_t *it = &v->items[i];
        json_t *item = json_pack("{s:s, s:s}", "pointer", it->pointer, "message", it->message);
        if (item == NULL || json_array_append_new(arr, item) < 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* ---------------------------------------------------------------------------------------------
 * Parsing.
 */

/* Whether the integer literal s[0..n) (an optional '-' then digits) lies outside int64. */
static int int_literal_overflows(const char *s, size_t n)
{
    int neg = s[0] == '-';
    const char *d = s + neg;
    size_t nd = n - (size_t)neg;

    if (nd < 19)
        return 0;
    if (nd > 19)
        return 1;
    return memcmp(d, neg ? "9223372036854775808" : "9223372036854775807", 19) > 0;
}

int bp_payload_number_fits(const char *s, size_t n)
{
    size_t i = 0, frac = 0;
    long long exp = 0;
    int eneg = 0;

    if (i < n && s[i] == '-')
        i++;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    if (i < n && s[i] == '.') {
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            frac++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            eneg = s[i++] == '-';
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            if (exp < BP_NUMERIC_MAX_EXPONENT) /* saturates: anything beyond is refused alike */
                exp = exp * 10 + (s[i] - '0');
        }
    }
    if (i != n)
        return 1; /* not a number: the parser refuses it */
    if (exp >= BP_NUMERIC_MAX_EXPONENT)
        return 0;
    /* digits after the point once the exponent is applied, counted as PostgreSQL does (syntactically) */
    long long scale = (long long)frac + (eneg ? exp : -exp);
    return scale <= BP_NUMERIC_MAX_SCALE;
}

/* One pass over the body outside strings: checks the nesting and NUL bytes, and finds integer
 * literals that jansson would refuse as too big. With out != NULL it also copies the body there,
 * writing ".0" after each such literal so jansson reads it as a real (out must hold len + 2 * big
 * bytes). Returns the number of big integers, or -1 if the nesting is too deep, -3 at a NUL byte
 * outside strings (jansson takes "[1\0]" for [1], but the API publishes the body as it is and a NUL
 * cuts PostgreSQL's text short) (*at = the offset in each case). */
static long long body_scan(const char *buf, size_t len, char *out, size_t *at)
{
    long long big = 0;
    size_t depth = 0, o = 0, i = 0;

    while (i < len) {
        char c = buf[i];

        if (c == '"') {
            /* skip the string; a backslash escapes the next byte, whatever it is */
            size_t j = i + 1;
            while (j < len && buf[j] != '"')
                j += buf[j] == '\\' ? 2 : 1;
            j = j < len ? j + 1 : len;
            if (out != NULL) {
                memcpy(out + o, buf + i, j - i);
                o += j - i;
            }
            i = j;
            continue;
        }
        if (c == '\0') {
            *at = i;
            return -3;
        }
        if (c == '[' || c == '{') {
            if (++depth > BP_PAYLOAD_MAX_DEPTH) {
                *at = i;
                return -1;
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = i + 1;
            int plain = 1;
            while (j < len && ((buf[j] >= '0' && buf[j] <= '9') || buf[j] == '.' || buf[j] == 'e' ||
                               buf[j] == 'E' || buf[j] == '+' || buf[j] == '-')) {
                if (buf[j] < '0' || buf[j] > '9')
                    plain = 0;
                j++;
            }
            int overflows = plain && int_literal_overflows(buf + i, j - i);
            if (out != NULL) {
                memcpy(out + o, buf + i, j - i);
                o += j - i;
                if (overflows) {
                    memcpy(out + o, ".0", 2);
                    o += 2;
                }
            }
            big += overflows;
            i = j;
            continue;
        }
        if (out != NULL)
            out[o++] = c;
        i++;
    }
    return big;
}

/* Line and column (1-based, columns in characters like jansson) of byte offset at. */
static void line_column(const char *buf, size_t at, int *line, int *column)
{
    *line = 1;
    *column = 1;
    for (size_t i = 0; i < at; i++) {
        if (buf[i] == '\n') {
            (*line)++;
            *column = 1;
        } else if (((unsigned char)buf[i] & 0xc0) != 0x80) {
            (*column)++;
        }
    }
}

int bp_payload_check_numbers(const char *buf, size_t len, bp_violations_t *v)
{
    vctx_t ctx = {.lim = NULL, .v = v, .total = 0};
    size_t i = 0;

    violations_clear(v);
    while (i < len) {
        char c = buf[i];
        if (c == '"') {
            size_t j = i + 1;
            while (j < len && buf[j] != '"')
                j += buf[j] == '\\' ? 2 : 1;
            i = j < len ? j + 1 : len;
            continue;
        }
        if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = i + 1;
            while (j < len && ((buf[j] >= '0' && buf[j] <= '9') || buf[j] == '.' || buf[j] == 'e' ||
                               buf[j] == 'E' || buf[j] == '+' || buf[j] == '-'))
                j++;
            if (!bp_payload_number_fits(buf + i, j - i)) {
                int line, column;
                line_column(buf, i, &line, &column);
                report(&ctx, LOC_ROOT, NULL,
                       "at line %d, column %d: a number PostgreSQL cannot store (more than %d digits after "
                       "the decimal point, or an exponent beyond %d)",
                       line, column, BP_NUMERIC_MAX_SCALE, BP_NUMERIC_MAX_EXPONENT - 1);
                return -1;
            }
            i = j;
            continue;
        }
        i++;
    }
    return 0;
}

static void parse_failed(bp_violations_t *v, const json_error_t *err)
{
    vctx_t ctx = {.lim = NULL, .v = v, .total = 0};
    char text[JSON_ERROR_TEXT_LENGTH + 64];

    switch (json_error_code(err)) {
    case json_error_null_character:
    case json_error_null_byte_in_key:
        /* jansson's text names its own flag; say what it means for the sender */
        snprintf(text, sizeof text, "text must not contain \\u0000 (NUL)");
        break;
    case json_error_out_of_memory:
        report(&ctx, LOC_ROOT, NULL, "out of memory while parsing the body");
        return;
    default:
        text_render(text, sizeof text, err->text, strnlen(err->text, JSON_ERROR_TEXT_LENGTH - 1), sizeof text,
                    0);
        break;
    }
    report(&ctx, LOC_ROOT, NULL, "invalid JSON at line %d, column %d: %s", err->line, err->column, text);
}

json_t *bp_payload_parse(const char *buf, size_t len, bp_violations_t *v)
{
    vctx_t ctx = {.lim = NULL, .v = v, .total = 0};
    json_error_t err;
    json_t *doc;
    size_t deep_at = 0;

    violations_clear(v);
    if (len == 0) {
        report(&ctx, LOC_ROOT, NULL, "the body is empty; expected a JSON object");
        return NULL;
    }
    long long big = body_scan(buf, len, NULL, &deep_at);
    if (big < 0) {
        int line, column;
        line_column(buf, deep_at, &line, &column);
        if (big == -1)
            report(&ctx, LOC_ROOT, NULL, "invalid JSON at line %d, column %d: nesting deeper than %d levels",
                   line, column, BP_PAYLOAD_MAX_DEPTH);
        else
            report(&ctx, LOC_ROOT, NULL, "invalid JSON at line %d, column %d: a NUL byte", line, column);
        return NULL;
    }
    if (big == 0) {
        doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
        if (doc == NULL)
            parse_failed(v, &err);
        return doc;
    }

    /* Rare: integers beyond int64. Give jansson a copy where they read as reals. */
    char *copy = malloc(len + 2 * (size_t)big);
    if (copy == NULL) {
        report(&ctx, LOC_ROOT, NULL, "out of memory while parsing the body");
        return NULL;
    }
    body_scan(buf, len, copy, &deep_at);
    doc = json_loadb(copy, len + 2 * (size_t)big, JSON_REJECT_DUPLICATES, &err);
    free(copy);
    if (doc != NULL)
        return doc;
    /* Report the error with the positions of the body that was sent, not of the copy. */
    doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &err);
    if (doc == NULL)
        parse_failed(v, &err);
    return doc;
}

/* ---------------------------------------------------------------------------------------------
 * The lean path: a valid batch without its whole tree. The text is cut where the scanner finds the
 * "objects" array; jansson parses a skeleton (the body with that array's elements replaced by 0) and
 * then each element on its own, with the same flags as bp_payload_parse, and each element is checked
 * and freed before the next. The body is valid JSON exactly when the skeleton and every element are
 * (an element parsed alone must be one whole value), so the verdict is the full path's; anything
 * unusual gives up instead of deciding, and the full path decides and words the messages.
 */

int bp_payload_batch_lean(const char *buf, size_t len, const bp_payload_limits_t *lim, json_t **batch_id,
                          size_t *objects)
{
    vctx_t ctx = {.lim = lim, .v = NULL, .total = 0};
    id_store_t store = {NULL};
    id_set_t ids = {NULL, 0, 0, 0};
    json_t *skel_doc = NULL;
    char *skel = NULL;
    size_t deep_at = 0, n = 0, pos = 0, at;
    const char *arr, *elem;
    size_t alen, elen;
    int ok = 0, r;

    *batch_id = NULL;
    *objects = 0;
    if (len == 0 || body_scan(buf, len, NULL, &deep_at) != 0) /* integers beyond int64, depth, NUL */
        return 0;
    if (bp_json_member(buf, len, "objects", &arr, &alen) != 0 || alen < 2 || arr[0] != '[')
        return 0;
    while ((r = bp_json_array_next(arr, alen, &pos, &elem, &elen)) == 1)
        n++;
    if (r != 0 || n == 0 || (long long)n > lim->max_objects || n > UINT32_MAX)
        return 0;

    /* the skeleton: the body with "objects" written [0,0,...] */
    size_t prefix = (size_t)(arr - buf), suffix = len - prefix - alen;
    if ((skel = malloc(prefix + 2 * n + 1 + suffix)) == NULL)
        return 0;
    memcpy(skel, buf, prefix);
    at = prefix;
    for (size_t i = 0; i < n; i++) {
        skel[at++] = i == 0 ? '[' : ',';
        skel[at++] = '0';
    }
    skel[at++] = ']';
    memcpy(skel + at, arr + alen, suffix);
    at += suffix;
    json_error_t err;
    skel_doc = json_loadb(skel, at, JSON_REJECT_DUPLICATES, &err);
    free(skel);
    if (skel_doc == NULL || !json_is_object(skel_doc) || json_object_size(skel_doc) != 2)
        goto done;
    json_t *bid = json_object_get(skel_doc, "batch_id");
    json_t *objs = json_object_get(skel_doc, "objects");
    if (bid == NULL || !json_is_array(objs) || json_array_size(objs) != n || !check_id(&ctx, LOC_ROOT, "batch_id", bid))
        goto done;
    if (n > 1 && id_set_init(&ids, n) < 0)
        goto done;
    ctx.ids_store = &store;
    pos = 0;
    for (size_t i = 0; i < n && ctx.total == 0; i++) {
        if (bp_json_array_next(arr, alen, &pos, &elem, &elen) != 1)
            goto done;
        json_t *obj = json_loadb(elem, elen, JSON_REJECT_DUPLICATES, &err);
        if (obj == NULL)
            goto done;
        loc_t loc = {(long long)i, -1};
        check_object(&ctx, loc, obj, n > 1 ? &ids : NULL, i);
        json_decref(obj);
    }
    if (ctx.total == 0) {
        *batch_id = json_incref(bid);
        *objects = n;
        ok = 1;
    }
done:
    json_decref(skel_doc);
    free(ids.slots);
    id_store_free(&store);
    return ok;
}
