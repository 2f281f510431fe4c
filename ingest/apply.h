/* apply.h - the PostgreSQL writer of the ingest worker: applies buffered messages in one transaction
 * together with the partitions' next offsets (exactly-once in effect), one savepoint per message. */
#ifndef BP_APPLY_H
#define BP_APPLY_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "bp_config.h"
#include "bp_error.h"
#include "bp_pg.h"
#include "dlq.h"
#include "message.h"

typedef struct bp_apply bp_apply_t;

/* A partition and the next offset to apply there, as committed in ingest_offsets. */
typedef struct bp_part_offset {
    int32_t partition;
    int64_t next_offset;
} bp_part_offset_t;

/* A writer for cfg's database, group and topic (cfg borrowed, must outlive it). It connects lazily
 * and again by itself after the connection is lost. NULL without memory. Free with bp_apply_free. */
bp_apply_t *bp_apply_new(const bp_config_t *cfg);

/* Close the connection and free. Accepts NULL. */
void bp_apply_free(bp_apply_t *a);

/* Read the committed next offsets of the partitions in parts (the group's topic) and set each
 * element's offset: next_offset, or RD_KAFKA_OFFSET_BEGINNING for a partition without a row.
 * One attempt (connecting if needed). Returns BP_OK, or an error with err filled (parts untouched). */
bp_err_t bp_apply_load_offsets(bp_apply_t *a, rd_kafka_topic_partition_list_t *parts, char *err,
                               size_t errlen) BP_MUST_CHECK;

/* Apply msgs[0..n) (borrowed; per partition in offset order) in one transaction:
 *  - lock each partition's ingest_offsets row (created at 0 if missing); a message whose offset is
 *    below the row's next_offset was applied before and is skipped (BP_MSG_SKIPPED);
 *  - the other valid messages are written by one statement (BP_MSG_APPLIED); if PostgreSQL refuses
 *    it for the data (SQLSTATE classes 22, 23, 54), it is undone and each message is written under
 *    its own savepoint instead, so that only the refused ones fail (BP_MSG_DEAD, m->pg_reason says why);
 *  - with isolate set (the caller's transaction failed too often), no set-based statement: each
 *    message is written alone under its savepoint, and one that fails alone for any reason that is
 *    not a lost connection, an operator's problem or a concurrent transaction (bp_pg_fault_t) is
 *    refused too (BP_MSG_DEAD, the SQLSTATE in m->pg_reason);
 *  - invalid and refused messages are sent to dlq, in source order, and acked by the broker before
 *    the rows' next_offset moves past them and the transaction commits; each is recorded in
 *    dead_letters (reason, SQLSTATE, where its letter went) in the same transaction.
 * Once committed, each applied message is logged on one info line (BP_LOG_APPLIED).
 * Each message stays atomic: its batch row and all its objects commit together or not at all.
 * On BP_OK the outcomes are final and out[0..*nout) holds the partitions' committed next offsets
 * (out must have room for n entries). On an error nothing was committed (or the commit's fate is
 * unknown: a retry then skips what was applied), err says why and the caller retries or stops by
 * the error's class. Each message's outcome is reset at the start of every attempt. */
bp_err_t bp_apply_txn(bp_apply_t *a, bp_dlq_t *dlq, bp_ingest_msg_t *msgs, size_t n, int isolate,
                      bp_part_offset_t *out, size_t *nout, char *err, size_t errlen) BP_MUST_CHECK;

/* Delete this group's dead-letter records (dead_letters) older than days, outside any transaction of
 * bp_apply_txn, and raise the partitions' receipt horizons past them. *purged: rows deleted. Returns
 * BP_OK or an error with err filled (the worker tries again later). */
bp_err_t bp_apply_purge_dead_letters(bp_apply_t *a, long long days, long long *purged, char *err,
                                     size_t errlen) BP_MUST_CHECK;

/* After bp_apply_txn failed: whose fault it was (BP_PG_FAULT_NONE when not PostgreSQL's: out of
 * memory, the dead-letter topic). The worker bounds its retries by it. */
bp_pg_fault_t bp_apply_last_fault(const bp_apply_t *a);

#endif
