/* keybudget.c - per-client bytes in progress (keybudget.h): a small open-addressing table under one
 * mutex. A client is in it only while it holds bytes, so it is as large as the requests in progress. */
#include "keybudget.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 96 /* "key:" and a hash prefix, or an address: longer names are cut */

typedef struct slot {
    char name[NAME_MAX_LEN]; /* "" when free */
    size_t held;
} slot_t;

struct bp_keybudget {
    pthread_mutex_t mu;
    size_t limit;
    slot_t *slots;
    size_t cap;  /* a power of two */
    size_t used; /* slots holding a client */
};

bp_keybudget_t *bp_keybudget_new(size_t limit)
{
    bp_keybudget_t *kb = calloc(1, sizeof(*kb));
    if (kb == NULL)
        return NULL;
    kb->cap = 64;
    if ((kb->slots = calloc(kb->cap, sizeof(*kb->slots))) == NULL) {
        free(kb);
        return NULL;
    }
    kb->limit = limit;
    pthread_mutex_init(&kb->mu, NULL);
    return kb;
}

void bp_keybudget_free(bp_keybudget_t *kb)
{
    if (kb == NULL)
        return;
    pthread_mutex_destroy(&kb->mu);
    free(kb->slots);
    free(kb);
}

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

/* The slot of name, or the free slot where it would go. */
static slot_t *find(slot_t *slots, size_t cap, const char *name)
{
    size_t i = (size_t)hash(name) & (cap - 1);
    while (slots[i].name[0] != '\0' && strcmp(slots[i].name, name) != 0)
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

/* Grow the table to cap slots. */
static int grow(bp_keybudget_t *kb, size_t cap)
{
    slot_t *slots = calloc(cap, sizeof(*slots));
    if (slots == NULL)
        return -1;
    for (size_t i = 0; i < kb->cap; i++)
        if (kb->slots[i].name[0] != '\0')
            *find(slots, cap, kb->slots[i].name) = kb->slots[i];
    free(kb->slots);
    kb->slots = slots;
    kb->cap = cap;
    return 0;
}

/* Empty slot i, moving later entries of its probe chain back (linear probing without tombstones). */
static void remove_at(bp_keybudget_t *kb, size_t i)
{
    size_t mask = kb->cap - 1, j = i;
    for (;;) {
        kb->slots[i].name[0] = '\0';
        for (;;) {
            j = (j + 1) & mask;
            if (kb->slots[j].name[0] == '\0')
                return;
            size_t home = (size_t)hash(kb->slots[j].name) & mask;
            /* an entry whose home lies cyclically in (i, j] is still reachable: it stays */
            int stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
            if (!stays)
                break;
        }
        kb->slots[i] = kb->slots[j];
        i = j;
    }
}

static void cut_name(char out[NAME_MAX_LEN], const char *client)
{
    size_t n = strlen(client);
    if (n >= NAME_MAX_LEN)
        n = NAME_MAX_LEN - 1;
    memcpy(out, client, n);
    out[n] = '\0';
    if (n == 0) { /* "" marks a free slot */
        out[0] = '-';
        out[1] = '\0';
    }
}

int bp_keybudget_take(bp_keybudget_t *kb, const char *client, size_t n)
{
    if (n == 0)
        return 0; /* nothing to hold: the client is not entered */
    char name[NAME_MAX_LEN];
    cut_name(name, client);
    int rc = 0;
    pthread_mutex_lock(&kb->mu);
    if (2 * (kb->used + 1) > kb->cap && grow(kb, 2 * kb->cap) != 0) {
        rc = -1;
        goto out;
    }
    slot_t *s = find(kb->slots, kb->cap, name);
    if (s->name[0] == '\0') {
        memcpy(s->name, name, sizeof(name));
        s->held = 0;
        kb->used++;
    }
    if (s->held > 0 && s->held + n > kb->limit) {
        rc = -1;
        goto out;
    }
    s->held += n;
out:
    pthread_mutex_unlock(&kb->mu);
    return rc;
}

void bp_keybudget_give(bp_keybudget_t *kb, const char *client, size_t n)
{
    char name[NAME_MAX_LEN];
    cut_name(name, client);
    pthread_mutex_lock(&kb->mu);
    slot_t *s = find(kb->slots, kb->cap, name);
    if (s->name[0] != '\0') {
        s->held = s->held > n ? s->held - n : 0;
        if (s->held == 0) {
            remove_at(kb, (size_t)(s - kb->slots));
            kb->used--;
        }
    }
    pthread_mutex_unlock(&kb->mu);
}

size_t bp_keybudget_held(bp_keybudget_t *kb, const char *client)
{
    char name[NAME_MAX_LEN];
    cut_name(name, client);
    pthread_mutex_lock(&kb->mu);
    slot_t *s = find(kb->slots, kb->cap, name);
    size_t held = s->name[0] != '\0' ? s->held : 0;
    pthread_mutex_unlock(&kb->mu);
    return held;
}

size_t bp_keybudget_clients(bp_keybudget_t *kb)
{
    pthread_mutex_lock(&kb->mu);
    size_t n = kb->used;
    pthread_mutex_unlock(&kb->mu);
    return n;
}

size_t bp_keybudget_limit(const bp_keybudget_t *kb)
{
    return kb->limit;
}
