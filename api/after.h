/* after.h - read-your-writes for the read routes: `after=TOKEN[,TOKEN...]` (or the BP-After request
 * header) holds a read until the database that answers it has applied those messages of BP_TOPIC.
 *
 * Behaviour, in short (docs/QUERIES.md has the user's side):
 *   - Without a token the read runs as before: no statement and no wait is added (only the applied-
 *     through header, from the replicas monitor's cache: bp_after_note_applied).
 *   - With tokens (bp_token_parse_list; a bad list is a 400 problem naming `after`), the read checks
 *     ingest_offsets on a usable standby (bp_replicas_pick): applied there means next_offset > offset
 *     for every token's partition in the workers' group (BP_GROUP_ID), the exact test because the
 *     offsets row is written in the data's transaction and replicated with it. Applied: the read is
 *     pinned to that standby. Not yet: the same standby is asked again with a backoff (5 ms growing
 *     to 100 ms; NOTIFY does not reach a standby) for at most BP_MAX_REPLICA_LAG_MS (the lag a usable
 *     standby may have) or until it stops being usable; then the primary is asked, again with the
 *     backoff, and woken besides by the workers' commits (their NOTIFY on write_ack.c's LISTEN
 *     connection), and the read is pinned there once the primary has applied them.
 *   - Nothing applied them by BP_WAIT_MAX_S: 503 with Retry-After and a problem body listing each
 *     token not applied with its state ("accepted": the broker holds that offset; "unknown": the
 *     broker's high watermark, as last sampled, is not past it).
 *   - The answer carries BP-Applied-Through of the database that answered: exact at the check for a
 *     token read, the monitor's sample (at most ~1 s old, 3 s at worst) otherwise.
 * Everything runs on the loop thread; all statements go through the thread's pools (api/pgreq.h). */
#ifndef BP_AFTER_H
#define BP_AFTER_H

#include <stddef.h>

#include <h2o.h>

#include "router.h"
#include "server.h"

/* Serve a read with `after=` honoured: when req names no token, returns handler(t, req, id, idlen)
 * at once. Otherwise answers 400 for a bad list, or checks (see above) and later pins req to a
 * database that has applied the tokens and calls handler, or answers 503. id is request-pool memory
 * (it stays valid). Returns 0 (or what handler returns when called at once). */
int bp_after_read(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen, bp_route_fn handler);

/* Add BP-Applied-Through for database target (0 primary, 1..n standby) to req's answer unless a token
 * check already set the exact value. Called by pgreq.c when a read's statement is answered. */
void bp_after_note_applied(h2o_req_t *req, size_t target);

/* The per-thread state (backoff timers, the waiting reads). */
extern const bp_api_module_t bp_after_module;

#endif
