/* read.h - what the read path's handlers share (read.c, read_list.c, read_objects.c, read_batches.c,
 * openapi.c, and delete.c's lookups): hand-built JSON answers, query-string errors, links, one row by
 * id, and the list engine. */
#ifndef BP_READ_H
#define BP_READ_H

#include <stddef.h>

#include <h2o.h>
#include <libpq-fe.h>

#include "bp_buf.h"
#include "query.h"
#include "router.h"

/* Bodies are built by hand in a bp_buf_t (shared/bp_buf.h): PostgreSQL's jsonb text is spliced in as
 * is, so that numbers and order are exactly what was stored.
 * Answer with b's text as application/json (b is freed; 500 if it ran out of memory). Returns 0. */
int bp_read_send_json_text(h2o_req_t *req, int status, bp_buf_t *b);

/* A 400 problem naming the query parameter, with RFC 9457's "invalid-params" extension. Returns 0. */
int bp_read_bad_param(h2o_req_t *req, const bp_query_error_t *e);

/* Read a query parameter (decoded, in the request pool). Returns 1 found, 0 absent, or -1 after
 * answering 400 for broken percent-encoding. */
int bp_read_param(h2o_req_t *req, const char *name, char **out, size_t *outlen);

/* An id from the path can only name a stored row if it is non-empty UTF-8 without NUL. */
int bp_read_id_ok(const char *id, size_t len);

/* The 404 details of an id that names no stored row (GET and DELETE say the same). */
#define BP_READ_NO_OBJECT "no object with this object_id"
#define BP_READ_NO_BATCH "no batch with this batch_id"

/* One statement about the row an id from the path names (GET of an object or a batch, and the
 * lookups of DELETE). Static: the handlers keep one per statement. */
typedef struct bp_read_one {
    const char *sql;     /* prepared; $1 is the id, $2 the extra parameter if any */
    const char *missing; /* the 404's detail: the id cannot name a row, or the statement found none */
    /* the statement returned at least one row: answer req (ctx as given to bp_read_one) */
    void (*found)(h2o_req_t *req, void *ctx, const PGresult *res);
} bp_read_one_t;

/* Answer 404 (how->missing) when id cannot name a stored row (bp_read_id_ok); else run how->sql with
 * id (and extra as $2 unless NULL; both borrowed, copied by the pool) and then: the pool's problem on
 * an error, 404 when no row came back, else how->found(req, ctx, res). Returns 0 (answered now or
 * later). */
int bp_read_one(h2o_req_t *req, const bp_read_one_t *how, const char *id, size_t idlen, const char *extra,
                void *ctx);

/* "base/api/v1/batches/<percent-encoded id>/" in the request pool. */
const char *bp_read_batch_url(h2o_req_t *req, const char *batch_id, size_t len);

/* Append the JSON of one object from columns col .. col+4 of row (object_id, batch_id, data as jsonb
 * text, created_at, updated_at). */
void bp_read_render_object(bp_buf_t *b, const PGresult *res, int row, int col);

/* Render a batch with its first objects (rows of the batch query: batch_id, created_at, updated_at,
 * object_count, then the object columns from 4) into b, without the closing brace. */
void bp_read_render_batch(bp_buf_t *b, h2o_req_t *req, const PGresult *res);

/* ---- the paginated list engine (GET /api/v1/objects/ and /api/v1/batches/) ---- */
typedef struct bp_read_list_kind {
    bp_cursor_kind_t cursor_kind;
    const char *path; /* canonical path of the list, for links */
    int objects;      /* 1: objects (batch_id= allowed), 0: batches */
    int (*sql)(const bp_query_list_t *q, long long count_cap, bp_sql_t *out);
    /* append the JSON of result row `row` (columns from 1; 0 is the count) */
    void (*render)(h2o_req_t *req, bp_buf_t *b, const PGresult *res, int row);
    /* the keyset position of a row: c->key and (batches) a malloc'd c->batch_id; -1 when out of memory */
    int (*key)(const PGresult *res, int row, bp_cursor_t *c);
} bp_read_list_kind_t;

/* Serve a list request: parse page/page_size/count/cursor/filters (400 on a bad one), run the page
 * statement (its count included: query.h), answer with the rows, the links and the count. */
int bp_read_list(bp_api_thread_t *t, h2o_req_t *req, const bp_read_list_kind_t *kind);

/* ---- handlers (the DELETE ones: delete.h) ---- */
int bp_read_objects_list(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen);
int bp_read_object_get(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen);
int bp_read_batches_list(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen);
int bp_read_batch_get(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen);
int bp_receipt_get(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen); /* receipts.c */
int bp_openapi_get(bp_api_thread_t *t, h2o_req_t *req, const char *id, size_t idlen);

#endif
