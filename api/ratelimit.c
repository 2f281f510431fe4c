/* ratelimit.c - a mutex-guarded table of token buckets. A fixed-size open-addressing table keeps
 * memory bounded whatever the number of clients: a full neighbourhood evicts its stalest bucket. */
#include "ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TABLE_SIZE 4096 /* buckets remembered at most */
#define PROBE 8         /* neighbourhood searched per client */

typedef struct bucket {
    char client[80];
    double tokens;
    double last_ms;
} bucket_t;

struct bp_ratelimit {
    pthread_mutex_t lock;
    double rate, burst;
    bucket_t table[TABLE_SIZE];
};

bp_ratelimit_t *bp_ratelimit_new(double rate, double burst)
{
    bp_ratelimit_t *rl = calloc(1, sizeof(*rl));
    if (rl == NULL)
        return NULL;
    pthread_mutex_init(&rl->lock, NULL);
    rl->rate = rate;
    rl->burst = burst;
    return rl;
}

void bp_ratelimit_free(bp_ratelimit_t *rl)
{
    if (rl == NULL)
        return;
    pthread_mutex_destroy(&rl->lock);
    free(rl);
}

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

int bp_ratelimit_take(bp_ratelimit_t *rl, const char *client, double now_ms)
{
    pthread_mutex_lock(&rl->lock);
    uint64_t h = hash(client);
    bucket_t *b = NULL, *stalest = NULL;
    for (int i = 0; i < PROBE; i++) {
        bucket_t *c = &rl->table[(h + (uint64_t)i) % TABLE_SIZE];
        if (c->client[0] != '\0' && strncmp(c->client, client, sizeof(c->client) - 1) == 0) {
            b = c;
            break;
        }
        if (stalest == NULL || c->client[0] == '\0' || (stalest->client[0] != '\0' && c->last_ms < stalest->last_ms))
            stalest = c;
    }
    if (b == NULL) {
        b = stalest;
        snprintf(b->client, sizeof(b->client), "%s", client);
        b->tokens = rl->burst;
        b->last_ms = now_ms;
    }
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
