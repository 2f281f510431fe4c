/* count_txn.h - what one worker transaction counts itself (migration 008, docs/QUERIES.md#counting): the
 * objects its upserts inserted, their counter terms summed over the transaction (count_terms.h), the
 * sparse keys they were computed with, and the parameters of the one statement that adds them. */
#ifndef BP_COUNT_TXN_H
#define BP_COUNT_TXN_H

#include <stddef.h>
#include <stdint.h>

#include "bp_error.h"
#include "count_terms.h" /* the BP_COUNT_* results */
#include "message.h"

typedef struct bp_count_txn bp_count_txn_t;

/* Empty, with no sparse key known. NULL without memory. Free with bp_count_txn_free. */
bp_count_txn_t *bp_count_txn_new(void);

/* Accepts NULL. */
void bp_count_txn_free(bp_count_txn_t *c);

/* Forget the objects and terms of the previous transaction (the sparse keys stay). */
void bp_count_txn_begin(bp_count_txn_t *c);

/* Objects counted in this transaction so far. */
size_t bp_count_txn_objects(const bp_count_txn_t *c);

/* One upsert statement of set[0..k) (borrowed; must live until the transaction ends) inserted the
 * objects rows[2i], rows[2i+1] (i < nrows): the message's ordinal in set and the object's ordinal in
 * its "objects", both 1-based. Computes their terms; only when all of them count are they kept for
 * the transaction. Returns BP_COUNT_OK, BP_COUNT_OVERFLOW (a string the typed rule reads as a number
 * numeric cannot hold: 007's trigger failed the statement on it, the caller refuses the statement the
 * same way), BP_COUNT_NOMEM or BP_COUNT_MALFORMED (ordinals or payloads that do not match). */
int bp_count_txn_add(bp_count_txn_t *c, bp_ingest_msg_t *const *set, size_t k, const int64_t *rows, size_t nrows)
    BP_MUST_CHECK;

/* Take the sparse keys from json (a JSON array of strings, NUL-terminated) and, when objects are
 * counted already, compute their terms again with them. BP_COUNT_OK, BP_COUNT_NOMEM or
 * BP_COUNT_MALFORMED. */
int bp_count_txn_set_sparse(bp_count_txn_t *c, const char *json) BP_MUST_CHECK;

/* The parameters of bp_count_add_terms(sparse, kinds, keys, vals, ns): four text[] in binary format
 * and a bigint[] in text format, as PQexecPrepared takes them. */
typedef struct bp_count_params {
    char *values[5];
    int lengths[5];
    int formats[5];
} bp_count_params_t;

/* Fill p (free with bp_count_params_free, also after a failure). BP_COUNT_OK or BP_COUNT_NOMEM. */
int bp_count_txn_params(const bp_count_txn_t *c, bp_count_params_t *p) BP_MUST_CHECK;

void bp_count_params_free(bp_count_params_t *p);

#endif
