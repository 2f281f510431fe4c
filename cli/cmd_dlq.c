/* cmd_dlq.c - batchpipe dlq list|show|replay: what the dead-letter topic holds, one letter in full,
 * and publishing chosen letters back to the batch topic. Reading is in dlq_read.c. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "bp_clock.h"
#include "bp_kafka.h"
#include "cli.h"
#include "dlq_read.h"
#include "kafka_util.h"
#include "table.h"

#define LIST_LIMIT_DEFAULT 1000
#define LIST_LIMIT_MAX 1000000
#define SHOW_MAX_BYTES_DEFAULT 65536
#define REPLAY_REFS_MAX 10000
#define REPLAY_MESSAGE_MAX_BYTES "67108864" /* what the worker's dead-letter producer allows */

static const char dlq_usage[] =
    "usage: batchpipe [settings] dlq list [--limit N] [--unique] [--json] [--timeout SECONDS]\n"
    "       batchpipe [settings] dlq show P:OFFSET... [--max-bytes N] [--json] [--timeout SECONDS]\n"
    "       batchpipe [settings] dlq replay (P:OFFSET... | --all) [--dry-run] [--timeout SECONDS]\n"
    "Read the dead-letter topic (BP_DLQ_TOPIC) without joining a consumer group or committing anything.\n"
    "A letter is named P:OFFSET, its partition and offset in the dead-letter topic.\n"
    "  list    one line per letter: P:OFFSET, its source topic/partition@offset, key (batch_id),\n"
    "          request-id and reason, from the beginning up to the end seen at the start\n"
    "  show    every header of the letters, the full reason and the value (JSON indented)\n"
    "  replay  publish the letters' values again, with their keys, to the batch topic (BP_TOPIC)\n"
    "See batchpipe dlq COMMAND --help.\n";

static const char list_usage[] =
    "usage: batchpipe [settings] dlq list [--limit N] [--unique] [--json] [--timeout SECONDS]\n"
    "List the letters of the dead-letter topic (BP_DLQ_TOPIC), from its beginning up to the end it had\n"
    "when the command started, in partition and offset order: P:OFFSET of the letter, the source\n"
    "topic/partition@offset of the message that was dead-lettered, its key (the batch_id), request-id and\n"
    "reason (cut to the terminal's width). Delivery to the dead-letter topic is at-least-once: a letter\n"
    "whose source an earlier letter (in this order) already had is marked with DUP-OF, that letter's\n"
    "P:OFFSET.\n"
    "  --limit N          show at most N letters, the first in partition and offset order (default 1000,\n"
    "                     0 for all)\n"
    "  --unique           leave out the duplicates instead of marking them\n"
    "  --json             one JSON object per line (NDJSON): partition, offset, timestamp_ms, key,\n"
    "                     request_id, reason, source {topic, partition, offset} or null, duplicate_of\n"
    "                     (\"P:OFFSET\" or null), value_bytes; a key that is not UTF-8 is key_base64\n"
    "  --timeout SECONDS  give up when the brokers do not answer for that long (default 10)\n";

static const char show_usage[] =
    "usage: batchpipe [settings] dlq show P:OFFSET... [--max-bytes N] [--json] [--timeout SECONDS]\n"
    "Show the letters at P:OFFSET (partition:offset in BP_DLQ_TOPIC, as dlq list prints them): time, key,\n"
    "every header (dlq-reason in full, the source, request-id) and the value, indented when it is JSON\n"
    "(exactly as stored otherwise, control bytes and invalid UTF-8 as \\xNN).\n"
    "  --max-bytes N      show at most N bytes of a value (default 65536, 0 for all)\n"
    "  --json             one JSON object per line: partition, offset, timestamp_ms, key, headers\n"
    "                     [{name, value}], value_bytes and value, the whole value as a string (value_base64\n"
    "                     when it is not UTF-8)\n"
    "  --timeout SECONDS  give up when the brokers do not answer for that long (default 10)\n";

static const char replay_usage[] =
    "usage: batchpipe [settings] dlq replay (P:OFFSET... | --all) [--dry-run] [--timeout SECONDS]\n"
    "Publish the letters again to the batch topic (BP_TOPIC): the same key and value, the letter's\n"
    "timestamp, its bp-origin header (the replay is applied as of the original's place in the log, so a\n"
    "newer version of an object, or a delete, written since, still wins), its request-id and traceparent,\n"
    "and a header dlq-replayed-from: DLQTOPIC/P@OFFSET. The producer is idempotent (acks=all) and partitions by\n"
    "murmur2 like the API; every letter's delivery report is awaited and printed. Every letter given is\n"
    "read first: if one is missing, nothing is published. The letters stay in the dead-letter topic.\n"
    "Fix the cause first: a message that is still invalid is dead-lettered again (a new letter).\n"
    "  --all              every letter up to the end of the topic at the start, one per source: a\n"
    "                     duplicate letter of the same source (at-least-once delivery) is skipped\n"
    "  --dry-run          say what would be published, publish nothing\n"
    "  --timeout SECONDS  bound for each wait on the brokers and for each delivery (default 10)\n"
    "Exit status: 0 when every letter was published, 1 when one was not (or one is missing).\n";

/* ---------------------------------------------------------------------------------------------- */
/* common option parsing */

typedef struct dlq_opts {
    long long limit, max_bytes, timeout_s;
    int json, unique, all, dry_run;
    int32_t *ref_partition; /* the P:OFFSET arguments */
    int64_t *ref_offset;
    int nrefs;
} dlq_opts_t;

enum {
    OPT_LIMIT = 1,
    OPT_UNIQUE = 2,
    OPT_JSON = 4,
    OPT_MAX_BYTES = 8,
    OPT_ALL = 16,
    OPT_DRY_RUN = 32,
    OPT_REFS = 64
};

static void free_opts(dlq_opts_t *o);
static int parse_args(const char *cmd, int argc, char **argv, int mask, dlq_opts_t *o);

#define OPTS_GO_ON (-1)

/* The opening of every subcommand: with -h or --help, print usage; otherwise parse argv (argv[0] is
 * the subcommand) allowing the options in mask. Returns OPTS_GO_ON with *o filled (free with
 * free_opts), or the subcommand's exit status with nothing to free: 0 after the usage, 2 after
 * printing a usage error. */
static int parse_opts(const char *cmd, const char *usage, int argc, char **argv, int mask, dlq_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    if (cli_wants_help(argc, argv)) {
        printf("%s", usage);
        return 0;
    }
    int rc = parse_args(cmd, argc, argv, mask, o);
    if (rc != OPTS_GO_ON)
        free_opts(o);
    return rc;
}

/* Returns OPTS_GO_ON, or 2 after printing a usage error. */
static int parse_args(const char *cmd, int argc, char **argv, int mask, dlq_opts_t *o)
{
    o->limit = LIST_LIMIT_DEFAULT;
    o->max_bytes = SHOW_MAX_BYTES_DEFAULT;
    o->timeout_s = CLI_TIMEOUT_S_DEFAULT;
    o->ref_partition = calloc((size_t)argc, sizeof(*o->ref_partition));
    o->ref_offset = calloc((size_t)argc, sizeof(*o->ref_offset));
    if (o->ref_partition == NULL || o->ref_offset == NULL) {
        fprintf(stderr, "batchpipe dlq %s: out of memory\n", cmd);
        return 2;
    }
    int dashdash = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int r = 0;
        if (dashdash || a[0] != '-') {
            if (!(mask & OPT_REFS)) {
                fprintf(stderr,
                        "batchpipe dlq %s: unexpected argument \"%s\" (see batchpipe dlq %s --help)\n", cmd,
                        a, cmd);
                return 2;
            }
            if (cli_parse_letter_ref(a, &o->ref_partition[o->nrefs], &o->ref_offset[o->nrefs]) != 0) {
                fprintf(stderr, "batchpipe dlq %s: \"%s\" is not a letter's PARTITION:OFFSET such as 0:42\n",
                        cmd, a);
                return 2;
            }
            o->nrefs++;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            dashdash = 1;
        } else if ((mask & OPT_JSON) && strcmp(a, "--json") == 0) {
            o->json = 1;
        } else if ((mask & OPT_UNIQUE) && strcmp(a, "--unique") == 0) {
            o->unique = 1;
        } else if ((mask & OPT_ALL) && strcmp(a, "--all") == 0) {
            o->all = 1;
        } else if ((mask & OPT_DRY_RUN) && strcmp(a, "--dry-run") == 0) {
            o->dry_run = 1;
        } else if ((r = cli_option(argc, argv, &i, "--timeout", &v)) != 0) {
            if (r < 0 || cli_parse_ll(v, 1, CLI_TIMEOUT_S_MAX, &o->timeout_s) != 0) {
                fprintf(stderr, "batchpipe dlq %s: --timeout takes whole seconds from 1 to %d\n", cmd,
                        CLI_TIMEOUT_S_MAX);
                return 2;
            }
        } else if ((mask & OPT_LIMIT) &&
                   ((r = cli_option(argc, argv, &i, "--limit", &v)) != 0)) {
            if (r < 0 || cli_parse_ll(v, 0, LIST_LIMIT_MAX, &o->limit) != 0) {
                fprintf(stderr, "batchpipe dlq %s: --limit takes a number from 0 (all) to %d\n", cmd,
                        LIST_LIMIT_MAX);
                return 2;
            }
        } else if ((mask & OPT_MAX_BYTES) &&
                   ((r = cli_option(argc, argv, &i, "--max-bytes", &v)) != 0)) {
            if (r < 0 || cli_parse_ll(v, 0, INT64_MAX, &o->max_bytes) != 0) {
                fprintf(stderr, "batchpipe dlq %s: --max-bytes takes a number of bytes (0 for all)\n", cmd);
                return 2;
            }
        } else {
            fprintf(stderr, "batchpipe dlq %s: unknown option \"%s\" (see batchpipe dlq %s --help)\n", cmd, a,
                    cmd);
            return 2;
        }
    }
    return OPTS_GO_ON;
}

static void free_opts(dlq_opts_t *o)
{
    free(o->ref_partition);
    free(o->ref_offset);
}

static void format_time(int64_t ms, char *buf, size_t buflen)
{
    if (ms < 0) {
        snprintf(buf, buflen, "-");
        return;
    }
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char day[32];
    strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, buflen, "%s.%03dZ", day, (int)(ms % 1000));
}

static json_t *source_json(const cli_dlqr_letter_t *l)
{
    if (l->src_topic == NULL || l->src_partition < 0 || l->src_offset < 0)
        return json_null();
    json_t *src = json_object();
    cli_json_set_bytes(src, "topic", l->src_topic, strlen(l->src_topic));
    json_object_set_new(src, "partition", json_integer(l->src_partition));
    json_object_set_new(src, "offset", json_integer(l->src_offset));
    return src;
}

/* The reader for o's timeout, or NULL after saying why on stderr. */
static cli_dlqr_t *open_reader(const bp_config_t *cfg, const char *cmd, const dlq_opts_t *o)
{
    char err[1024];
    cli_dlqr_t *r = cli_dlqr_new(cfg, (int)o->timeout_s * 1000, err, sizeof(err));
    if (r == NULL)
        fprintf(stderr, "batchpipe dlq %s: %s\n", cmd, err);
    return r;
}

static void print_json_line(json_t *obj)
{
    char *line = json_dumps(obj, JSON_COMPACT);
    if (line != NULL) {
        puts(line);
        free(line);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* list */

typedef struct list_row {
    cli_dlqr_letter_t letter; /* owns its strings */
    char *key;                /* raw bytes, NULL when the letter has no key */
    size_t key_len;
    size_t value_len;
} list_row_t;

typedef struct list_ctx {
    list_row_t *rows;
    size_t n, cap;
    int oom;
} list_ctx_t;

static int on_list_letter(void *opaque, const cli_dlqr_letter_t *letter, const rd_kafka_message_t *rkm)
{
    list_ctx_t *c = opaque;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        list_row_t *rows = realloc(c->rows, cap * sizeof(*rows));
        if (rows == NULL)
            return c->oom = 1;
        c->rows = rows;
        c->cap = cap;
    }
    list_row_t *row = &c->rows[c->n];
    memset(row, 0, sizeof(*row));
    row->letter = *letter;
    row->value_len = rkm->len;
    /* the scan frees the letter's strings after this call: take copies */
    row->letter.reason = letter->reason ? strdup(letter->reason) : NULL;
    row->letter.request_id = letter->request_id ? strdup(letter->request_id) : NULL;
    row->letter.src_topic = letter->src_topic ? strdup(letter->src_topic) : NULL;
    if (rkm->key != NULL) {
        row->key = malloc(rkm->key_len + 1);
        if (row->key != NULL) {
            memcpy(row->key, rkm->key, rkm->key_len);
            row->key_len = rkm->key_len;
        }
    }
    c->n++;
    if ((letter->reason && !row->letter.reason) || (letter->request_id && !row->letter.request_id) ||
        (letter->src_topic && !row->letter.src_topic) || (rkm->key && !row->key))
        return c->oom = 1;
    return 0;
}

static void row_clear(list_row_t *row)
{
    cli_dlqr_letter_clear(&row->letter);
    free(row->key);
}

static int row_cmp(const void *a, const void *b)
{
    const cli_dlqr_letter_t *x = &((const list_row_t *)a)->letter, *y = &((const list_row_t *)b)->letter;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int source_cmp(const cli_dlqr_letter_t *x, const cli_dlqr_letter_t *y)
{
    int c = strcmp(x->src_topic, y->src_topic);
    if (c != 0)
        return c;
    if (x->src_partition != y->src_partition)
        return x->src_partition < y->src_partition ? -1 : 1;
    return x->src_offset < y->src_offset ? -1 : x->src_offset > y->src_offset;
}

static int has_source(const cli_dlqr_letter_t *l)
{
    return l->src_topic != NULL && l->src_partition >= 0 && l->src_offset >= 0;
}

static int by_source_cmp(const void *a, const void *b)
{
    const cli_dlqr_letter_t *x = &(*(list_row_t *const *)a)->letter, *y = &(*(list_row_t *const *)b)->letter;
    int c = source_cmp(x, y);
    return c != 0 ? c : row_cmp(*(list_row_t *const *)a, *(list_row_t *const *)b);
}

/* Mark duplicates again in the order shown (the scan marks them in the order read, which across
 * partitions is arbitrary): the first letter of a source in partition and offset order is the one the
 * others point at. Returns 0, or -1 out of memory. */
static int mark_duplicates(list_row_t *rows, size_t n)
{
    list_row_t **idx = malloc((n ? n : 1) * sizeof(*idx));
    if (idx == NULL)
        return -1;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        rows[i].letter.dup_partition = -1;
        rows[i].letter.dup_offset = -1;
        if (has_source(&rows[i].letter))
            idx[m++] = &rows[i];
    }
    qsort(idx, m, sizeof(*idx), by_source_cmp);
    for (size_t i = 1, first = 0; i < m; i++) {
        if (source_cmp(&idx[i]->letter, &idx[first]->letter) != 0) {
            first = i;
            continue;
        }
        idx[i]->letter.dup_partition = idx[first]->letter.partition;
        idx[i]->letter.dup_offset = idx[first]->letter.offset;
    }
    free(idx);
    return 0;
}

static void print_list_json(const list_row_t *row)
{
    const cli_dlqr_letter_t *l = &row->letter;
    json_t *o = json_object();
    json_object_set_new(o, "partition", json_integer(l->partition));
    json_object_set_new(o, "offset", json_integer(l->offset));
    json_object_set_new(o, "timestamp_ms", l->timestamp >= 0 ? json_integer(l->timestamp) : json_null());
    cli_json_set_bytes(o, "key", row->key, row->key_len);
    cli_json_set_bytes(o, "request_id", l->request_id, l->request_id ? strlen(l->request_id) : 0);
    cli_json_set_bytes(o, "reason", l->reason, l->reason ? strlen(l->reason) : 0);
    json_object_set_new(o, "source", source_json(l));
    if (l->dup_partition >= 0) {
        char dup[48];
        snprintf(dup, sizeof(dup), "%d:%" PRId64, (int)l->dup_partition, l->dup_offset);
        json_object_set_new(o, "duplicate_of", json_string(dup));
    } else {
        json_object_set_new(o, "duplicate_of", json_null());
    }
    json_object_set_new(o, "value_bytes", json_integer((json_int_t)row->value_len));
    print_json_line(o);
    json_decref(o);
}

static int add_list_row(cli_table_t *t, const list_row_t *row)
{
    const cli_dlqr_letter_t *l = &row->letter;
    char ref[48], dup[48], source[512];
    snprintf(ref, sizeof(ref), "%d:%" PRId64, (int)l->partition, l->offset);
    if (l->dup_partition >= 0)
        snprintf(dup, sizeof(dup), "%d:%" PRId64, (int)l->dup_partition, l->dup_offset);
    cli_dlqr_letter_source(l, source, sizeof(source));
    char *esource = cli_escape(source, strlen(source), 0);
    char *key = row->key ? cli_escape(row->key, row->key_len, 0) : NULL;
    char *rid = l->request_id ? cli_escape(l->request_id, strlen(l->request_id), 0) : NULL;
    char *reason = l->reason ? cli_escape(l->reason, strlen(l->reason), 0) : NULL;
    const char *cells[6] = {ref, esource, key, rid, l->dup_partition >= 0 ? dup : NULL, reason};
    int rc = esource == NULL ? -1 : cli_table_add(t, cells);
    free(esource);
    free(key);
    free(rid);
    free(reason);
    return rc;
}

static int dlq_list(const bp_config_t *cfg, int argc, char **argv)
{
    dlq_opts_t o;
    int rc = parse_opts("list", list_usage, argc, argv, OPT_LIMIT | OPT_UNIQUE | OPT_JSON, &o);
    if (rc != OPTS_GO_ON)
        return rc;
    free_opts(&o); /* no letter arguments: only the options are used */
    cli_dlqr_t *r = open_reader(cfg, "list", &o);
    if (r == NULL)
        return 1;
    char err[1024];
    list_ctx_t ctx = {0};
    size_t total = 0;
    rc = cli_dlqr_scan(r, o.limit, 0, on_list_letter, &ctx, &total, err, sizeof(err));
    int64_t estimate = cli_dlqr_letter_estimate(r);
    cli_dlqr_free(r);
    if (rc != 0 || ctx.oom) {
        fprintf(stderr, "batchpipe dlq list: %s\n", ctx.oom ? "out of memory" : err);
        rc = 1;
        goto cleanup;
    }
    qsort(ctx.rows, ctx.n, sizeof(*ctx.rows), row_cmp);
    if (mark_duplicates(ctx.rows, ctx.n) != 0) {
        fprintf(stderr, "batchpipe dlq list: out of memory\n");
        rc = 1;
        goto cleanup;
    }
    if (o.unique) { /* leave the duplicates out */
        size_t kept = 0;
        for (size_t i = 0; i < ctx.n; i++) {
            if (ctx.rows[i].letter.dup_partition >= 0)
                row_clear(&ctx.rows[i]);
            else
                ctx.rows[kept++] = ctx.rows[i];
        }
        ctx.n = kept;
    }
    size_t shown = o.limit > 0 && ctx.n > (size_t)o.limit ? (size_t)o.limit : ctx.n;
    if (o.json) {
        for (size_t i = 0; i < shown; i++)
            print_list_json(&ctx.rows[i]);
    } else if (shown == 0) {
        printf("no letters in %s\n", cfg->dlq_topic);
    } else {
        static const char *const headers[6] = {"LETTER", "SOURCE", "KEY", "REQUEST-ID", "DUP-OF", "REASON"};
        cli_table_t *t = cli_table_new(6, headers);
        size_t dups = 0;
        for (size_t i = 0; t != NULL && i < shown; i++) {
            dups += ctx.rows[i].letter.dup_partition >= 0;
            if (add_list_row(t, &ctx.rows[i]) != 0) {
                cli_table_free(t);
                t = NULL;
            }
        }
        if (t == NULL) {
            fprintf(stderr, "batchpipe dlq list: out of memory\n");
            rc = 1;
            goto cleanup;
        }
        cli_table_print(t, stdout, cli_term_width(stdout));
        cli_table_free(t);
        printf("%zu letter%s", shown, shown == 1 ? "" : "s");
        if (dups > 0)
            printf(" (%zu duplicate%s of an earlier letter's source)", dups, dups == 1 ? "" : "s");
        printf("\n");
        if (shown < ctx.n || (o.limit > 0 && (int64_t)total < estimate))
            printf("more letters follow: raise --limit (0 for all)\n");
    }
cleanup:
    for (size_t i = 0; i < ctx.n; i++)
        row_clear(&ctx.rows[i]);
    free(ctx.rows);
    return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* show */

/* 1 when the value is one JSON text our indenting may show: jansson's parser checks it (UTF-8, no
 * member twice, which the raw text would show and a parse would hide). */
static int is_json(const void *buf, size_t len)
{
    json_error_t jerr;
    json_t *doc = json_loadb(buf, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL)
        return 0;
    json_decref(doc);
    return 1;
}

static void print_letter_text(const bp_config_t *cfg, const rd_kafka_message_t *rkm, long long max_bytes)
{
    char when[48];
    rd_kafka_timestamp_type_t tstype;
    format_time(rd_kafka_message_timestamp(rkm, &tstype), when, sizeof(when));
    printf("letter     %s %d:%" PRId64 "\n", cfg->dlq_topic, (int)rkm->partition, rkm->offset);
    printf("time       %s%s\n", when,
           tstype == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME ? " (log append time)" : "");
    char *key = rkm->key ? cli_escape(rkm->key, rkm->key_len, 0) : NULL;
    printf("key        %s\n", rkm->key == NULL ? "(none)" : key ? key : "?");
    free(key);
    printf("headers\n");
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(rkm, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *name;
        const void *v;
        size_t len;
        for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR;
             i++) {
            char *ename = cli_escape(name, strlen(name), 0);
            char *ev = v ? cli_escape(v, len, 0) : NULL;
            printf("  %s: %s\n", ename ? ename : "?", v == NULL ? "(null)" : ev ? ev : "?");
            free(ename);
            free(ev);
        }
    } else {
        printf("  (none)\n");
    }
    size_t len = rkm->len, shown = max_bytes > 0 && (size_t)max_bytes < len ? (size_t)max_bytes : len;
    int json = len > 0 && is_json(rkm->payload, len);
    printf("value      %zu bytes%s\n", len, json ? ", JSON" : "");
    if (json) {
        cli_print_json_pretty(stdout, rkm->payload, shown); /* a cut one too: it only re-indents tokens */
    } else if (len > 0) {
        char *text = cli_escape(rkm->payload, shown, 1);
        if (text != NULL)
            printf("%s\n", text);
        free(text);
    }
    if (shown < len)
        printf("(value cut: the first %zu of %zu bytes are shown; --max-bytes 0 shows all)\n", shown, len);
}

static void print_letter_json(const rd_kafka_message_t *rkm)
{
    json_t *o = json_object();
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(rkm, &tstype);
    json_object_set_new(o, "partition", json_integer(rkm->partition));
    json_object_set_new(o, "offset", json_integer(rkm->offset));
    json_object_set_new(o, "timestamp_ms", ts >= 0 ? json_integer(ts) : json_null());
    cli_json_set_bytes(o, "key", rkm->key, rkm->key_len);
    json_t *headers = json_array();
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(rkm, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *name;
        const void *v;
        size_t len;
        for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR;
             i++) {
            json_t *one = json_object();
            cli_json_set_bytes(one, "name", name, strlen(name));
            cli_json_set_bytes(one, "value", v, len);
            json_array_append_new(headers, one);
        }
    }
    json_object_set_new(o, "headers", headers);
    json_object_set_new(o, "value_bytes", json_integer((json_int_t)rkm->len));
    if (cli_json_set_bytes(o, "value", rkm->payload, rkm->len) != 0)
        json_object_set_new(o, "value", json_null());
    print_json_line(o);
    json_decref(o);
}

static int dlq_show(const bp_config_t *cfg, int argc, char **argv)
{
    dlq_opts_t o;
    int rc = parse_opts("show", show_usage, argc, argv, OPT_REFS | OPT_JSON | OPT_MAX_BYTES, &o);
    if (rc != OPTS_GO_ON)
        return rc;
    cli_dlqr_t *r = NULL;
    rc = 0;
    if (o.nrefs == 0) {
        fprintf(stderr, "batchpipe dlq show: which letters? Give their P:OFFSET (see batchpipe dlq list)\n");
        rc = 2;
    } else if ((r = open_reader(cfg, "show", &o)) == NULL) {
        rc = 1;
    }
    if (rc != 0) {
        free_opts(&o);
        return rc;
    }
    char err[1024];
    for (int i = 0; i < o.nrefs; i++) {
        rd_kafka_message_t *rkm = cli_dlqr_fetch(r, o.ref_partition[i], o.ref_offset[i], err, sizeof(err));
        if (rkm == NULL) {
            fflush(stdout);
            fprintf(stderr, "batchpipe dlq show: %s\n", err);
            rc = 1;
            continue;
        }
        if (o.json) {
            print_letter_json(rkm);
        } else {
            if (i > 0)
                putchar('\n');
            print_letter_text(cfg, rkm, o.max_bytes);
        }
        rd_kafka_message_destroy(rkm);
    }
    cli_dlqr_free(r);
    free_opts(&o);
    return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* replay */

typedef struct replay_item {
    int32_t partition; /* the letter */
    int64_t offset;
    char *what; /* "source ..., key ..." for the report */
    int state;  /* 0 waiting for its report, 1 delivered, 2 failed */
    int32_t to_partition;
    int64_t to_offset;
    char why[160];
} replay_item_t;

typedef struct replay_ctx {
    const bp_config_t *cfg;
    rd_kafka_t *rk; /* NULL on --dry-run */
    replay_item_t *items;
    size_t n, cap;
    long long timeout_ms;
    int failed_early; /* out of memory, or a produce call that could not even enqueue */
} replay_ctx_t;

static void replay_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *rkm, void *opaque)
{
    replay_ctx_t *c = opaque;
    size_t i = (size_t)(uintptr_t)rkm->_private;
    if (i >= c->n)
        return;
    replay_item_t *it = &c->items[i];
    if (rkm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        it->state = 1;
        it->to_partition = rkm->partition;
        it->to_offset = rkm->offset;
    } else {
        it->state = 2;
        snprintf(it->why, sizeof(it->why), "%s", rd_kafka_err2str(rkm->err));
    }
}

static char *describe(const cli_dlqr_letter_t *l, const rd_kafka_message_t *rkm)
{
    char source[512];
    cli_dlqr_letter_source(l, source, sizeof(source));
    char *key = rkm->key ? cli_escape(rkm->key, rkm->key_len < 200 ? rkm->key_len : 200, 0) : NULL;
    size_t len = strlen(source) + (key ? strlen(key) : 6) + 32;
    char *s = malloc(len);
    if (s != NULL)
        snprintf(s, len, "source %s, key %s", source, rkm->key == NULL ? "(none)" : key ? key : "?");
    free(key);
    return s;
}

/* Add to h the last value of the letter's header name, when the letter (its headers lh, may be NULL)
 * has one. */
static void copy_header(rd_kafka_headers_t *h, const rd_kafka_headers_t *lh, const char *name)
{
    const void *v = NULL;
    size_t len = 0;
    if (lh != NULL && rd_kafka_header_get_last(lh, name, &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR && v != NULL)
        rd_kafka_header_add(h, name, -1, v, (ssize_t)len);
}

/* Record the letter and, unless dry-run, enqueue its replay. Returns 0, or -1 (c->failed_early). */
static int replay_one(replay_ctx_t *c, const cli_dlqr_letter_t *l, const rd_kafka_message_t *rkm)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        replay_item_t *items = realloc(c->items, cap * sizeof(*items));
        if (items == NULL)
            goto oom;
        c->items = items;
        c->cap = cap;
    }
    replay_item_t *it = &c->items[c->n];
    memset(it, 0, sizeof(*it));
    it->partition = rkm->partition;
    it->offset = rkm->offset;
    if ((it->what = describe(l, rkm)) == NULL)
        goto oom;
    size_t index = c->n++;
    if (c->rk == NULL)
        return 0;
    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    char from[600];
    snprintf(from, sizeof(from), "%s/%d@%" PRId64, c->cfg->dlq_topic, (int)rkm->partition, rkm->offset);
    if (l->request_id != NULL)
        rd_kafka_header_add(h, BP_HDR_REQUEST_ID, -1, l->request_id, (ssize_t)strlen(l->request_id));
    rd_kafka_header_add(h, CLI_HDR_REPLAYED_FROM, -1, from, (ssize_t)strlen(from));
    rd_kafka_headers_t *lh = NULL;
    if (rd_kafka_message_headers(rkm, &lh) != RD_KAFKA_RESP_ERR_NO_ERROR)
        lh = NULL;
    /* the version the worker computed for the original: the replay is applied as of its place in the
     * log, so it never overrides newer writes or deletes */
    copy_header(h, lh, BP_HDR_ORIGIN);
    /* the replay goes on with the original POST's trace (the worker validates it again) */
    copy_header(h, lh, BP_HDR_TRACEPARENT);
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(rkm, &tstype);
    long long deadline = bp_clock_ms() + c->timeout_ms;
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            c->rk, RD_KAFKA_V_TOPIC(c->cfg->topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(rkm->key, rkm->key_len), RD_KAFKA_V_VALUE(rkm->payload, rkm->len),
            RD_KAFKA_V_TIMESTAMP(ts >= 0 ? ts : 0), RD_KAFKA_V_HEADERS(h),
            RD_KAFKA_V_OPAQUE((void *)(uintptr_t)index), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0; /* the headers now belong to the message */
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL && bp_clock_ms() < deadline) {
            rd_kafka_poll(c->rk, 100); /* back-pressure: let deliveries make room */
            continue;
        }
        rd_kafka_headers_destroy(h);
        it = &c->items[index];
        it->state = 2;
        snprintf(it->why, sizeof(it->why), "%s", rd_kafka_err2str(e));
        return 0;
    }
oom:
    fprintf(stderr, "batchpipe dlq replay: out of memory\n");
    c->failed_early = 1;
    return -1;
}

static int on_replay_letter(void *opaque, const cli_dlqr_letter_t *letter, const rd_kafka_message_t *rkm)
{
    replay_ctx_t *c = opaque;
    if (replay_one(c, letter, rkm) != 0)
        return 1;
    if (c->rk != NULL)
        rd_kafka_poll(c->rk, 0);
    return 0;
}

static rd_kafka_t *replay_producer(replay_ctx_t *c, char *err, size_t errlen)
{
    char timeout[24];
    snprintf(timeout, sizeof(timeout), "%lld", c->timeout_ms);
    const char *const extra[] = {"enable.idempotence",
                                 "true",
                                 "acks",
                                 "all",
                                 "partitioner",
                                 "murmur2_random",
                                 "message.timeout.ms",
                                 timeout,
                                 "message.max.bytes",
                                 REPLAY_MESSAGE_MAX_BYTES,
                                 "linger.ms",
                                 "5",
                                 NULL};
    rd_kafka_conf_t *conf = cli_kafka_conf(c->cfg, extra, err, errlen);
    if (conf == NULL)
        return NULL;
    rd_kafka_conf_set_dr_msg_cb(conf, replay_dr_cb);
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (rk == NULL)
        rd_kafka_conf_destroy(conf);
    return rk;
}

/* Wait for every delivery report (bounded), print one line per letter and a summary. Returns the
 * number that failed. */
static size_t replay_report(replay_ctx_t *c, int dry_run, size_t skipped)
{
    if (c->rk != NULL) {
        long long deadline = bp_clock_ms() + c->timeout_ms + 5000; /* message.timeout.ms plus a margin */
        while (rd_kafka_outq_len(c->rk) > 0 && bp_clock_ms() < deadline)
            rd_kafka_poll(c->rk, 100);
    }
    size_t ok = 0, failed = 0;
    for (size_t i = 0; i < c->n; i++) {
        replay_item_t *it = &c->items[i];
        if (dry_run) {
            printf("would replay %d:%" PRId64 " (%s) to %s\n", (int)it->partition, it->offset, it->what,
                   c->cfg->topic);
        } else if (it->state == 1) {
            printf("replayed %d:%" PRId64 " (%s) -> %s %d@%" PRId64 "\n", (int)it->partition, it->offset,
                   it->what, c->cfg->topic, (int)it->to_partition, it->to_offset);
            ok++;
        } else {
            printf("FAILED %d:%" PRId64 " (%s): %s\n", (int)it->partition, it->offset, it->what,
                   it->state == 2 ? it->why : "no delivery report in time");
            failed++;
        }
    }
    if (dry_run)
        printf("%zu letter%s would be replayed to %s", c->n, c->n == 1 ? "" : "s", c->cfg->topic);
    else
        printf("%zu replayed to %s, %zu failed", ok, c->cfg->topic, failed);
    if (skipped > 0)
        printf(" (%zu duplicate letter%s skipped)", skipped, skipped == 1 ? "" : "s");
    printf("\n");
    return failed;
}

static int dlq_replay(const bp_config_t *cfg, int argc, char **argv)
{
    dlq_opts_t o;
    int rc = parse_opts("replay", replay_usage, argc, argv, OPT_REFS | OPT_ALL | OPT_DRY_RUN, &o);
    if (rc != OPTS_GO_ON)
        return rc;
    rc = 0;
    if ((o.nrefs > 0) == (o.all != 0)) {
        fprintf(stderr, "batchpipe dlq replay: give either letters (P:OFFSET...) or --all\n");
        rc = 2;
    }
    if (rc == 0 && o.nrefs > REPLAY_REFS_MAX) {
        fprintf(stderr, "batchpipe dlq replay: at most %d letters at once (or --all)\n", REPLAY_REFS_MAX);
        rc = 2;
    }
    if (rc != 0) {
        free_opts(&o);
        return rc;
    }
    char err[1024];
    replay_ctx_t c = {.cfg = cfg, .timeout_ms = o.timeout_s * 1000};
    rd_kafka_message_t **letters = calloc((size_t)o.nrefs + 1, sizeof(*letters));
    cli_dlqr_t *r = open_reader(cfg, "replay", &o);
    rc = 1;
    if (r == NULL)
        goto cleanup;
    if (letters == NULL) {
        fprintf(stderr, "batchpipe dlq replay: out of memory\n");
        goto cleanup;
    }
    /* read every letter asked for before publishing any */
    for (int i = 0; i < o.nrefs; i++) {
        if ((letters[i] = cli_dlqr_fetch(r, o.ref_partition[i], o.ref_offset[i], err, sizeof(err))) ==
            NULL) {
            fprintf(stderr, "batchpipe dlq replay: %s; nothing was replayed\n", err);
            goto cleanup;
        }
    }
    if (!o.dry_run) {
        /* the batch topic must exist: a producer would otherwise wait for it until the timeout */
        if (cli_kafka_partitions(cli_dlqr_handle(r), cfg->kafka_brokers, cfg->topic, (int)c.timeout_ms, err,
                                 sizeof(err)) < 0 ||
            (c.rk = replay_producer(&c, err, sizeof(err))) == NULL) {
            fprintf(stderr, "batchpipe dlq replay: %s; nothing was replayed\n", err);
            goto cleanup;
        }
    }
    size_t total = 0;
    if (o.all) {
        if (cli_dlqr_scan(r, 0, 1, on_replay_letter, &c, &total, err, sizeof(err)) < 0) {
            /* what was enqueued before the failure is still reported below */
            fprintf(stderr, "batchpipe dlq replay: %s\n", err);
            c.failed_early = 1;
        }
    } else {
        for (int i = 0; i < o.nrefs && !c.failed_early; i++) {
            cli_dlqr_letter_t l;
            if (cli_dlqr_letter_parse(letters[i], &l) != 0) {
                fprintf(stderr, "batchpipe dlq replay: out of memory\n");
                c.failed_early = 1;
                break;
            }
            (void)replay_one(&c, &l, letters[i]);
            cli_dlqr_letter_clear(&l);
        }
    }
    size_t failed = replay_report(&c, o.dry_run, o.all && total > c.n ? total - c.n : 0);
    rc = failed > 0 || c.failed_early ? 1 : 0;
cleanup:
    if (c.rk != NULL) {
        rd_kafka_purge(c.rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(c.rk, 0);
        rd_kafka_destroy(c.rk);
    }
    for (size_t i = 0; i < c.n; i++)
        free(c.items[i].what);
    free(c.items);
    for (int i = 0; letters != NULL && i < o.nrefs; i++)
        if (letters[i] != NULL)
            rd_kafka_message_destroy(letters[i]);
    free(letters);
    cli_dlqr_free(r);
    free_opts(&o);
    return rc;
}

/* ---------------------------------------------------------------------------------------------- */

int cli_dlq(const bp_config_t *cfg, int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "list") == 0)
        return dlq_list(cfg, argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "show") == 0)
        return dlq_show(cfg, argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "replay") == 0)
        return dlq_replay(cfg, argc - 1, argv + 1);
    if (cli_wants_help(argc, argv)) {
        printf("%s", dlq_usage);
        return 0;
    }
    if (argc < 2)
        fprintf(stderr, "batchpipe dlq: which command? list, show or replay (see batchpipe dlq --help)\n");
    else
        fprintf(stderr,
                "batchpipe dlq: unknown command \"%s\": list, show or replay (see batchpipe dlq --help)\n",
                argv[1]);
    return 2;
}
