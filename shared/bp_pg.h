/* bp_pg.h - PostgreSQL helpers both binaries use: blocking connect with a clear error, SQLSTATE
 * classification into bp_err_t, creating the database, and the migration runner. */
#ifndef BP_PG_H
#define BP_PG_H

#include <stddef.h>

#include <libpq-fe.h>

#include "bp_error.h"

/* Connect (blocking; for the worker and the CLI, never the API's event loop). Returns a connection
 * in CONNECTION_OK state, or NULL with the reason (no password) in err. Free with PQfinish. */
PGconn *bp_pg_connect(const char *dsn, char *err, size_t errlen);

/* Map a failed result (or a NULL result on a broken connection) to an error:
 * connection problems and class 08/57P/53 -> BP_ERR_PG_DOWN; 40001/40P01/55P03 -> BP_ERR_PG_TRANSIENT;
 * data and integrity errors (22, 23, 42...) -> BP_ERR_PG_DATA. res and conn are borrowed; conn may be NULL. */
bp_err_t bp_pg_classify(const PGconn *conn, const PGresult *res);

/* Same, from a SQLSTATE alone (NULL means the connection failed). */
bp_err_t bp_pg_classify_sqlstate(const char *sqlstate);

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
