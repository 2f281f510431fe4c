/* ratelimit.h - token buckets per client (API key name, or address when keys are off), shared by
 * every loop thread. rate tokens per second refill a bucket of burst tokens; a request takes one. */
#ifndef BP_RATELIMIT_H
#define BP_RATELIMIT_H

#include <stddef.h>

typedef struct bp_ratelimit bp_ratelimit_t;

/* NULL when out of memory. Free with bp_ratelimit_free. */
bp_ratelimit_t *bp_ratelimit_new(double rate, double burst);

void bp_ratelimit_free(bp_ratelimit_t *rl);

/* Take one token for client at now_ms (a monotonic clock). Returns 0 when allowed; otherwise the
 * seconds until a token is available (at least 1), for Retry-After. Thread-safe. The table holds at most
 * a bounded number of clients; the least recently seen are forgotten first. */
int bp_ratelimit_take(bp_ratelimit_t *rl, const char *client, double now_ms);

#endif
