/* bp_pg.c - PostgreSQL helpers: error text and SQLSTATE classes (for everyone), and blocking connect,
 * create the database, migrate (never from the API's event loop: it has api/pgpool.c). */
#include "bp_pg.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bp_log.h"

/* Length of msg without its trailing newlines and spaces (libpq ends its messages with a newline). */
static size_t trimmed_len(const char *msg)
{
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    return n;
}

void bp_pg_error_line(char *dst, size_t dstlen, const char *prefix, const char *msg, bp_pg_line_t how)
{
    size_t n;
    if (how == BP_PG_LINE_FIRST) {
        if (msg == NULL || *msg == '\0')
            msg = "unknown error";
        n = strcspn(msg, "\n");
    } else {
        n = trimmed_len(msg);
    }
    snprintf(dst, dstlen, "%s%.*s", prefix != NULL ? prefix : "", (int)n, msg);
}

void bp_pg_result_error(char *err, size_t errlen, const char *what, const PGconn *conn, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *msg = primary ? primary : conn ? PQerrorMessage(conn) : "no connection";
    size_t n = trimmed_len(msg);
    if (state != NULL)
        snprintf(err, errlen, "%s: %.*s (SQLSTATE %s)", what, (int)n, msg, state);
    else
        snprintf(err, errlen, "%s: %.*s", what, (int)n, msg);
    for (char *p = err; *p; p++) /* one line in logs and headers */
        if (*p == '\n' || *p == '\r')
            *p = ' ';
}

void bp_pg_offsets_channel(const char *group_id, const char *topic, char *out, size_t outlen)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)group_id; *p; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    h = (h ^ 0) * 0x100000001b3ULL; /* a separator no group id contains */
    for (const unsigned char *p = (const unsigned char *)topic; *p; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    snprintf(out, outlen, "bp_offsets_%016" PRIx64, h);
}

PGconn *bp_pg_connect(const char *dsn, char *err, size_t errlen)
{
    PGconn *conn = PQconnectdb(dsn);
    if (conn == NULL) {
        snprintf(err, errlen, "PostgreSQL: out of memory");
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        bp_pg_error_line(err, errlen, "PostgreSQL: ", PQerrorMessage(conn), BP_PG_LINE_TRIMMED);
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

static int is(const char *sqlstate, const char *prefix)
{
    return strncmp(sqlstate, prefix, strlen(prefix)) == 0;
}

bp_pg_fault_t bp_pg_fault_sqlstate(const char *sqlstate)
{
    if (sqlstate == NULL || strlen(sqlstate) != 5)
        return BP_PG_FAULT_CONNECTION;
    if (is(sqlstate, "08") || is(sqlstate, "57P01") || is(sqlstate, "57P02") || is(sqlstate, "57P03") ||
        is(sqlstate, "57P05"))
        return BP_PG_FAULT_CONNECTION;
    if (is(sqlstate, "28") || is(sqlstate, "3D000") || is(sqlstate, "42501") || is(sqlstate, "42P01") ||
        is(sqlstate, "42703") || is(sqlstate, "42883") || is(sqlstate, "57P04"))
        return BP_PG_FAULT_OPERATOR;
    if (is(sqlstate, "40001") || is(sqlstate, "40P01") || is(sqlstate, "55P03"))
        return BP_PG_FAULT_CONCURRENCY;
    if (is(sqlstate, "22") || is(sqlstate, "23") || is(sqlstate, "54"))
        return BP_PG_FAULT_DATA;
    return BP_PG_FAULT_OTHER;
}

bp_pg_fault_t bp_pg_fault(const PGconn *conn, const PGresult *res)
{
    if ((conn != NULL && PQstatus(conn) != CONNECTION_OK) || res == NULL)
        return BP_PG_FAULT_CONNECTION;
    return bp_pg_fault_sqlstate(PQresultErrorField(res, PG_DIAG_SQLSTATE));
}

int bp_pg_fault_bounded(bp_pg_fault_t fault)
{
    return fault == BP_PG_FAULT_CONCURRENCY || fault == BP_PG_FAULT_DATA || fault == BP_PG_FAULT_OTHER;
}

bp_err_t bp_pg_classify_sqlstate(const char *sqlstate)
{
    bp_pg_fault_t f = bp_pg_fault_sqlstate(sqlstate);
    /* for the API, a server going away or out of resources is "unavailable" */
    if (f == BP_PG_FAULT_CONNECTION || is(sqlstate, "57P") || is(sqlstate, "53"))
        return BP_ERR_PG_DOWN;
    if (f == BP_PG_FAULT_CONCURRENCY || is(sqlstate, "57014") || is(sqlstate, "58") || is(sqlstate, "XX"))
        return BP_ERR_PG_TRANSIENT;
    return BP_ERR_PG_DATA;
}

bp_err_t bp_pg_classify(const PGconn *conn, const PGresult *res)
{
    if (conn != NULL && PQstatus(conn) != CONNECTION_OK)
        return BP_ERR_PG_DOWN;
    if (res == NULL)
        return BP_ERR_PG_DOWN;
    return bp_pg_classify_sqlstate(PQresultErrorField(res, PG_DIAG_SQLSTATE));
}

bp_err_t bp_pg_statement_outcome(const PGconn *conn, const PGresult *res, char *msg, size_t msglen)
{
    if (res == NULL) {
        bp_pg_error_line(msg, msglen, NULL, conn != NULL ? PQerrorMessage(conn) : NULL, BP_PG_LINE_FIRST);
        return BP_ERR_PG_DOWN;
    }
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        msg[0] = '\0';
        return BP_OK;
    }
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    bp_pg_error_line(msg, msglen, NULL, primary != NULL ? primary : PQresultErrorMessage(res),
                     BP_PG_LINE_FIRST);
    const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (sqlstate != NULL && strcmp(sqlstate, "57014") == 0)
        return BP_ERR_TIMEOUT; /* canceling statement due to statement timeout */
    return bp_pg_classify(conn, res);
}

int bp_pg_standby_gave_up(const char *sqlstate)
{
    return sqlstate != NULL && (strcmp(sqlstate, "40001") == 0 || is(sqlstate, "57P"));
}

int bp_pg_ensure_database(const char *dsn, char *err, size_t errlen)
{
    char *pqerr = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &pqerr);
    if (opts == NULL) {
        bp_pg_error_line(err, errlen, "BP_PG_DSN: ", pqerr ? pqerr : "cannot be parsed",
                         BP_PG_LINE_TRIMMED);
        PQfreemem(pqerr);
        return -1;
    }
    const char *keys[64];
    const char *vals[64];
    const char *dbname = NULL;
    int n = 0;
    for (PQconninfoOption *o = opts; o->keyword != NULL && n < 62; o++) {
        if (o->val == NULL)
            continue;
        if (strcmp(o->keyword, "dbname") == 0) {
            dbname = o->val;
            continue;
        }
        keys[n] = o->keyword;
        vals[n] = o->val;
        n++;
    }
    keys[n] = "dbname";
    vals[n] = "postgres";
    keys[n + 1] = NULL;
    vals[n + 1] = NULL;
    int rc = -1;
    PGconn *conn = NULL;
    PGresult *res = NULL;
    if (dbname == NULL) {
        rc = 0; /* libpq's default database: nothing to create */
        goto cleanup;
    }
    conn = PQconnectdbParams(keys, vals, 0);
    if (PQstatus(conn) != CONNECTION_OK) {
        bp_pg_error_line(err, errlen, "PostgreSQL: ", PQerrorMessage(conn), BP_PG_LINE_TRIMMED);
        goto cleanup;
    }
    const char *params[1] = {dbname};
    res = PQexecParams(conn, "SELECT 1 FROM pg_database WHERE datname = $1", 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        bp_pg_error_line(err, errlen, "PostgreSQL: ", PQerrorMessage(conn), BP_PG_LINE_TRIMMED);
        goto cleanup;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        /* CREATE DATABASE takes no parameters: quote the identifier with libpq */
        char *ident = PQescapeIdentifier(conn, dbname, strlen(dbname));
        char sql[512];
        snprintf(sql, sizeof(sql), "CREATE DATABASE %s", ident ? ident : "\"\"");
        PQfreemem(ident);
        res = PQexec(conn, sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            if (state == NULL || strcmp(state, "42P04") != 0) { /* raced with another creator: fine */
                bp_pg_error_line(err, errlen, "PostgreSQL: ", PQerrorMessage(conn), BP_PG_LINE_TRIMMED);
                goto cleanup;
            }
        } else {
            bp_log_info("created database %s", dbname);
        }
    }
    rc = 0;
cleanup:
    PQclear(res);
    PQfinish(conn);
    PQconninfoFree(opts);
    PQfreemem(pqerr);
    return rc;
}

static long migration_number(const char *name)
{
    if (!isdigit((unsigned char)name[0]))
        return -1;
    char *end;
    errno = 0;
    long v = strtol(name, &end, 10);
    if (errno != 0 || *end != '_')
        return -1;
    size_t len = strlen(name);
    if (len < 5 || strcmp(name + len - 4, ".sql") != 0)
        return -1;
    return v;
}

static int cmp_migration(const void *a, const void *b)
{
    long x = migration_number(*(char *const *)a), y = migration_number(*(char *const *)b);
    return (x > y) - (x < y);
}

int bp_migrate_order(char **names, size_t n, char *err, size_t errlen)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (migration_number(names[i]) < 0) {
            snprintf(err, errlen, "migration \"%s\" is not named NNN_name.sql", names[i]);
            return -1;
        }
    }
    qsort(names, n, sizeof(char *), cmp_migration);
    for (size_t i = 1; i < n; i++) {
        if (migration_number(names[i]) == migration_number(names[i - 1])) {
            snprintf(err, errlen, "migrations \"%s\" and \"%s\" share the number %ld", names[i - 1], names[i],
                     migration_number(names[i]));
            return -1;
        }
    }
    return 0;
}

static char *read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = (cap + 4096) * 2;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                snprintf(err, errlen, "out of memory");
                return NULL;
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

static int exec_ok(PGconn *conn, const char *sql, char *err, size_t errlen, const char *what)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    PQclear(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char prefix[300];
        snprintf(prefix, sizeof(prefix), "%s: ", what);
        bp_pg_error_line(err, errlen, prefix, PQerrorMessage(conn), BP_PG_LINE_TRIMMED);
        return -1;
    }
    return 0;
}

static int apply_one(PGconn *conn, const char *dir, const char *name, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    char *sql = read_file(path, err, errlen);
    if (sql == NULL)
        return -1;
    int rc = -1;
    char version[32];
    snprintf(version, sizeof(version), "%ld", migration_number(name));
    const char *params[2] = {version, name};
    PGresult *res = PQexecParams(conn, "SELECT 1 FROM bp_schema_migrations WHERE version = $1::int", 1, NULL,
                                 params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        bp_pg_error_line(err, errlen, "bp_schema_migrations: ", PQerrorMessage(conn), BP_PG_LINE_TRIMMED);
        goto cleanup;
    }
    if (PQntuples(res) > 0) {
        rc = 0; /* already applied */
        goto cleanup;
    }
    PQclear(res);
    res = NULL;
    if (exec_ok(conn, "BEGIN", err, errlen, name) != 0)
        goto cleanup;
    if (exec_ok(conn, sql, err, errlen, name) != 0) {
        PQclear(PQexec(conn, "ROLLBACK"));
        goto cleanup;
    }
    res = PQexecParams(conn, "INSERT INTO bp_schema_migrations (version, name) VALUES ($1::int, $2)", 2, NULL,
                       params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        bp_pg_error_line(err, errlen, "bp_schema_migrations: ", PQerrorMessage(conn), BP_PG_LINE_TRIMMED);
        PQclear(PQexec(conn, "ROLLBACK"));
        goto cleanup;
    }
    if (exec_ok(conn, "COMMIT", err, errlen, name) != 0)
        goto cleanup;
    bp_log_info("applied migration %s", name);
    rc = 1;
cleanup:
    PQclear(res);
    free(sql);
    return rc;
}

int bp_migrate_apply(PGconn *conn, const char *dir, int *applied, char *err, size_t errlen)
{
    *applied = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        snprintf(err, errlen, "migrations folder %s: %s", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = -1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len < 4 || strcmp(de->d_name + len - 4, ".sql") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, cap * sizeof(*names));
            if (nn == NULL)
                goto cleanup;
            names = nn;
        }
        if ((names[n] = strdup(de->d_name)) == NULL)
            goto cleanup;
        n++;
    }
    if (bp_migrate_order(names, n, err, errlen) != 0)
        goto cleanup;
    /* one migrator at a time; the lock is released with the session or explicitly below */
    if (exec_ok(conn, "SELECT pg_advisory_lock(7204101)", err, errlen, "advisory lock") != 0)
        goto cleanup;
    if (exec_ok(conn,
                "CREATE TABLE IF NOT EXISTS bp_schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())",
                err, errlen, "bp_schema_migrations") != 0) {
        PQclear(PQexec(conn, "SELECT pg_advisory_unlock(7204101)"));
        goto cleanup;
    }
    rc = 0;
    for (size_t i = 0; i < n; i++) {
        int r = apply_one(conn, dir, names[i], err, errlen);
        if (r < 0) {
            rc = -1;
            break;
        }
        *applied += r;
    }
    PQclear(PQexec(conn, "SELECT pg_advisory_unlock(7204101)"));
cleanup:
    closedir(d);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

static char *put32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
    return p + 4;
}

char *bp_pg_text_array_binary(const char *const *v, const size_t *lens, size_t n, int *len)
{
    size_t total = 20;
    int nulls = 0;
    for (size_t i = 0; i < n; i++) {
        total += 4 + (v[i] != NULL ? lens[i] : 0);
        nulls |= v[i] == NULL;
    }
    if (total > INT32_MAX)
        return NULL;
    char *buf = malloc(total), *p = buf;
    if (buf == NULL)
        return NULL;
    p = put32(p, 1);                /* dimensions */
    p = put32(p, (uint32_t)nulls);  /* whether any element is NULL */
    p = put32(p, 25);               /* element type: text */
    p = put32(p, (uint32_t)n);
    p = put32(p, 1);                /* lower bound */
    for (size_t i = 0; i < n; i++) {
        if (v[i] == NULL) {
            p = put32(p, 0xffffffffu); /* -1: NULL */
            continue;
        }
        p = put32(p, (uint32_t)lens[i]);
        memcpy(p, v[i], lens[i]);
        p += lens[i];
    }
    *len = (int)total;
    return buf;
}

char *bp_pg_int_array_text(const int64_t *v, size_t n)
{
    char *s = malloc(n * 22 + 3);
    if (s == NULL)
        return NULL;
    size_t len = 0;
    s[len++] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(s + len, "%s%" PRId64, i ? "," : "", v[i]);
    s[len++] = '}';
    s[len] = '\0';
    return s;
}
