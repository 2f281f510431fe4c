/* bp_pg.h - PostgreSQL helpers both binaries use: blocking connect with a clear error, SQLSTATE
 * classification (whose fault, and as a bp_err_t), creating the database, and the migration runner. */
#ifndef BP_PG_H
#define BP_PG_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "bp_error.h"

/* Connect (blocking; for the worker and the CLI, never the API's event loop). Returns a connection
 * in CONNECTION_OK state, or NULL with the reason (no password) in err. Free with PQfinish. */
PGconn *bp_pg_connect(const char *dsn, char *err, size_t errlen);

/* Whose fault a PostgreSQL failure is: what the ingest worker's retry and dead-letter decisions read.
 * The one place that knows which SQLSTATEs mean what (docs/INGEST.md "Failures and retries"). */
typedef enum bp_pg_fault {
    BP_PG_FAULT_NONE = 0,    /* no PostgreSQL failure (or one outside PostgreSQL: memory, the broker) */
    BP_PG_FAULT_CONNECTION,  /* no connection, class 08, 57P01-57P03 (shutdown), 57P05: retry without limit */
    BP_PG_FAULT_OPERATOR,    /* no message can cause it and only an operator can fix it: 28* (auth), 3D000,
                              * 42501 (privilege), 42P01/42703/42883 (schema missing), 57P04: retry
                              * without limit, loudly */
    BP_PG_FAULT_CONCURRENCY, /* another transaction was in the way: 40001, 40P01, 55P03: retry */
    BP_PG_FAULT_DATA,        /* the message's data, for good: classes 22, 23, 54: dead letter at once */
    BP_PG_FAULT_OTHER,       /* anything else (XX000, 21000, 53*, 57014 statement timeout, ...): maybe the
                              * message, maybe not: retry a bounded number of times, then find out alone */
} bp_pg_fault_t;

/* The fault of a SQLSTATE (NULL or malformed: the connection failed). */
bp_pg_fault_t bp_pg_fault_sqlstate(const char *sqlstate);

/* The fault of a failed result (NULL result or a broken connection: BP_PG_FAULT_CONNECTION). conn and
 * res are borrowed; conn may be NULL. */
bp_pg_fault_t bp_pg_fault(const PGconn *conn, const PGresult *res);

/* Whether retrying a failure of this kind counts toward the worker's attempt bound: no for a lost
 * connection, an operator's problem or none at all (those are retried without limit). */
int bp_pg_fault_bounded(bp_pg_fault_t fault);

/* Map a failed result (or a NULL result on a broken connection) to an error, for the API's answers:
 * connection problems and class 08/57P/53 -> BP_ERR_PG_DOWN; 40001/40P01/55P03/57014/58/XX ->
 * BP_ERR_PG_TRANSIENT; the rest (22, 23, 42...) -> BP_ERR_PG_DATA. res and conn are borrowed; conn may
 * be NULL. */
bp_err_t bp_pg_classify(const PGconn *conn, const PGresult *res);

/* Same, from a SQLSTATE alone (NULL means the connection failed). */
bp_err_t bp_pg_classify_sqlstate(const char *sqlstate);

/* The outcome of a statement's final result, for the API's pool: BP_OK for PGRES_TUPLES_OK and
 * PGRES_COMMAND_OK (msg ""); a NULL res (the connection failed) -> BP_ERR_PG_DOWN with conn's message;
 * 57014 (statement timeout, or a cancel) -> BP_ERR_TIMEOUT; else as bp_pg_classify. msg gets the first
 * line of the server's primary message (bp_pg_error_line, BP_PG_LINE_FIRST). conn and res are borrowed;
 * conn may be NULL. */
bp_err_t bp_pg_statement_outcome(const PGconn *conn, const PGresult *res, char *msg, size_t msglen);

/* 1 when a hot standby gave up a statement for reasons of its own, not the statement's, so that the
 * primary may run it instead: 40001 (cancelled for a conflict with recovery) or class 57P (shut down,
 * or the session ended by recovery). NULL: 0. */
int bp_pg_standby_gave_up(const char *sqlstate);

/* The LISTEN/NOTIFY channel on which the workers of group_id announce, in the transaction that moves
 * ingest_offsets of topic, each partition's new next_offset (payload "PARTITION:NEXT_OFFSET"; delivered
 * at COMMIT), and on which the API's ?wait= listens. The one place that names it: "bp_offsets_" and a
 * 64-bit FNV-1a hash of group and topic in hex (a channel name is at most 63 bytes; group ids may be
 * longer). A hash collision only costs a listener a needless re-check. out gets at least 32 bytes. */
#define BP_PG_CHANNEL_LEN 32
void bp_pg_offsets_channel(const char *group_id, const char *topic, char *out, size_t outlen);

/* How bp_pg_error_line puts a libpq message on one line (libpq ends its messages with a newline and
 * may add hints or a second connection attempt on further lines). */
typedef enum bp_pg_line {
    BP_PG_LINE_TRIMMED, /* the whole message, without its trailing newlines and spaces */
    BP_PG_LINE_FIRST,   /* its first line only; a NULL or empty message reads "unknown error" */
} bp_pg_line_t;

/* The one formatter of PostgreSQL's error text: dst = prefix (NULL: none) + msg shaped as how says.
 * Truncates to dstlen; msg is borrowed. */
void bp_pg_error_line(char *dst, size_t dstlen, const char *prefix, const char *msg, bp_pg_line_t how);

/* err = "what: " + the failure of res: its primary message and " (SQLSTATE xxxxx)" when there is a
 * result, else conn's message, else "no connection", trimmed, with every newline turned into a space
 * (one line in logs and dead letters' headers). conn and res are borrowed; both may be NULL. */
void bp_pg_result_error(char *err, size_t errlen, const char *what, const PGconn *conn, const PGresult *res);

/* Array parameters, built once per statement instead of one statement per row. */

/* A text[] in PostgreSQL's binary array format (parameter format 1, type text[]) of v[0..n), each
 * lens[i] bytes, v[i] NULL for a NULL element: one copy of each value, no escaping. Returns a malloc'd
 * buffer of *len bytes, or NULL without memory (or beyond 2 GiB). */
char *bp_pg_text_array_binary(const char *const *v, const size_t *lens, size_t n, int *len) BP_MUST_CHECK;

/* "{1,2,3}": an int[] or bigint[] parameter in text format. malloc'd, NULL without memory. */
char *bp_pg_int_array_text(const int64_t *v, size_t n) BP_MUST_CHECK;

/* Create the database named in dsn if it does not exist, connecting to the "postgres" database of
 * the same server. Returns 0, or -1 with err. */
int bp_pg_ensure_database(const char *dsn, char *err, size_t errlen) BP_MUST_CHECK;

/* Sort migration file names by their numeric prefix ("001_init.sql" < "002_x.sql"). Names without a
 * numeric prefix, or not ending in ".sql", are rejected; so are two files with the same number.
 * names is reordered in place. Returns 0, or -1 with err naming the offending file. */
int bp_migrate_order(char **names, size_t n, char *err, size_t errlen) BP_MUST_CHECK;

/* Apply every migration in dir not yet recorded in bp_schema_migrations, each in its own transaction,
 * in order, under an advisory lock (several migrators at once are safe). *applied counts those run now.
 * Returns 0, or -1 with err naming the file and PostgreSQL's message. */
int bp_migrate_apply(PGconn *conn, const char *dir, int *applied, char *err, size_t errlen) BP_MUST_CHECK;

#endif
