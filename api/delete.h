/* delete.h - DELETE of an object or a batch through the batch topic: the delete message is published
 * (key = batch_id, acks=all) and, once the broker acked it, applied in PostgreSQL by the same SQL
 * function the workers use, as of the message's place in the log; the workers apply it again later
 * (idempotent), and every replay of the topic does too. */
#ifndef BP_DELETE_H
#define BP_DELETE_H

#include <stddef.h>

#include <h2o.h>

#include "server.h"

/* The route handlers (read.c's route table), as bp_route_fn: they answer now or later and return 0.
 *   DELETE /api/v1/objects/{id}/: 404 for an unknown object, 204 once deleted.
 *   DELETE /api/v1/batches/{id}/[?cascade=true|false|1|0]: 400 for another cascade=, 404 for an
 *   unknown batch, 409 while it has objects (unless cascade) or when objects arrived during the
 *   delete (nothing deleted), 204 once deleted.
 * Both: 503 when the broker did not take the delete message (nothing was deleted) or PostgreSQL
 * could not apply it after the ack (the workers will). */
int bp_delete_object_route(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen);
int bp_delete_batch_route(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen);

#endif
