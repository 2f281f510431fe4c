/* delete.h - DELETE of an object or a batch through the batch topic: the delete message is published
 * (key = batch_id, acks=all) and, once the broker acked it, applied in PostgreSQL by the same SQL
 * function the workers use, as of the message's place in the log; the workers apply it again later
 * (idempotent), and every replay of the topic does too. */
#ifndef BP_DELETE_H
#define BP_DELETE_H

#include <stddef.h>

#include <h2o.h>

#include "server.h"

/* Called once PostgreSQL applied the delete, on the loop thread, while req is alive; it must answer
 * req. outcome is the SQL function's text result (borrowed, valid during the call): for an object
 * the batch it was deleted from, or NULL when nothing was left to delete; for a batch "deleted",
 * "absent", "not empty" or "kept" (schemas/migrations/006_log_order.sql). */
typedef void (*bp_delete_done_cb)(h2o_req_t *req, void *ctx, const char *outcome);

/* Publish {"op": "delete", "batch_id": batch_id, "object_id": object_id} (object_id NULL: the batch,
 * with "cascade") through the thread's producer, then apply it. The strings are borrowed: they must
 * live in req's pool (or longer). On success done(req, ctx, outcome) answers. Everything else is
 * answered here: 503 when the broker did not take the message (nothing was deleted), 503 when
 * PostgreSQL failed after the ack (the delete is in the topic and the workers will apply it), nothing
 * when the request went away. Returns 0 (req answered now or later). */
int bp_delete_via_topic(bp_api_thread_t *t, h2o_req_t *req, const char *batch_id, const char *object_id,
                        int cascade, bp_delete_done_cb done, void *ctx);

#endif
