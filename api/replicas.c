/* replicas.c - the standbys of BP_PG_READ_DSN and their replay lag, sampled once a second by one
 * background thread with one blocking connection per standby; loop threads read atomics only. */
#include "replicas.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "bp_clock.h"
#include "bp_log.h"
#include "bp_periodic.h"

#define MAX_STANDBYS 16
#define SAMPLE_INTERVAL_MS 1000
#define SAMPLE_STALE_MS 3000 /* a sample older than this says nothing: the standby is not used */

/* Lag in ms on the standby: 0 when everything streamed in has been replayed; else the age of the last
 * replayed transaction (NULL when none was replayed since the start: unknown, -1). A standby that is
 * not in recovery (promoted, or a primary given as a read DSN) does not lag. */
static const char lag_sql[] =
    "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0"
    " WHEN pg_last_wal_receive_lsn() IS NOT NULL"
    "  AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()"
    "  AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming') THEN 0"
    " ELSE coalesce((extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint, -1)"
    " END";

/* How far the workers' group has applied BP_TOPIC on this database (bp_replicas_applied). */
static const char applied_sql[] = "SELECT partition, next_offset FROM ingest_offsets WHERE group_id = $1"
                                  " AND topic = $2 ORDER BY partition";

typedef struct standby {
    char *dsn;
    char where[96];     /* host:port for the log */
    PGconn *pg;         /* the monitor thread's */
    atomic_int up;      /* the last sample answered */
    atomic_int checked; /* a sample has ended, answered or not */
    atomic_llong lag_ms; /* of the last sample that answered; -1 unknown */
    atomic_ullong sampled_ms; /* monotonic ms of the last sample that answered; 0 never */
    int logged_down;
    bp_metric_t *m_up, *m_lag, *m_fallbacks;
    /* the applied-through text of the last sample, under bp_replicas.applied_mu */
    char applied[BP_APPLIED_MAX];
    uint64_t applied_ms; /* monotonic ms of that sample; 0 never */
} standby_t;

struct bp_replicas {
    const bp_config_t *cfg;
    long long max_lag_ms;
    size_t n;
    standby_t standbys[MAX_STANDBYS];
    standby_t primary; /* cfg->pg_dsn, sampled for its applied-through only (dsn NULL: not sampled) */
    pthread_mutex_t applied_mu;
    bp_periodic_t bg; /* the monitor thread */
};

static void sample_applied(bp_replicas_t *r, standby_t *s);

static void first_line(char *dst, size_t len, const char *msg)
{
    size_t n = strcspn(msg != NULL ? msg : "", "\n");
    snprintf(dst, len, "%.*s", (int)n, msg != NULL ? msg : "");
}

static void mark_down(standby_t *s, size_t i, const char *why)
{
    atomic_store(&s->up, 0);
    atomic_store(&s->checked, 1);
    bp_gauge_set(s->m_up, 0);
    if (!s->logged_down) {
        char line[256];
        first_line(line, sizeof(line), why);
        bp_log_warn("standby-%zu (%s) not usable for reads: %s", i + 1, s->where, line);
        s->logged_down = 1;
    }
    if (s->pg != NULL && PQstatus(s->pg) != CONNECTION_OK) {
        PQfinish(s->pg);
        s->pg = NULL;
    }
}

/* One sample of standby i: (re)connect when needed, run lag_sql. Blocks at most ~2 s + 1 s. */
static void sample(bp_replicas_t *r, size_t i)
{
    standby_t *s = &r->standbys[i];
    if (s->pg == NULL) {
        const char *keys[] = {"dbname", "connect_timeout", "options", "application_name", NULL};
        const char *vals[] = {s->dsn, "2", "-c statement_timeout=1000", "batchpipe-api-replica-monitor",
                              NULL};
        s->pg = PQconnectdbParams(keys, vals, 1); /* later keywords win over the DSN's */
        if (s->pg == NULL || PQstatus(s->pg) != CONNECTION_OK) {
            mark_down(s, i, s->pg != NULL ? PQerrorMessage(s->pg) : "out of memory");
            if (s->pg != NULL) {
                PQfinish(s->pg);
                s->pg = NULL;
            }
            return;
        }
    }
    PGresult *res = PQexec(s->pg, lag_sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        char why[256];
        const char *msg = PQresultStatus(res) == PGRES_TUPLES_OK ? "no row" : PQerrorMessage(s->pg);
        first_line(why, sizeof(why), msg);
        PQclear(res);
        if (PQstatus(s->pg) != CONNECTION_OK) {
            PQfinish(s->pg);
            s->pg = NULL;
        }
        mark_down(s, i, why);
        return;
    }
    long long lag = PQgetisnull(res, 0, 0) ? -1 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    sample_applied(r, s);
    atomic_store(&s->lag_ms, lag);
    atomic_store(&s->sampled_ms, (uint64_t)bp_clock_ms());
    atomic_store(&s->up, 1);
    atomic_store(&s->checked, 1);
    bp_gauge_set(s->m_up, 1);
    bp_gauge_set(s->m_lag, lag >= 0 ? (double)lag / 1000.0 : -1);
    if (s->logged_down) {
        bp_log_info("standby-%zu (%s) answers again (lag %lld ms)", i + 1, s->where, lag);
        s->logged_down = 0;
    }
}

/* The applied-through text of database s (connected) into its slot. A failure leaves the old text,
 * which ages out (bp_replicas_applied): the lag check decides whether the database is usable. */
static void sample_applied(bp_replicas_t *r, standby_t *s)
{
    if (r->cfg->group_id == NULL || r->cfg->topic == NULL)
        return;
    const char *params[] = {r->cfg->group_id, r->cfg->topic};
    PGresult *res = PQexecParams(s->pg, applied_sql, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        char text[BP_APPLIED_MAX];
        size_t n = bp_replicas_format_applied(res, text, sizeof(text));
        pthread_mutex_lock(&r->applied_mu);
        memcpy(s->applied, text, n);
        s->applied[n] = '\0';
        s->applied_ms = (uint64_t)bp_clock_ms();
        pthread_mutex_unlock(&r->applied_mu);
    }
    PQclear(res);
}

/* The primary: its applied-through only (its lag is 0 by definition). Blocks at most ~2 s + 1 s. */
static void sample_primary(bp_replicas_t *r)
{
    standby_t *s = &r->primary;
    if (s->pg == NULL) {
        const char *keys[] = {"dbname", "connect_timeout", "options", "application_name", NULL};
        const char *vals[] = {s->dsn, "2", "-c statement_timeout=1000", "batchpipe-api-replica-monitor",
                              NULL};
        s->pg = PQconnectdbParams(keys, vals, 1);
        if (s->pg == NULL || PQstatus(s->pg) != CONNECTION_OK) {
            if (!s->logged_down) {
                char line[256];
                first_line(line, sizeof(line), s->pg != NULL ? PQerrorMessage(s->pg) : "out of memory");
                bp_log_warn("primary (%s): cannot sample its applied offsets for BP-Applied-Through: %s",
                            s->where, line);
                s->logged_down = 1;
            }
            PQfinish(s->pg);
            s->pg = NULL;
            return;
        }
        s->logged_down = 0;
    }
    sample_applied(r, s);
    if (PQstatus(s->pg) != CONNECTION_OK) {
        PQfinish(s->pg);
        s->pg = NULL;
    }
}

static void *thread_main(void *arg)
{
    bp_replicas_t *r = arg;
    while (!bp_periodic_stopping(&r->bg)) {
        for (size_t i = 0; i < r->n && !bp_periodic_stopping(&r->bg); i++)
            sample(r, i);
        if (r->primary.dsn != NULL && !bp_periodic_stopping(&r->bg))
            sample_primary(r);
        bp_periodic_sleep(&r->bg, SAMPLE_INTERVAL_MS, NULL);
    }
    for (size_t i = 0; i < r->n; i++) {
        if (r->standbys[i].pg != NULL)
            PQfinish(r->standbys[i].pg);
        r->standbys[i].pg = NULL;
    }
    PQfinish(r->primary.pg);
    r->primary.pg = NULL;
    return NULL;
}

/* "host:port" of a connection string, for the log (never the whole string: it may hold a password). */
static int describe(const char *dsn, char *where, size_t len, char *err, size_t errlen)
{
    char *pqerr = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &pqerr);
    if (opts == NULL) {
        char line[200];
        first_line(line, sizeof(line), pqerr != NULL ? pqerr : "out of memory");
        snprintf(err, errlen, "BP_PG_READ_DSN: %s", line);
        PQfreemem(pqerr);
        return -1;
    }
    const char *host = "", *port = "5432";
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL)
            continue;
        if (strcmp(o->keyword, "host") == 0 || (strcmp(o->keyword, "hostaddr") == 0 && host[0] == '\0'))
            host = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
    }
    snprintf(where, len, "%s:%s", host[0] != '\0' ? host : "(default)", port);
    PQconninfoFree(opts);
    return 0;
}

static int add_standby(bp_replicas_t *r, const char *dsn, bp_metrics_t *metrics, char *err, size_t errlen)
{
    if (r->n >= MAX_STANDBYS) {
        snprintf(err, errlen, "BP_PG_READ_DSN: at most %d standbys", MAX_STANDBYS);
        return -1;
    }
    standby_t *s = &r->standbys[r->n];
    if (describe(dsn, s->where, sizeof(s->where), err, errlen) != 0)
        return -1;
    s->dsn = strdup(dsn);
    if (s->dsn == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    atomic_init(&s->up, 0);
    atomic_init(&s->checked, 0);
    atomic_init(&s->lag_ms, -1);
    atomic_init(&s->sampled_ms, 0);
    r->n++;
    if (metrics != NULL) {
        char labels[48];
        snprintf(labels, sizeof(labels), "standby=\"%s\"", bp_replicas_name(r->n));
        s->m_up = bp_metrics_gauge(metrics, "bp_pg_replica_up",
                                   "1 when the standby answered its last lag check (once a second), else 0.",
                                   labels);
        s->m_lag = bp_metrics_gauge(metrics, "bp_pg_replica_lag_seconds",
                                    "Replay lag of the standby at its last check: 0 when it has replayed all "
                                    "it received, else now() - pg_last_xact_replay_timestamp(); -1 unknown.",
                                    labels);
        s->m_fallbacks = bp_metrics_counter(metrics, "bp_pg_replica_fallbacks_total",
                                            "Reads sent to the standby that it could not run (down, queue full, "
                                            "cancelled) and the primary answered instead.", labels);
        bp_gauge_set(s->m_up, 0);
        bp_gauge_set(s->m_lag, -1);
    }
    bp_log_info("standby-%zu at %s serves reads when its lag is at most %lld ms", r->n, s->where,
                r->max_lag_ms);
    return 0;
}

bp_replicas_t *bp_replicas_new(const bp_config_t *cfg, bp_metrics_t *metrics, char *err, size_t errlen)
{
    bp_replicas_t *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->cfg = cfg;
    r->max_lag_ms = cfg->max_replica_lag_ms;
    bp_periodic_init(&r->bg);
    pthread_mutex_init(&r->applied_mu, NULL);
    char *list = strdup(cfg->pg_read_dsn != NULL ? cfg->pg_read_dsn : "");
    if (list == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    char *save = NULL;
    for (char *one = strtok_r(list, ";", &save); one != NULL; one = strtok_r(NULL, ";", &save)) {
        one += strspn(one, " \t\n");
        if (*one == '\0')
            continue;
        if (add_standby(r, one, metrics, err, errlen) != 0) {
            free(list);
            goto fail;
        }
    }
    free(list);
    if (cfg->pg_dsn != NULL && cfg->pg_dsn[0] != '\0') {
        if (describe(cfg->pg_dsn, r->primary.where, sizeof(r->primary.where), err, errlen) != 0)
            snprintf(r->primary.where, sizeof(r->primary.where), "BP_PG_DSN");
        r->primary.dsn = strdup(cfg->pg_dsn);
        if (r->primary.dsn == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
    if (r->n > 0 || r->primary.dsn != NULL) {
        if (bp_periodic_start(&r->bg, thread_main, r) != 0) {
            snprintf(err, errlen, "cannot start the replica monitor thread");
            goto fail;
        }
    }
    return r;
fail:
    bp_replicas_free(r);
    return NULL;
}

void bp_replicas_stop(bp_replicas_t *r)
{
    if (r != NULL)
        bp_periodic_stop(&r->bg);
}

void bp_replicas_free(bp_replicas_t *r)
{
    if (r == NULL)
        return;
    bp_periodic_destroy(&r->bg);
    for (size_t i = 0; i < r->n; i++)
        free(r->standbys[i].dsn);
    free(r->primary.dsn);
    pthread_mutex_destroy(&r->applied_mu);
    free(r);
}

size_t bp_replicas_count(const bp_replicas_t *r)
{
    return r != NULL ? r->n : 0;
}

const char *bp_replicas_dsn(const bp_replicas_t *r, size_t i)
{
    return r->standbys[i - 1].dsn;
}

const char *bp_replicas_name(size_t i)
{
    static const char *const names[MAX_STANDBYS + 1] = {
        "primary",    "standby-1",  "standby-2",  "standby-3",  "standby-4",  "standby-5",
        "standby-6",  "standby-7",  "standby-8",  "standby-9",  "standby-10", "standby-11",
        "standby-12", "standby-13", "standby-14", "standby-15", "standby-16"};
    return i <= MAX_STANDBYS ? names[i] : "standby";
}

typedef enum { ST_UNKNOWN, ST_UP, ST_LAGGING, ST_DOWN } standby_state_t;

static standby_state_t state_of(const bp_replicas_t *r, size_t i, long long *lag)
{
    const standby_t *s = &r->standbys[i];
    uint64_t at = atomic_load(&s->sampled_ms);
    *lag = atomic_load(&s->lag_ms);
    if (!atomic_load(&s->up))
        return atomic_load(&s->checked) ? ST_DOWN : ST_UNKNOWN;
    if ((uint64_t)bp_clock_ms() - at > SAMPLE_STALE_MS)
        return ST_DOWN; /* the monitor is stuck on it (or on another standby): trust nothing old */
    if (*lag < 0 || *lag > r->max_lag_ms)
        return ST_LAGGING;
    return ST_UP;
}

size_t bp_replicas_pick(const bp_replicas_t *r, unsigned *rr)
{
    if (r == NULL || r->n == 0)
        return BP_PG_PRIMARY;
    unsigned start = (*rr)++;
    for (size_t k = 0; k < r->n; k++) {
        size_t i = (start + k) % r->n;
        long long lag;
        if (state_of(r, i, &lag) == ST_UP)
            return i + 1;
    }
    return BP_PG_PRIMARY;
}

int bp_replicas_usable(const bp_replicas_t *r, size_t i)
{
    if (i == BP_PG_PRIMARY)
        return 1;
    long long lag;
    return r != NULL && i <= r->n && state_of(r, i - 1, &lag) == ST_UP;
}

size_t bp_replicas_applied(bp_replicas_t *r, size_t i, char *buf, size_t len)
{
    if (r == NULL || i > r->n || len == 0)
        return 0;
    standby_t *s = i == BP_PG_PRIMARY ? &r->primary : &r->standbys[i - 1];
    size_t n = 0;
    pthread_mutex_lock(&r->applied_mu);
    if (s->applied_ms != 0 && (uint64_t)bp_clock_ms() - s->applied_ms <= SAMPLE_STALE_MS) {
        n = strlen(s->applied);
        if (n >= len)
            n = 0;
        memcpy(buf, s->applied, n);
    }
    pthread_mutex_unlock(&r->applied_mu);
    buf[n] = '\0';
    return n;
}

size_t bp_replicas_format_applied(const PGresult *res, char *buf, size_t len)
{
    size_t n = 0;
    if (len == 0)
        return 0;
    buf[0] = '\0';
    for (int row = 0; row < PQntuples(res); row++) {
        long long next = strtoll(PQgetvalue(res, row, 1), NULL, 10);
        if (next <= 0)
            continue; /* nothing of that partition applied yet */
        int k = snprintf(buf + n, len - n, "%s%s:%lld", n > 0 ? "," : "", PQgetvalue(res, row, 0), next - 1);
        if (k < 0 || (size_t)k >= len - n) {
            buf[0] = '\0'; /* a partial list would claim nothing about the partitions cut off */
            return 0;
        }
        n += (size_t)k;
    }
    return n;
}

void bp_replicas_note_fallback(bp_replicas_t *r, size_t i)
{
    if (r != NULL && i >= 1 && i <= r->n)
        bp_counter_add(r->standbys[i - 1].m_fallbacks, 1);
}

json_t *bp_replicas_json(const bp_replicas_t *r)
{
    json_t *out = json_object(), *list = json_array();
    size_t usable = 0;
    static const char *const names[] = {"unknown", "up", "lagging", "down"};
    for (size_t i = 0; r != NULL && i < r->n; i++) {
        long long lag;
        standby_state_t st = state_of(r, i, &lag);
        usable += st == ST_UP;
        json_t *s = json_object();
        json_object_set_new(s, "name", json_string(bp_replicas_name(i + 1)));
        json_object_set_new(s, "status", json_string(names[st]));
        json_object_set_new(s, "lag_ms", st == ST_UNKNOWN || lag < 0 ? json_null() : json_integer(lag));
        json_object_set_new(s, "max_lag_ms", json_integer(r->max_lag_ms));
        json_object_set_new(s, "serving", json_boolean(st == ST_UP));
        json_array_append_new(list, s);
    }
    size_t n = bp_replicas_count(r);
    json_object_set_new(out, "status", json_string(n == 0 ? "none" : usable == n ? "up" : "degraded"));
    if (n > 0 && usable < n)
        json_object_set_new(out, "detail",
                            json_string(usable == 0 ? "no standby is usable: reads go to the primary"
                                                    : "some standbys are skipped: their reads go to others"));
    json_object_set_new(out, "standbys", list);
    return out;
}
