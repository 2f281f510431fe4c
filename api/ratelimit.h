/* ratelimit.h - token buckets per client (API key name, or address when keys are off), shared by
 * every loop thread. rate tokens per second refill a bucket of burst tokens; a request takes one. */
#ifndef BP_RATELIMIT_H
#define BP_RATELIMIT_H

#include <stddef.h>

/* Clients remembered at most; beyond, the least recently seen one is forgotten (and starts again
 * with a full bucket when it comes back). */
#define BP_RATELIMIT_CLIENTS 4096

typedef struct bp_ratelimit bp_ratelimit_t;

/* NULL when out of memory. Free with bp_ratelimit_free. */
bp_ratelimit_t *bp_ratelimit_new(double rate, double burst);

void bp_ratelimit_free(bp_ratelimit_t *rl);

/* Take one token for client at now_ms (a monotonic clock). Returns 0 when allowed; otherwise the
 * seconds until a token is available (at least 1), for Retry-After. Thread-safe. client longer than
 * 79 bytes is cut. */
int bp_ratelimit_take(bp_ratelimit_t *rl, const char *client, double now_ms);

/* The address a request is counted under: peer itself, unless peer is one of trusted (comma-separated
 * addresses of reverse proxies, BP_TRUSTED_PROXIES) and xff (the X-Forwarded-For value, xfflen bytes,
 * NULL when absent) names one: then the rightmost address in xff that is not itself a trusted proxy
 * (what the nearest untrusted hop said), when it is a valid IPv4 or IPv6 address. Writes it into out. */
void bp_ratelimit_client_address(const char *peer, const char *xff, size_t xfflen, const char *trusted, char *out,
                                 size_t outlen);

#endif
