/* write.h - the HTTP side of the write path: POST /api/v1/batches/ and /api/v1/objects/ validate the
 * body, publish it through the thread's producer and answer 202 only once the broker acked it. */
#ifndef BP_WRITE_H
#define BP_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include <h2o.h>

#include "server.h"

/* What the broker acknowledged for one POST. Every pointer is borrowed from the request's pool. */
typedef struct bp_write_ack {
    const char *batch_id; /* not NUL-safe by contract: use batch_id_len (ids have no NUL anyway) */
    size_t batch_id_len;
    const char *object_id; /* POST /api/v1/objects/ only; NULL for a batch */
    size_t object_id_len;
    size_t objects;        /* objects in the published batch */
    int32_t partition;
    int64_t offset;
    int64_t timestamp;     /* the message's timestamp, ms since the epoch (the "latest wins" clock) */
    const char *request_id;
    long long wait_s;      /* ?wait= of the request, validated to 0..BP_WAIT_MAX_S; 0 when absent */
} bp_write_ack_t;

/* Answer a POST whose message the broker acknowledged (write_ack.c). Called on the loop thread, only
 * while req is alive, after the write path stopped counting the request in t->inflight and stopped
 * guarding it. It must answer req now, or later - then it guards req itself (h2o_mem_alloc_shared on
 * req->pool) and counts itself in t->inflight until it answers. Returns 0.
 *
 * Read-your-writes (?wait=N): for wait_s > 0 it waits (through the PostgreSQL pool, bounded by wait_s)
 * until the ingest workers applied (partition, offset) - ingest_offsets.next_offset > offset for the
 * topic and partition, any group - and answers 201 with the stored batch (object), or 202 when the
 * bound passes, PostgreSQL is unavailable or the server stops first. */
int bp_write_acked(bp_api_thread_t *t, h2o_req_t *req, const bp_write_ack_t *ack);

/* The workers' commits as the thread's LISTEN connection hears them (their NOTIFY): partition and its
 * new next_offset, or (-1, -1) when anything may have moved (an unreadable payload, or LISTEN back in
 * effect after a loss: commits meanwhile were not heard). Runs on the loop thread. */
typedef void (*bp_write_commit_cb)(void *ctx, int32_t partition, int64_t next_offset);

/* Hear the primary's commits on thread t too (one subscriber: api/after.c's reads waiting on the
 * primary); cb NULL unsubscribes. */
void bp_write_wait_subscribe(bp_api_thread_t *t, bp_write_commit_cb cb, void *ctx);

/* Connect the thread's LISTEN connection if it is not yet (it connects at the first wait). Cheap. */
void bp_write_wait_listen(bp_api_thread_t *t);

#endif
