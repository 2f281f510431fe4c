/* cmd_counts.c - `batchpipe counts verify|rebuild`: check the counters that the lists' counts come from
 * (migration 007, docs/QUERIES.md#counting) against real counts, and put them right while writers run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bp_config.h"
#include "bp_pg.h"
#include "cli.h"

static const char counts_usage[] =
    "usage: batchpipe [settings] counts verify|rebuild\n"
    "  verify   compare every maintained count (all objects, per batch, per key, per value, per pair,\n"
    "           all batches) with a real count(*) in one snapshot; print each difference; exit 1 if any\n"
    "  rebuild  correct every count that differs and fold the counters' slots, online: writers wait only\n"
    "           while a SHARE lock on objects and batches marks the instant the real counts are taken\n";

/* One statement on conn; returns the result (PQclear it) or NULL with err set. */
static PGresult *run(PGconn *conn, const char *sql, ExecStatusType want, char *err, size_t errlen)
{
    PGresult *res = PQexec(conn, sql);
    if (PQresultStatus(res) == want)
        return res;
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    snprintf(err, errlen, "%s", msg != NULL ? msg : PQerrorMessage(conn));
    PQclear(res);
    return NULL;
}

static int ok(PGconn *conn, const char *sql, char *err, size_t errlen)
{
    PGresult *res = run(conn, sql, PGRES_COMMAND_OK, err, errlen);
    PQclear(res);
    return res != NULL ? 0 : -1;
}

static const char diff_sql[] =
    "SELECT kind, coalesce(key, ''), coalesce(value::text, ''), counted, actual FROM bp_counts_diff() "
    "ORDER BY kind, key, value::text";

static void print_term(const PGresult *res, int row)
{
    const char *kind = PQgetvalue(res, row, 0), *key = PQgetvalue(res, row, 1), *value = PQgetvalue(res, row, 2);
    switch (kind[0]) {
    case 't': printf("all objects"); break;
    case 'B': printf("all batches"); break;
    case 'b': printf("batch %s", key); break;
    case 'k': printf("key %s", key); break;
    case 'v': printf("value %s", value); break;
    default: printf("pair %s=%s", key, value); break;
    }
    printf(": counted %s, actual %s\n", PQgetvalue(res, row, 3), PQgetvalue(res, row, 4));
}

static int verify(PGconn *conn)
{
    char err[512];
    PGresult *res = run(conn, diff_sql, PGRES_TUPLES_OK, err, sizeof(err));
    if (res == NULL) {
        fprintf(stderr, "batchpipe counts: %s\n", err);
        return 1;
    }
    int n = PQntuples(res);
    for (int i = 0; i < n; i++)
        print_term(res, i);
    if (n == 0)
        printf("counts: every maintained count equals count(*)\n");
    else
        printf("counts: %d difference%s (batchpipe counts rebuild corrects them)\n", n, n == 1 ? "" : "s");
    PQclear(res);
    return n == 0 ? 0 : 1;
}

/* The counters are right when counters(now) = truth(now). Writers only ever add their own changes,
 * so with S an instant when no writer is in flight: counters(now) - counters(S) = truth(now) - truth(S).
 * Adding truth(S) - counters(S) (measured in one snapshot taken at S) makes them right, whatever
 * happened since. S is made by a SHARE lock on the tables (it waits for the writers in flight and
 * holds new ones) held on a second connection only until this one has taken its snapshot. */
static int rebuild(const bp_config_t *cfg, PGconn *conn)
{
    char err[512];
    PGconn *locker = bp_pg_connect(cfg->pg_dsn, err, sizeof(err));
    PGresult *res = NULL;
    if (locker == NULL) {
        fprintf(stderr, "batchpipe counts: %s\n", err);
        return 1;
    }
    int rc = 1;
    /* one rebuild at a time (released with the session) */
    if ((res = run(conn, "SELECT pg_advisory_lock(hashtext('batchpipe counts rebuild'))", PGRES_TUPLES_OK, err,
                   sizeof(err))) == NULL)
        goto fail;
    PQclear(res);
    res = NULL;
    if (ok(locker, "BEGIN", err, sizeof(err)) != 0 ||
        ok(locker, "LOCK TABLE batches, objects IN SHARE MODE", err, sizeof(err)) != 0)
        goto fail;
    if (ok(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ", err, sizeof(err)) != 0 ||
        (res = run(conn, "SELECT 1", PGRES_TUPLES_OK, err, sizeof(err))) == NULL) /* the snapshot: S */
        goto fail;
    PQclear(res);
    res = NULL;
    if (ok(locker, "COMMIT", err, sizeof(err)) != 0) /* writers go on */
        goto fail;
    if (ok(conn, "CREATE TEMP TABLE bp_count_fix AS SELECT h, kind, key, value, actual - counted AS d "
                 "FROM bp_counts_diff()", err, sizeof(err)) != 0 ||
        ok(conn, "COMMIT", err, sizeof(err)) != 0)
        goto fail;
    res = run(conn,
              "WITH up AS (INSERT INTO count_terms AS c (h, slot, kind, key, value, n) "
              "SELECT h, 0, kind, key, value, d FROM bp_count_fix ORDER BY h "
              "ON CONFLICT (h, slot) DO UPDATE SET n = c.n + EXCLUDED.n RETURNING 1) SELECT count(*) FROM up",
              PGRES_TUPLES_OK, err, sizeof(err));
    if (res == NULL)
        goto fail;
    printf("counts: %s term%s corrected\n", PQgetvalue(res, 0, 0), strcmp(PQgetvalue(res, 0, 0), "1") ? "s" : "");
    PQclear(res);
    res = NULL;
    for (int attempt = 0; attempt < 5; attempt++) { /* a writer may deadlock with the fold: it is retried */
        res = run(conn, "SELECT bp_counts_compact()", PGRES_TUPLES_OK, err, sizeof(err));
        if (res != NULL)
            break;
    }
    if (res == NULL)
        goto fail;
    printf("counts: %s terms folded into one row each\n", PQgetvalue(res, 0, 0));
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "batchpipe counts rebuild: %s\n", err);
done:
    PQclear(res);
    PQfinish(locker);
    return rc;
}

int cli_counts(const bp_config_t *cfg, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("%s", counts_usage);
        return 0;
    }
    if (argc != 2 || (strcmp(argv[1], "verify") != 0 && strcmp(argv[1], "rebuild") != 0)) {
        fprintf(stderr, "batchpipe counts: expected verify or rebuild (see batchpipe counts --help)\n");
        return 2;
    }
    char err[1024];
    PGconn *conn = bp_pg_connect(cfg->pg_dsn, err, sizeof(err));
    if (conn == NULL) {
        fprintf(stderr, "batchpipe counts: %s\n", err);
        return 1;
    }
    int rc = strcmp(argv[1], "verify") == 0 ? verify(conn) : rebuild(cfg, conn);
    PQfinish(conn);
    return rc;
}
