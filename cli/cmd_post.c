/* cmd_post.c - batchpipe post: batch files (and the *.json files of folders) to POST /api/v1/batches/,
 * several at a time over libcurl's multi interface, with retries, a progress bar or one line per file. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "http_client.h"
#include "bp_clock.h"
#include "bp_json_scan.h"
#include "table.h"

#define CONCURRENCY_DEFAULT 8
#define CONCURRENCY_MAX 64
#define RETRIES_DEFAULT 4
#define RETRIES_MAX 10
#define WAIT_DEFAULT_S 30
#define WAIT_MAX_S 3600
#define FILE_MAX_BYTES (64L * 1024 * 1024)
#define FILES_MAX 1000000
#define POST_TIMEOUT_S 120L   /* per request, plus the --wait */
#define DRAW_INTERVAL_S 0.1

static const char post_usage[] =
    "usage: batchpipe [settings] post [OPTIONS] FILE|DIR...\n"
    "Post batch files to BP_API_URL (POST /api/v1/batches/), several at a time.\n"
    "A DIR means the *.json files directly in it (not in its subfolders, not hidden ones), in byte order\n"
    "of their names; a FILE is posted whatever its name. Files over 64 MiB are not sent (failed).\n"
    "Files with the same batch_id are posted one after the other, in the order given (the last wins).\n"
    "\n"
    "Options:\n"
    "  --concurrency N   requests in flight at once, 1 to 64 (default 8)\n"
    "  --wait[=SECONDS]  answer only once the workers applied each batch, so that it is queryable when\n"
    "                    post returns 0; a batch not applied within SECONDS (default 30, at most the\n"
    "                    API's BP_WAIT_MAX_S) counts as failed\n"
    "  --retries N       tries again after 429, 502, 503, 504 or a connection failure, up to N times\n"
    "                    per file (0 to 10, default 4), waiting 0.5 s doubling (or Retry-After)\n"
    "  --no-progress     no progress bar, even on a terminal\n"
    "\n"
    "On a terminal a progress bar on stderr shows files done/total, objects, objects/s and errors;\n"
    "otherwise each file gets one line on stdout:\n"
    "  ok FILE batch_id=ID objects=N partition=P offset=O status=accepted|stored token=TOKEN\n"
    "  rejected FILE (400): /objects/3/data: required; ...   (every violation the API listed)\n"
    "  failed FILE: why   (no answer, 5xx after the retries, or --wait ran out)\n"
    "Rejected and failed files are printed in either case, then one summary line.\n"
    "Exit status: 0 every file accepted, 1 any rejected or failed, 2 usage error.\n"
    "BP_API_KEY, when set, is sent as a Bearer token.\n";

/* A slot is HELD while an earlier file of the same batch_id is still in flight: files of one batch
 * (a batch and its resubmission) are posted in the order of the arguments, so the last one wins. */
typedef enum { SLOT_FREE, SLOT_HELD, SLOT_RUNNING, SLOT_BACKOFF } slot_state_t;

/* One request in flight (or waiting to be tried again) for one file. */
typedef struct slot {
    slot_state_t state;
    size_t file;   /* index into post_t.paths */
    char *body;    /* the file's bytes, sent as they are */
    size_t len;
    char *batch_id; /* the file's batch_id, NULL when the scanner did not find one */
    int attempt;   /* tries so far */
    double due;    /* SLOT_BACKOFF: monotonic time of the next try */
    CURL *easy;
    struct curl_slist *headers;
    cli_http_response_t resp;
} slot_t;

typedef struct post {
    const bp_config_t *cfg;
    /* options */
    long concurrency;
    long wait_s; /* 0: no ?wait= */
    long retries;
    int no_progress;
    /* the files */
    char **paths;
    size_t npaths;
    size_t cap;
    /* the run */
    char *url;
    CURLM *multi;
    slot_t *slots;
    size_t next; /* next file to start */
    size_t done, accepted, rejected, failed;
    long long objects;
    double started, last_draw;
    int bar;       /* draw a progress bar on stderr */
    int bar_drawn; /* a bar is on the screen now */
    int print_ok;  /* one line per accepted file on stdout */
} post_t;

static int add_path(post_t *p, const char *path)
{
    if (p->npaths >= FILES_MAX) {
        fprintf(stderr, "batchpipe post: more than %d files\n", FILES_MAX);
        return -1;
    }
    if (p->npaths == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        char **grown = realloc(p->paths, cap * sizeof(*grown));
        if (grown == NULL)
            goto oom;
        p->paths = grown;
        p->cap = cap;
    }
    if ((p->paths[p->npaths] = strdup(path)) == NULL)
        goto oom;
    p->npaths++;
    return 0;
oom:
    fprintf(stderr, "batchpipe post: out of memory\n");
    return -1;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int ends_with_json(const char *name)
{
    size_t n = strlen(name);
    return n > 5 && strcmp(name + n - 5, ".json") == 0;
}

/* The *.json regular files directly in dir (not hidden), sorted. */
static int add_dir(post_t *p, const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "batchpipe post: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    size_t first = p->npaths;
    int rc = 0;
    struct dirent *e;
    const char *sep = dir[0] != '\0' && dir[strlen(dir) - 1] == '/' ? "" : "/";
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || !ends_with_json(e->d_name))
            continue;
        size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *path = malloc(n);
        if (path == NULL) {
            fprintf(stderr, "batchpipe post: out of memory\n");
            rc = -1;
            break;
        }
        snprintf(path, n, "%s%s%s", dir, sep, e->d_name);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
            rc = add_path(p, path);
        free(path);
    }
    closedir(d);
    if (rc == 0 && p->npaths == first)
        fprintf(stderr, "batchpipe post: %s has no *.json files\n", dir);
    if (rc == 0)
        qsort(p->paths + first, p->npaths - first, sizeof(*p->paths), by_name);
    return rc;
}

/* Options and FILE|DIR arguments into p. Returns 0, 1 after --help, or 2 on a usage error. */
static int parse_args(post_t *p, int argc, char **argv)
{
    int only_paths = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *v = NULL;
        long long n;
        int r;
        if (!only_paths && strcmp(arg, "--") == 0) {
            only_paths = 1;
            continue;
        }
        if (!only_paths && arg[0] == '-' && arg[1] != '\0') {
            if ((r = cli_option(argc, argv, &i, "--concurrency", &v)) != 0) {
                if (r < 0 || cli_parse_ll(v, 1, CONCURRENCY_MAX, &n) != 0) {
                    fprintf(stderr, "batchpipe post: --concurrency takes a number from 1 to %d\n",
                            CONCURRENCY_MAX);
                    return 2;
                }
                p->concurrency = (long)n;
            } else if ((r = cli_option(argc, argv, &i, "--retries", &v)) != 0) {
                if (r < 0 || cli_parse_ll(v, 0, RETRIES_MAX, &n) != 0) {
                    fprintf(stderr, "batchpipe post: --retries takes a number from 0 to %d\n", RETRIES_MAX);
                    return 2;
                }
                p->retries = (long)n;
            } else if (strcmp(arg, "--wait") == 0) {
                p->wait_s = WAIT_DEFAULT_S; /* the value is optional: only --wait=SECONDS sets it */
            } else if (strncmp(arg, "--wait=", 7) == 0) {
                if (cli_parse_ll(arg + 7, 1, WAIT_MAX_S, &n) != 0) {
                    fprintf(stderr, "batchpipe post: --wait=SECONDS takes a number from 1 to %d\n",
                            WAIT_MAX_S);
                    return 2;
                }
                p->wait_s = (long)n;
            } else if (strcmp(arg, "--no-progress") == 0) {
                p->no_progress = 1;
            } else {
                fprintf(stderr, "batchpipe post: unknown option %s (see batchpipe post --help)\n", arg);
                return 2;
            }
            continue;
        }
        struct stat st;
        if (stat(arg, &st) != 0) {
            fprintf(stderr, "batchpipe post: %s: %s\n", arg, strerror(errno));
            return 2;
        }
        if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
            /* a pipe has no size to bound the read by, and may never end */
            fprintf(stderr, "batchpipe post: %s is neither a file nor a folder\n", arg);
            return 2;
        }
        if (S_ISDIR(st.st_mode) ? add_dir(p, arg) != 0 : add_path(p, arg) != 0)
            return 2;
    }
    if (p->npaths == 0) {
        fprintf(stderr, "batchpipe post: no files to post (see batchpipe post --help)\n");
        return 2;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Output: the progress bar on stderr, result lines on stdout.
 */

static void clear_bar(post_t *p)
{
    if (p->bar_drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        p->bar_drawn = 0;
    }
}

static double rate(const post_t *p)
{
    double elapsed = bp_clock_s() - p->started;
    return elapsed > 0.001 ? (double)p->objects / elapsed : 0.0;
}

static void draw_bar(post_t *p, int force)
{
    double t = bp_clock_s();
    if (!p->bar || (!force && t - p->last_draw < DRAW_INTERVAL_S))
        return;
    p->last_draw = t;
    int width = cli_term_width(stderr); /* the bar is drawn on a terminal only */
    if (width <= 0)
        width = 80;
    char tail[256];
    int tlen = snprintf(tail, sizeof(tail),
                        " %zu/%zu files  %lld objects  %.0f objects/s  %zu rejected  %zu failed", p->done,
                        p->npaths, p->objects, rate(p), p->rejected, p->failed);
    char line[1024];
    int cells = width - 1 - tlen - 2; /* room for "[" bar "]"; a fixed size, so that it does not jump */
    if (cells > 20)
        cells = 20;
    int off = 0;
    if (cells >= 10) {
        int full = (int)((double)cells * (double)p->done / (double)p->npaths);
        line[off++] = '[';
        for (int i = 0; i < cells; i++)
            line[off++] = i < full ? '#' : '-';
        line[off++] = ']';
    }
    snprintf(line + off, sizeof(line) - (size_t)off, "%s", tail);
    if (width - 1 < (int)sizeof(line) && width > 1)
        line[width - 1] = '\0'; /* never wrap: a wrapped line cannot be redrawn with \r */
    fprintf(stderr, "\r%s\033[K", line);
    fflush(stderr);
    p->bar_drawn = 1;
}

/* A result line on stdout (the bar is taken away first, and comes back at the next draw). */
static void result_line(post_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void result_line(post_t *p, const char *fmt, ...)
{
    clear_bar(p);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

/* ---------------------------------------------------------------------------------------------
 * The transfers.
 */

static void slot_release(slot_t *s)
{
    free(s->body);
    free(s->batch_id);
    cli_http_response_reset(&s->resp);
    memset(s, 0, sizeof(*s));
    s->state = SLOT_FREE;
}

static void file_failed(post_t *p, slot_t *s, const char *why)
{
    p->failed++;
    p->done++;
    result_line(p, "failed %s: %s", p->paths[s->file], why);
    slot_release(s);
}

static void file_rejected(post_t *p, slot_t *s, const char *why)
{
    p->rejected++;
    p->done++;
    result_line(p, "rejected %s (%ld): %s", p->paths[s->file], s->resp.status, why);
    slot_release(s);
}

/* Read the file into s->body. Returns 0, or -1 after counting the file (rejected or failed). */
static int read_file(post_t *p, slot_t *s)
{
    char why[512];
    const char *path = p->paths[s->file];
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(why, sizeof(why), "cannot read it: %s", strerror(errno));
        file_failed(p, s, why);
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size > FILE_MAX_BYTES) {
        fclose(f);
        snprintf(why, sizeof(why), "larger than %ld MiB, not sent", FILE_MAX_BYTES / (1024 * 1024));
        file_failed(p, s, why);
        return -1;
    }
    size_t want = (size_t)st.st_size;
    s->body = malloc(want + 1);
    if (s->body == NULL) {
        fclose(f);
        file_failed(p, s, "out of memory");
        return -1;
    }
    s->len = fread(s->body, 1, want, f);
    int bad = ferror(f) || s->len != want;
    fclose(f);
    if (bad) {
        snprintf(why, sizeof(why), "cannot read it (it changed while being read?)");
        file_failed(p, s, why);
        return -1;
    }
    return 0;
}

/* Start (or start again) the request of slot s. Returns 0, or -1 after counting the file as failed. */
static int slot_send(post_t *p, slot_t *s)
{
    cli_http_response_reset(&s->resp);
    s->attempt++;
    s->easy = cli_http_easy(p->cfg, p->url, "application/json", POST_TIMEOUT_S + p->wait_s, &s->resp,
                            &s->headers);
    if (s->easy == NULL ||
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->len) != CURLE_OK ||
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->len > 0 ? s->body : "") != CURLE_OK ||
        curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s) != CURLE_OK ||
        curl_multi_add_handle(p->multi, s->easy) != CURLM_OK) {
        if (s->easy != NULL)
            curl_easy_cleanup(s->easy);
        curl_slist_free_all(s->headers);
        s->easy = NULL;
        s->headers = NULL;
        file_failed(p, s, "cannot set up the request (out of memory?)");
        return -1;
    }
    s->state = SLOT_RUNNING;
    return 0;
}

static void file_accepted(post_t *p, slot_t *s)
{
    json_t *doc = s->resp.body != NULL ? cli_http_json(s->resp.body, s->resp.len) : NULL;
    const char *batch_id = json_string_value(json_object_get(doc, "batch_id"));
    const char *status = json_string_value(json_object_get(doc, "status"));
    const char *wait = json_string_value(json_object_get(doc, "wait"));
    const char *token = json_string_value(json_object_get(doc, "token")); /* batchpipe receipt TOKEN */
    /* 202 says how many objects it took; 201 (after ?wait=) shows the batch as stored */
    const json_t *objects = json_object_get(doc, "objects");
    if (!json_is_integer(objects))
        objects = json_object_get(doc, "object_count");
    long long nobj = json_is_integer(objects) ? (long long)json_integer_value(objects) : 0;
    long long partition = json_is_integer(json_object_get(doc, "partition"))
                              ? (long long)json_integer_value(json_object_get(doc, "partition")) : -1;
    long long offset = json_is_integer(json_object_get(doc, "offset"))
                           ? (long long)json_integer_value(json_object_get(doc, "offset")) : -1;
    if (p->wait_s > 0 && wait != NULL) {
        char why[1024];
        snprintf(why, sizeof(why),
                 "accepted (batch_id=%s partition=%lld offset=%lld token=%s) but not applied within %ld s: %s",
                 batch_id ? batch_id : "?", partition, offset, token ? token : "?", p->wait_s, wait);
        json_decref(doc);
        file_failed(p, s, why);
        return;
    }
    p->accepted++;
    p->done++;
    p->objects += nobj;
    if (p->print_ok)
        result_line(p, "ok %s batch_id=%s objects=%lld partition=%lld offset=%lld status=%s token=%s",
                    p->paths[s->file], batch_id ? batch_id : "?", nobj, partition, offset,
                    status ? status : "?", token ? token : "?");
    json_decref(doc);
    slot_release(s);
}

/* A transfer of slot s ended with code: decide accepted, rejected, failed or try again. */
static void slot_done(post_t *p, slot_t *s, CURLcode code)
{
    cli_http_finish(s->easy, code, &s->resp);
    curl_multi_remove_handle(p->multi, s->easy);
    curl_easy_cleanup(s->easy);
    curl_slist_free_all(s->headers);
    s->easy = NULL;
    s->headers = NULL;
    long status = s->resp.status;
    if (status >= 200 && status < 300) {
        file_accepted(p, s);
        return;
    }
    if (cli_http_retriable(&s->resp) && s->attempt <= p->retries) {
        s->state = SLOT_BACKOFF;
        s->due = bp_clock_s() + cli_http_backoff_s(&s->resp, s->attempt);
        return;
    }
    char *why = cli_http_problem_text(&s->resp, p->url);
    if (status >= 400 && status < 500 && status != 429) {
        file_rejected(p, s, why ? why : "out of memory");
    } else {
        char line[8192];
        if (status != 0)
            snprintf(line, sizeof(line), "(%ld) %s", status, why ? why : "out of memory");
        else
            snprintf(line, sizeof(line), "%s", why ? why : "out of memory");
        if (s->attempt > 1)
            snprintf(line + strlen(line), sizeof(line) - strlen(line), " (after %d tries)", s->attempt);
        file_failed(p, s, line);
    }
    free(why);
}

/* The batch_id of a file's bytes (a copy), or NULL: the API has the last word on a file without one. */
static char *batch_id_of(const char *body, size_t len)
{
    const char *v;
    size_t vlen;
    if (bp_json_member(body, len, "batch_id", &v, &vlen) != 0 || v[0] != '"')
        return NULL;
    json_t *str = json_loadb(v, vlen, JSON_DECODE_ANY, NULL);
    char *id = json_is_string(str) ? strdup(json_string_value(str)) : NULL;
    json_decref(str);
    return id;
}

/* 1 when an earlier file with the batch_id of s is still to be answered. */
static int held_back(const post_t *p, const slot_t *s)
{
    if (s->batch_id == NULL)
        return 0;
    for (long i = 0; i < p->concurrency; i++) {
        const slot_t *t = &p->slots[i];
        if (t != s && t->state != SLOT_FREE && t->batch_id != NULL && t->file < s->file &&
            strcmp(t->batch_id, s->batch_id) == 0)
            return 1;
    }
    return 0;
}

/* Give every free slot a file and every slot whose backoff ended its next try. Returns the number of
 * slots waiting for a backoff and, in *next_due, the earliest end of one. */
static size_t fill_slots(post_t *p, double *next_due)
{
    size_t waiting = 0;
    double t = bp_clock_s();
    *next_due = 0;
    for (long i = 0; i < p->concurrency; i++) {
        slot_t *s = &p->slots[i];
        while (s->state == SLOT_FREE && p->next < p->npaths) {
            s->file = p->next++;
            s->attempt = 0;
            if (read_file(p, s) == 0) {
                s->batch_id = batch_id_of(s->body, s->len);
                s->state = SLOT_HELD;
            }
        }
        if (s->state == SLOT_HELD && !held_back(p, s))
            slot_send(p, s);
        if (s->state == SLOT_BACKOFF && s->due <= t)
            slot_send(p, s);
        if (s->state == SLOT_BACKOFF) {
            if (waiting == 0 || s->due < *next_due)
                *next_due = s->due;
            waiting++;
        }
    }
    return waiting;
}

static int run(post_t *p)
{
    p->multi = curl_multi_init();
    p->slots = calloc((size_t)p->concurrency, sizeof(*p->slots));
    if (p->multi == NULL || p->slots == NULL) {
        fprintf(stderr, "batchpipe post: out of memory\n");
        return -1;
    }
    curl_multi_setopt(p->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, p->concurrency);
    p->started = bp_clock_s();
    draw_bar(p, 1);
    while (p->done < p->npaths) {
        double next_due;
        size_t waiting = fill_slots(p, &next_due);
        int running = 0;
        if (curl_multi_perform(p->multi, &running) != CURLM_OK) {
            fprintf(stderr, "batchpipe post: libcurl's multi interface failed\n");
            return -1;
        }
        CURLMsg *msg;
        int left, finished = 0;
        while ((msg = curl_multi_info_read(p->multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            slot_t *s = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            slot_done(p, s, msg->data.result);
            finished++;
        }
        draw_bar(p, 0);
        if (p->done >= p->npaths)
            break;
        int timeout_ms = finished > 0 ? 0 : 100; /* a finished file may free a held one */
        if (waiting > 0) {
            double d = (next_due - bp_clock_s()) * 1000.0;
            if (d < timeout_ms)
                timeout_ms = d < 0 ? 0 : (int)d;
        }
        curl_multi_poll(p->multi, NULL, 0, timeout_ms, NULL);
    }
    draw_bar(p, 1);
    clear_bar(p);
    return 0;
}

static void post_free(post_t *p)
{
    if (p->slots != NULL) {
        for (long i = 0; i < p->concurrency; i++) {
            slot_t *s = &p->slots[i];
            if (s->easy != NULL) {
                curl_multi_remove_handle(p->multi, s->easy);
                curl_easy_cleanup(s->easy);
            }
            curl_slist_free_all(s->headers);
            slot_release(s);
        }
        free(p->slots);
    }
    if (p->multi != NULL)
        curl_multi_cleanup(p->multi);
    for (size_t i = 0; i < p->npaths; i++)
        free(p->paths[i]);
    free(p->paths);
    free(p->url);
}

int cli_post(const bp_config_t *cfg, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("%s", post_usage);
        return 0;
    }
    post_t p = {.cfg = cfg, .concurrency = CONCURRENCY_DEFAULT, .retries = RETRIES_DEFAULT};
    int rc = parse_args(&p, argc, argv);
    if (rc != 0) {
        post_free(&p);
        return rc;
    }
    char err[256], path[64];
    if (p.wait_s > 0)
        snprintf(path, sizeof(path), "/api/v1/batches/?wait=%ld", p.wait_s);
    else
        snprintf(path, sizeof(path), "/api/v1/batches/");
    p.url = cli_http_url(cfg, path, err, sizeof(err));
    if (p.url == NULL) {
        fprintf(stderr, "batchpipe post: %s\n", err);
        post_free(&p);
        return 2;
    }
    if (cli_http_init() != 0) {
        fprintf(stderr, "batchpipe post: libcurl could not be initialized\n");
        post_free(&p);
        return 1;
    }
    const char *term = getenv("TERM");
    p.bar = !p.no_progress && isatty(STDERR_FILENO) && !(term != NULL && strcmp(term, "dumb") == 0);
    /* with a bar on the terminal, the ok lines would only scroll it away; into a file or a pipe they go */
    p.print_ok = !p.bar || !isatty(STDOUT_FILENO);
    rc = run(&p) == 0 ? 0 : 1;
    if (rc == 0) {
        double elapsed = bp_clock_s() - p.started;
        printf("%zu file%s: %zu accepted (%lld objects, %.0f objects/s, %.1f s), %zu rejected, %zu failed\n",
               p.npaths, p.npaths == 1 ? "" : "s", p.accepted, p.objects,
               elapsed > 0.001 ? (double)p.objects / elapsed : 0.0, elapsed,
               p.rejected, p.failed);
        rc = p.rejected + p.failed > 0 ? 1 : 0;
    }
    post_free(&p);
    cli_http_cleanup();
    return rc;
}
