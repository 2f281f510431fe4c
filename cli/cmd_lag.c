/* cmd_lag.c - batchpipe lag: per partition of the batch topic, the ingest group's committed offset in
 * Kafka, the offset applied in PostgreSQL (ingest_offsets, the truth), the high watermark, the lag and
 * the member that owns it; then the group's state and members. */
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "bp_clock.h"
#include "cli.h"
#include "kafka_util.h"
#include "table.h"

#define PG_CONNECT_TIMEOUT_S "5"
#define WATCH_MAX_S 3600

static const char lag_usage[] =
    "usage: batchpipe [settings] lag [--json] [--watch SECONDS] [--timeout SECONDS]\n"
    "Show the ingest group's progress (BP_GROUP_ID) on the batch topic (BP_TOPIC), per partition:\n"
    "  COMMITTED       the group's offset committed in Kafka (the workers commit it up to ~1 s after\n"
    "                  PostgreSQL; what kafka-consumer-groups and other lag tools see)\n"
    "  APPLIED         ingest_offsets.next_offset in PostgreSQL (BP_PG_DSN): the truth, written in the\n"
    "                  same transaction as the data; \"-\" when PostgreSQL cannot be read (said on stderr)\n"
    "  HIGH-WATERMARK  the partition's end\n"
    "  LAG             HIGH-WATERMARK - APPLIED (- COMMITTED without PostgreSQL; everything retained\n"
    "                  when the group never consumed the partition)\n"
    "  MEMBER          the worker that owns the partition (client id@host)\n"
    "then the total lag, the group's state and its members with their partitions.\n"
    "  --json             one JSON object (with --watch: one per line)\n"
    "  --watch SECONDS    show it again every SECONDS until interrupted\n"
    "  --timeout SECONDS  give up when the brokers do not answer for that long (default 10)\n";

typedef struct lag_member {
    char *label; /* client_id@host, with #N when two members share it */
    char *consumer_id, *client_id, *host;
} lag_member_t;

typedef struct lag_part {
    int64_t low, high;
    int64_t committed; /* -1 when the group has no committed offset */
    int64_t applied;   /* -1 when PostgreSQL has no row (or could not be read) */
    int64_t lag;
    int member; /* index into members, -1 when unassigned */
} lag_part_t;

typedef struct lag_report {
    int n;
    lag_part_t *parts;
    lag_member_t *members;
    size_t nmembers;
    const char *state;
    char assignor[64];
    int64_t total;
    char pg_error[512];   /* empty when PostgreSQL was read */
    char group_note[256]; /* e.g. the group has never committed */
} lag_report_t;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void report_clear(lag_report_t *rep)
{
    for (size_t i = 0; i < rep->nmembers; i++) {
        free(rep->members[i].label);
        free(rep->members[i].consumer_id);
        free(rep->members[i].client_id);
        free(rep->members[i].host);
    }
    free(rep->members);
    free(rep->parts);
    memset(rep, 0, sizeof(*rep));
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

/* ---------------------------------------------------------------------------------------------- */
/* Kafka: the group's committed offsets and its description, asked at once */

static rd_kafka_AdminOptions_t *admin_options(rd_kafka_t *rk, rd_kafka_admin_op_t op, int timeout_ms)
{
    char why[256];
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, op);
    if (opts != NULL)
        (void)rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, why, sizeof(why));
    return opts;
}

static int read_offsets(const bp_config_t *cfg, const rd_kafka_event_t *ev, lag_report_t *rep, char *err,
                        size_t errlen)
{
    size_t n = 0;
    const rd_kafka_group_result_t **groups = rd_kafka_ListConsumerGroupOffsets_result_groups(
        rd_kafka_event_ListConsumerGroupOffsets_result((rd_kafka_event_t *)ev), &n);
    if (n != 1) {
        snprintf(err, errlen, "committed offsets of group %s: no answer", cfg->group_id);
        return -1;
    }
    const rd_kafka_error_t *gerr = rd_kafka_group_result_error(groups[0]);
    if (gerr != NULL) {
        snprintf(err, errlen, "committed offsets of group %s: %s", cfg->group_id,
                 rd_kafka_error_string(gerr));
        return -1;
    }
    const rd_kafka_topic_partition_list_t *list = rd_kafka_group_result_partitions(groups[0]);
    for (int i = 0; list != NULL && i < list->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &list->elems[i];
        if (tp->partition >= 0 && tp->partition < rep->n && strcmp(tp->topic, cfg->topic) == 0 &&
            tp->err == RD_KAFKA_RESP_ERR_NO_ERROR && tp->offset >= 0)
            rep->parts[tp->partition].committed = tp->offset;
    }
    return 0;
}

static int read_description(const bp_config_t *cfg, const rd_kafka_event_t *ev, lag_report_t *rep, char *err,
                            size_t errlen)
{
    size_t n = 0;
    const rd_kafka_ConsumerGroupDescription_t **groups = rd_kafka_DescribeConsumerGroups_result_groups(
        rd_kafka_event_DescribeConsumerGroups_result((rd_kafka_event_t *)ev), &n);
    if (n != 1) {
        snprintf(err, errlen, "description of group %s: no answer", cfg->group_id);
        return -1;
    }
    const rd_kafka_ConsumerGroupDescription_t *g = groups[0];
    const rd_kafka_error_t *gerr = rd_kafka_ConsumerGroupDescription_error(g);
    if (gerr != NULL) {
        if (rd_kafka_error_code(gerr) == RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) {
            rep->state = "unknown";
            return 0;
        }
        snprintf(err, errlen, "description of group %s: %s", cfg->group_id, rd_kafka_error_string(gerr));
        return -1;
    }
    rep->state = rd_kafka_consumer_group_state_name(rd_kafka_ConsumerGroupDescription_state(g));
    const char *assignor = rd_kafka_ConsumerGroupDescription_partition_assignor(g);
    snprintf(rep->assignor, sizeof(rep->assignor), "%s", assignor ? assignor : "");
    size_t count = rd_kafka_ConsumerGroupDescription_member_count(g);
    rep->members = calloc(count ? count : 1, sizeof(*rep->members));
    if (rep->members == NULL)
        goto oom;
    for (size_t i = 0; i < count; i++) {
        const rd_kafka_MemberDescription_t *m = rd_kafka_ConsumerGroupDescription_member(g, i);
        lag_member_t *lm = &rep->members[rep->nmembers++];
        const char *host = rd_kafka_MemberDescription_host(m);
        if (host != NULL && host[0] == '/')
            host++; /* the broker writes the address as "/10.0.0.1" */
        lm->consumer_id = dup_or_empty(rd_kafka_MemberDescription_consumer_id(m));
        lm->client_id = dup_or_empty(rd_kafka_MemberDescription_client_id(m));
        lm->host = dup_or_empty(host);
        if (lm->consumer_id == NULL || lm->client_id == NULL || lm->host == NULL)
            goto oom;
        const rd_kafka_MemberAssignment_t *a = rd_kafka_MemberDescription_assignment(m);
        const rd_kafka_topic_partition_list_t *list = a ? rd_kafka_MemberAssignment_partitions(a) : NULL;
        for (int k = 0; list != NULL && k < list->cnt; k++) {
            const rd_kafka_topic_partition_t *tp = &list->elems[k];
            if (tp->partition >= 0 && tp->partition < rep->n && strcmp(tp->topic, cfg->topic) == 0)
                rep->parts[tp->partition].member = (int)i;
        }
    }
    /* labels: client_id@host, numbered when two members would look the same */
    for (size_t i = 0; i < rep->nmembers; i++) {
        lag_member_t *lm = &rep->members[i];
        int same = 0;
        for (size_t k = 0; k < rep->nmembers; k++)
            same += strcmp(rep->members[k].client_id, lm->client_id) == 0 &&
                    strcmp(rep->members[k].host, lm->host) == 0;
        size_t len = strlen(lm->client_id) + strlen(lm->host) + 32;
        if ((lm->label = malloc(len)) == NULL)
            goto oom;
        if (same > 1)
            snprintf(lm->label, len, "%s@%s#%zu", lm->client_id, lm->host, i + 1);
        else
            snprintf(lm->label, len, "%s@%s", lm->client_id, lm->host);
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

static int ask_group(rd_kafka_t *rk, const bp_config_t *cfg, int timeout_ms, lag_report_t *rep, char *err,
                     size_t errlen)
{
    int rc = -1, got_offsets = 0, got_description = 0;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *o1 = admin_options(rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS, timeout_ms);
    rd_kafka_AdminOptions_t *o2 = admin_options(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS, timeout_ms);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(rep->n);
    for (int p = 0; p < rep->n; p++)
        rd_kafka_topic_partition_list_add(parts, cfg->topic, p);
    rd_kafka_ListConsumerGroupOffsets_t *req = rd_kafka_ListConsumerGroupOffsets_new(cfg->group_id, parts);
    const char *groups[1] = {cfg->group_id};
    rd_kafka_ListConsumerGroupOffsets(rk, &req, 1, o1, q);
    rd_kafka_DescribeConsumerGroups(rk, groups, 1, o2, q);
    long long deadline = bp_clock_ms() + timeout_ms + 1000; /* the requests time out by themselves first */
    while (!got_offsets || !got_description) {
        long long left = deadline - bp_clock_ms();
        rd_kafka_event_t *ev = left > 0 ? rd_kafka_queue_poll(q, (int)left) : NULL;
        if (ev == NULL) {
            snprintf(err, errlen, "no answer about group %s from the Kafka brokers at %s within %d s",
                     cfg->group_id, cfg->kafka_brokers, timeout_ms / 1000);
            goto cleanup;
        }
        int type = rd_kafka_event_type(ev), bad = 0;
        if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "group %s: %s", cfg->group_id, rd_kafka_event_error_string(ev));
            bad = 1;
        } else if (type == RD_KAFKA_EVENT_LISTCONSUMERGROUPOFFSETS_RESULT) {
            got_offsets = 1;
            bad = read_offsets(cfg, ev, rep, err, errlen) != 0;
        } else if (type == RD_KAFKA_EVENT_DESCRIBECONSUMERGROUPS_RESULT) {
            got_description = 1;
            bad = read_description(cfg, ev, rep, err, errlen) != 0;
        }
        rd_kafka_event_destroy(ev);
        if (bad)
            goto cleanup;
    }
    rc = 0;
cleanup:
    rd_kafka_ListConsumerGroupOffsets_destroy(req);
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_AdminOptions_destroy(o1);
    rd_kafka_AdminOptions_destroy(o2);
    /* a request still under way holds the queue: destroying it is safe, its answer is dropped */
    rd_kafka_queue_destroy(q);
    return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* PostgreSQL: what the workers applied */

/* Read ingest_offsets for the group and topic into rep. Returns 0, or -1 with rep->pg_error set. */
static int ask_postgresql(const bp_config_t *cfg, lag_report_t *rep)
{
    /* connect_timeout before the DSN: a value in the DSN wins, none means a bounded wait anyway */
    const char *keys[] = {"connect_timeout", "dbname", NULL};
    const char *vals[] = {PG_CONNECT_TIMEOUT_S, cfg->pg_dsn, NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
        const char *msg = conn ? PQerrorMessage(conn) : "out of memory";
        snprintf(rep->pg_error, sizeof(rep->pg_error), "%.*s", (int)strcspn(msg, "\n"), msg);
        PQfinish(conn);
        return -1;
    }
    const char *params[2] = {cfg->group_id, cfg->topic};
    PGresult *res = PQexecParams(
        conn, "SELECT partition, next_offset FROM ingest_offsets WHERE group_id = $1 AND topic = $2", 2, NULL,
        params, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *msg = PQresultErrorMessage(res);
        snprintf(rep->pg_error, sizeof(rep->pg_error), "%.*s", (int)strcspn(msg, "\n"), msg);
        rc = -1;
    } else {
        for (int i = 0; i < PQntuples(res); i++) {
            long long p = strtoll(PQgetvalue(res, i, 0), NULL, 10),
                      off = strtoll(PQgetvalue(res, i, 1), NULL, 10);
            if (p >= 0 && p < rep->n)
                rep->parts[p].applied = off;
        }
    }
    PQclear(res);
    PQfinish(conn);
    return rc;
}

/* ---------------------------------------------------------------------------------------------- */

static int gather(rd_kafka_t *rk, const bp_config_t *cfg, int timeout_ms, lag_report_t *rep, char *err,
                  size_t errlen)
{
    memset(rep, 0, sizeof(*rep));
    rep->n = cli_kafka_partitions(rk, cfg->kafka_brokers, cfg->topic, timeout_ms, err, errlen);
    if (rep->n < 0)
        return -1;
    int64_t *low = calloc((size_t)rep->n, sizeof(*low)), *high = calloc((size_t)rep->n, sizeof(*high));
    rep->parts = calloc((size_t)rep->n, sizeof(*rep->parts));
    if (low == NULL || high == NULL || rep->parts == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (bp_kafka_watermarks(rk, cfg->topic, rep->n, low, high, timeout_ms, err, errlen) != 0)
        goto fail;
    for (int p = 0; p < rep->n; p++)
        rep->parts[p] = (lag_part_t){low[p], high[p], -1, -1, 0, -1};
    if (ask_group(rk, cfg, timeout_ms, rep, err, errlen) != 0)
        goto fail;
    int have_pg = ask_postgresql(cfg, rep) == 0;
    int committed_any = 0;
    for (int p = 0; p < rep->n; p++) {
        lag_part_t *lp = &rep->parts[p];
        int64_t pos = have_pg && lp->applied >= 0 ? lp->applied : lp->committed;
        if (pos < lp->low)
            pos = lp->low; /* never consumed (or retention went past it): everything retained is behind */
        lp->lag = lp->high > pos ? lp->high - pos : 0;
        rep->total += lp->lag;
        committed_any |= lp->committed >= 0 || lp->applied >= 0;
    }
    if (!committed_any && rep->nmembers == 0)
        snprintf(rep->group_note, sizeof(rep->group_note),
                 "group %s has no members and no offsets for %s: no worker has consumed it yet",
                 cfg->group_id, cfg->topic);
    free(low);
    free(high);
    return 0;
fail:
    free(low);
    free(high);
    report_clear(rep);
    return -1;
}

static void num(char *buf, size_t len, int64_t v)
{
    if (v < 0)
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "%" PRId64, v);
}

static int print_text(const bp_config_t *cfg, const lag_report_t *rep)
{
    static const char *const headers[6] = {"PARTITION",      "COMMITTED", "APPLIED",
                                           "HIGH-WATERMARK", "LAG",       "MEMBER"};
    cli_table_t *t = cli_table_new(6, headers);
    if (t == NULL)
        return -1;
    for (size_t c = 0; c < 5; c++)
        cli_table_align_right(t, c);
    for (int p = 0; p < rep->n; p++) {
        const lag_part_t *lp = &rep->parts[p];
        char cp[16], cc[24], ca[24], ch[24], cl[24];
        snprintf(cp, sizeof(cp), "%d", p);
        num(cc, sizeof(cc), lp->committed);
        num(ca, sizeof(ca), rep->pg_error[0] ? -1 : lp->applied);
        num(ch, sizeof(ch), lp->high);
        num(cl, sizeof(cl), lp->lag);
        char *member = lp->member >= 0 ? cli_escape(rep->members[lp->member].label,
                                                    strlen(rep->members[lp->member].label), 0)
                                       : NULL;
        const char *cells[6] = {cp, cc, ca, ch, cl, member};
        int rc = cli_table_add(t, cells);
        free(member);
        if (rc != 0) {
            cli_table_free(t);
            return -1;
        }
    }
    printf("topic %s, group %s\n", cfg->topic, cfg->group_id);
    cli_table_print(t, stdout, 0);
    cli_table_free(t);
    printf("total lag %" PRId64 " message%s on %d partition%s%s\n", rep->total, rep->total == 1 ? "" : "s",
           rep->n, rep->n == 1 ? "" : "s", rep->pg_error[0] ? " (from Kafka's committed offsets)" : "");
    if (rep->group_note[0])
        printf("%s\n", rep->group_note);
    printf("\ngroup %s: %s, %zu member%s%s%s\n", cfg->group_id, rep->state ? rep->state : "unknown",
           rep->nmembers, rep->nmembers == 1 ? "" : "s", rep->assignor[0] ? ", assignor " : "",
           rep->assignor);
    if (rep->nmembers == 0)
        return 0;
    static const char *const mheaders[4] = {"MEMBER", "PARTITIONS", "CONSUMER-ID", "HOST"};
    t = cli_table_new(4, mheaders);
    if (t == NULL)
        return -1;
    for (size_t i = 0; i < rep->nmembers; i++) {
        const lag_member_t *m = &rep->members[i];
        char parts[1024] = "";
        size_t off = 0;
        for (int p = 0; p < rep->n && off < sizeof(parts) - 16; p++)
            if (rep->parts[p].member == (int)i)
                off += (size_t)snprintf(parts + off, sizeof(parts) - off, "%s%d", off ? "," : "", p);
        char *label = cli_escape(m->label, strlen(m->label), 0);
        char *cid = cli_escape(m->consumer_id, strlen(m->consumer_id), 0);
        char *host = cli_escape(m->host, strlen(m->host), 0);
        const char *cells[4] = {label, off ? parts : NULL, cid, host};
        int rc = label && cid && host ? cli_table_add(t, cells) : -1;
        free(label);
        free(cid);
        free(host);
        if (rc != 0) {
            cli_table_free(t);
            return -1;
        }
    }
    cli_table_print(t, stdout, 0);
    cli_table_free(t);
    return 0;
}

static int print_json(const bp_config_t *cfg, const lag_report_t *rep)
{
    json_t *o = json_object();
    json_object_set_new(o, "topic", json_string(cfg->topic));
    json_object_set_new(o, "group", json_string(cfg->group_id));
    json_object_set_new(o, "state", json_string(rep->state ? rep->state : "unknown"));
    json_t *parts = json_array();
    for (int p = 0; p < rep->n; p++) {
        const lag_part_t *lp = &rep->parts[p];
        json_t *jp = json_object();
        json_object_set_new(jp, "partition", json_integer(p));
        json_object_set_new(jp, "committed", lp->committed >= 0 ? json_integer(lp->committed) : json_null());
        json_object_set_new(jp, "applied",
                            !rep->pg_error[0] && lp->applied >= 0 ? json_integer(lp->applied) : json_null());
        json_object_set_new(jp, "low_watermark", json_integer(lp->low));
        json_object_set_new(jp, "high_watermark", json_integer(lp->high));
        json_object_set_new(jp, "lag", json_integer(lp->lag));
        json_t *member = json_null();
        if (lp->member >= 0)
            member = json_string(rep->members[lp->member].consumer_id);
        json_object_set_new(jp, "member", member ? member : json_null());
        json_array_append_new(parts, jp);
    }
    json_object_set_new(o, "partitions", parts);
    json_t *members = json_array();
    for (size_t i = 0; i < rep->nmembers; i++) {
        const lag_member_t *m = &rep->members[i];
        json_t *jm = json_object();
        cli_json_set_bytes(jm, "consumer_id", m->consumer_id, strlen(m->consumer_id));
        cli_json_set_bytes(jm, "client_id", m->client_id, strlen(m->client_id));
        cli_json_set_bytes(jm, "host", m->host, strlen(m->host));
        json_t *mp = json_array();
        for (int p = 0; p < rep->n; p++)
            if (rep->parts[p].member == (int)i)
                json_array_append_new(mp, json_integer(p));
        json_object_set_new(jm, "partitions", mp);
        json_array_append_new(members, jm);
    }
    json_object_set_new(o, "members", members);
    json_object_set_new(o, "total_lag", json_integer(rep->total));
    json_object_set_new(o, "postgresql_error", rep->pg_error[0] ? json_string(rep->pg_error) : json_null());
    char *line = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (line == NULL)
        return -1;
    puts(line);
    free(line);
    return 0;
}

static void sleep_interruptible(long long seconds)
{
    long long until = bp_clock_ms() + seconds * 1000;
    while (!interrupted && bp_clock_ms() < until) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

int cli_lag(const bp_config_t *cfg, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("%s", lag_usage);
        return 0;
    }
    int json = 0;
    long long timeout_s = CLI_TIMEOUT_S_DEFAULT, watch_s = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r = 0;
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if ((r = cli_option(argc, argv, &i, "--timeout", &v)) != 0) {
            if (r < 0 || cli_parse_ll(v, 1, CLI_TIMEOUT_S_MAX, &timeout_s) != 0) {
                fprintf(stderr, "batchpipe lag: --timeout takes whole seconds from 1 to %d\n",
                        CLI_TIMEOUT_S_MAX);
                return 2;
            }
        } else if ((r = cli_option(argc, argv, &i, "--watch", &v)) != 0) {
            if (r < 0 || cli_parse_ll(v, 1, WATCH_MAX_S, &watch_s) != 0) {
                fprintf(stderr, "batchpipe lag: --watch takes whole seconds from 1 to %d\n", WATCH_MAX_S);
                return 2;
            }
        } else {
            fprintf(stderr, "batchpipe lag: unknown argument \"%s\" (see batchpipe lag --help)\n", argv[i]);
            return 2;
        }
    }
    char err[1024];
    static const char *const extra[] = {"allow.auto.create.topics", "false", NULL};
    rd_kafka_t *rk = cli_kafka_new(cfg, RD_KAFKA_CONSUMER, extra, err, sizeof(err));
    if (rk == NULL) {
        fprintf(stderr, "batchpipe lag: %s\n", err);
        return 1;
    }
    if (watch_s > 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
    }
    int rc = 0, tty = cli_term_width(stdout) > 0;
    do {
        lag_report_t rep;
        if (gather(rk, cfg, (int)timeout_s * 1000, &rep, err, sizeof(err)) != 0) {
            fprintf(stderr, "batchpipe lag: %s\n", err);
            rc = 1;
            break;
        }
        if (rep.pg_error[0])
            fprintf(stderr,
                    "batchpipe lag: PostgreSQL unreachable (%s): APPLIED not shown, lag from Kafka's "
                    "committed offsets\n",
                    rep.pg_error);
        if (watch_s > 0 && tty && !json)
            printf("\033[H\033[2J"); /* clear the screen between rounds */
        if ((json ? print_json(cfg, &rep) : print_text(cfg, &rep)) != 0) {
            fprintf(stderr, "batchpipe lag: out of memory\n");
            rc = 1;
        }
        report_clear(&rep);
        fflush(stdout);
        if (watch_s > 0 && rc == 0)
            sleep_interruptible(watch_s);
    } while (watch_s > 0 && rc == 0 && !interrupted);
    rd_kafka_destroy(rk);
    return rc;
}
