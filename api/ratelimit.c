/* ratelimit.c - a mutex-guarded table of token buckets: a hash table with chaining over a fixed array
 * of BP_RATELIMIT_CLIENTS entries, kept in least-recently-used order, so memory is bounded whatever
 * the number of clients and a busy client is never the one forgotten. */
#include "ratelimit.h"

#include <arpa/inet.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define NCHAINS (BP_RATELIMIT_CLIENTS * 2)
#define NONE (-1)

typedef struct entry {
    char client[80];
    double tokens;
    double last_ms;
    int32_t chain;      /* next entry of the same hash chain */
    int32_t newer, older; /* the LRU list */
    uint32_t slot;      /* its chain */
} entry_t;

struct bp_ratelimit {
    pthread_mutex_t lock;
    double rate, burst;
    uint64_t seed; /* per process: chains an outsider cannot aim at */
    int32_t used;
    int32_t newest, oldest;
    int32_t chains[NCHAINS];
    entry_t entries[BP_RATELIMIT_CLIENTS];
};

bp_ratelimit_t *bp_ratelimit_new(double rate, double burst)
{
    bp_ratelimit_t *rl = calloc(1, sizeof(*rl));
    if (rl == NULL)
        return NULL;
    pthread_mutex_init(&rl->lock, NULL);
    rl->rate = rate;
    rl->burst = burst;
    rl->newest = rl->oldest = NONE;
    for (size_t i = 0; i < NCHAINS; i++)
        rl->chains[i] = NONE;
    if (getrandom(&rl->seed, sizeof(rl->seed), 0) != (ssize_t)sizeof(rl->seed))
        rl->seed = (uint64_t)(uintptr_t)rl;
    return rl;
}

void bp_ratelimit_free(bp_ratelimit_t *rl)
{
    if (rl == NULL)
        return;
    pthread_mutex_destroy(&rl->lock);
    free(rl);
}

static uint32_t chain_of(const bp_ratelimit_t *rl, const char *s)
{
    uint64_t h = 1469598103934665603ULL ^ rl->seed; /* FNV-1a from a random start */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    h ^= h >> 29;
    return (uint32_t)(h % NCHAINS);
}

static void lru_unlink(bp_ratelimit_t *rl, int32_t i)
{
    entry_t *e = &rl->entries[i];
    if (e->newer != NONE)
        rl->entries[e->newer].older = e->older;
    else
        rl->newest = e->older;
    if (e->older != NONE)
        rl->entries[e->older].newer = e->newer;
    else
        rl->oldest = e->newer;
}

static void lru_push_newest(bp_ratelimit_t *rl, int32_t i)
{
    entry_t *e = &rl->entries[i];
    e->newer = NONE;
    e->older = rl->newest;
    if (rl->newest != NONE)
        rl->entries[rl->newest].newer = i;
    rl->newest = i;
    if (rl->oldest == NONE)
        rl->oldest = i;
}

static void chain_unlink(bp_ratelimit_t *rl, int32_t i)
{
    int32_t *p = &rl->chains[rl->entries[i].slot];
    while (*p != i)
        p = &rl->entries[*p].chain;
    *p = rl->entries[i].chain;
}

/* The entry of client, made the newest; a new one (full bucket) replaces the oldest when all are used. */
static entry_t *find_or_add(bp_ratelimit_t *rl, const char *client, double now_ms)
{
    char key[sizeof(((entry_t *)0)->client)];
    snprintf(key, sizeof(key), "%s", client);
    uint32_t slot = chain_of(rl, key);
    for (int32_t i = rl->chains[slot]; i != NONE; i = rl->entries[i].chain) {
        if (strcmp(rl->entries[i].client, key) == 0) {
            lru_unlink(rl, i);
            lru_push_newest(rl, i);
            return &rl->entries[i];
        }
    }
    int32_t i;
    if (rl->used < BP_RATELIMIT_CLIENTS) {
        i = rl->used++;
    } else {
        i = rl->oldest;
        lru_unlink(rl, i);
        chain_unlink(rl, i);
    }
    entry_t *e = &rl->entries[i];
    memcpy(e->client, key, sizeof(key));
    e->tokens = rl->burst;
    e->last_ms = now_ms;
    e->slot = slot;
    e->chain = rl->chains[slot];
    rl->chains[slot] = i;
    lru_push_newest(rl, i);
    return e;
}

int bp_ratelimit_take(bp_ratelimit_t *rl, const char *client, double now_ms)
{
    pthread_mutex_lock(&rl->lock);
    entry_t *b = find_or_add(rl, client, now_ms);
    double elapsed = (now_ms - b->last_ms) / 1000.0;
    if (elapsed > 0)
        b->tokens = fmin(rl->burst, b->tokens + elapsed * rl->rate);
    b->last_ms = now_ms;
    int wait = 0;
    if (b->tokens >= 1) {
        b->tokens -= 1;
    } else {
        wait = (int)ceil((1 - b->tokens) / rl->rate);
        if (wait < 1)
            wait = 1;
    }
    pthread_mutex_unlock(&rl->lock);
    return wait;
}

/* Whether the n bytes at s are one of the comma-separated addresses in list. */
static int listed(const char *s, size_t n, const char *list)
{
    for (const char *p = list != NULL ? list : ""; *p != '\0';) {
        while (*p == ',' || *p == ' ')
            p++;
        const char *start = p;
        while (*p != '\0' && *p != ',' && *p != ' ')
            p++;
        if ((size_t)(p - start) == n && n > 0 && memcmp(start, s, n) == 0)
            return 1;
    }
    return 0;
}

static int is_address(const char *s, size_t n)
{
    char buf[INET6_ADDRSTRLEN];
    unsigned char addr[sizeof(struct in6_addr)];
    if (n == 0 || n >= sizeof(buf))
        return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return inet_pton(AF_INET, buf, addr) == 1 || inet_pton(AF_INET6, buf, addr) == 1;
}

void bp_ratelimit_client_address(const char *peer, const char *xff, size_t xfflen, const char *trusted, char *out,
                                 size_t outlen)
{
    snprintf(out, outlen, "%s", peer);
    if (xff == NULL || !listed(peer, strlen(peer), trusted))
        return;
    /* from the right: skip our own proxies, stop at the first hop we do not run */
    size_t end = xfflen;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        size_t a = start, b = end;
        while (a < b && (xff[a] == ' ' || xff[a] == '\t'))
            a++;
        while (b > a && (xff[b - 1] == ' ' || xff[b - 1] == '\t'))
            b--;
        if (!listed(xff + a, b - a, trusted)) {
            if (is_address(xff + a, b - a))
                snprintf(out, outlen, "%.*s", (int)(b - a), xff + a);
            return;
        }
        end = start > 0 ? start - 1 : 0;
    }
}
