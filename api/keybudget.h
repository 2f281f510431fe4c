/* keybudget.h - request-body bytes each client (an API key, or a client address without keys) has in
 * progress, against one per-client limit: one client cannot take the whole process-wide body budget
 * (budget.h) or the producer's queue from the others. Any thread may call any function. */
#ifndef BP_KEYBUDGET_H
#define BP_KEYBUDGET_H

#include <stddef.h>

#include "bp_error.h"

typedef struct bp_keybudget bp_keybudget_t;

/* A budget of limit bytes per client; NULL when out of memory. Free with bp_keybudget_free (accepts
 * NULL). */
bp_keybudget_t *bp_keybudget_new(size_t limit);
void bp_keybudget_free(bp_keybudget_t *kb);

/* Count n bytes for client (a NUL-terminated name, copied). Returns 0, or -1 with nothing counted when
 * the client already holds bytes and n more would pass the limit: a client that holds nothing may
 * always send one body (BP_MAX_BODY_BYTES bounds it), so a limit below a body's size slows a client to
 * one request at a time instead of refusing it for ever. Also -1 when out of memory. */
int bp_keybudget_take(bp_keybudget_t *kb, const char *client, size_t n) BP_MUST_CHECK;

/* Give back n bytes that bp_keybudget_take counted for client. */
void bp_keybudget_give(bp_keybudget_t *kb, const char *client, size_t n);

/* Bytes client holds now; the number of clients holding any. */
size_t bp_keybudget_held(bp_keybudget_t *kb, const char *client);
size_t bp_keybudget_clients(bp_keybudget_t *kb);

size_t bp_keybudget_limit(const bp_keybudget_t *kb);

#endif
