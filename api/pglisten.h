/* pglisten.h - one PostgreSQL connection on the event loop that LISTENs on a channel and hands each
 * notification to its owner: how the API hears that the ingest workers committed (see write_ack.c).
 *
 * Behaviour, in short:
 *   - Nothing connects until bp_pglisten_start; then the connection is kept: opened with
 *     PQconnectStart/PQconnectPoll, LISTEN sent with PQsendQuery, every step driven by socket
 *     readiness, so the loop never blocks (give BP_PG_DSN an IP address or a socket directory: a host
 *     NAME is resolved by a blocking getaddrinfo, as in pgpool.h).
 *   - A lost connection (server restart, pg_terminate_backend) is closed and opened again after
 *     RECONNECT_MS, for as long as it takes. Notifications sent while it was down are lost: the owner
 *     hears state(ctx, 0) when it goes and state(ctx, 1) once LISTEN is in effect again, and should
 *     then check what it may have missed.
 * Everything runs on the loop's thread only. */
#ifndef BP_PGLISTEN_H
#define BP_PGLISTEN_H

#include <stddef.h>

#include <h2o.h>

typedef struct bp_pglisten bp_pglisten_t;

/* A notification on the channel: payload is borrowed (valid during the call only). */
typedef void (*bp_pglisten_notify_cb)(void *ctx, const char *payload);

/* up = 1: LISTEN is in effect (every notification committed from now on will be delivered);
 * up = 0: the connection was lost (notifications may be missed until the next up = 1). */
typedef void (*bp_pglisten_state_cb)(void *ctx, int up);

/* Create a listener on loop (borrowed; free it on the same thread before the loop). dsn and channel
 * are copied. Callbacks run on the loop, never from inside bp_pglisten_* calls. Returns NULL with err
 * when memory runs out. Free with bp_pglisten_free. */
bp_pglisten_t *bp_pglisten_new(h2o_evloop_t *loop, const char *dsn, const char *channel,
                               bp_pglisten_notify_cb notify, bp_pglisten_state_cb state, void *ctx, char *err,
                               size_t errlen);

/* Connect and LISTEN, unless that is already done or under way. Cheap; call it freely. */
void bp_pglisten_start(bp_pglisten_t *l);

/* 1 while LISTEN is in effect on a live connection, else 0. */
int bp_pglisten_up(const bp_pglisten_t *l);

/* Close the connection (no callback runs) and free. Accepts NULL. */
void bp_pglisten_free(bp_pglisten_t *l);

#endif
