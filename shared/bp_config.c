/* bp_config.c - the settings table and its parser.
 * One row per setting; a setting lives nowhere else, so --help, the dump and validation agree. */
#include "bp_config.h"

#include <errno.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <strings.h>

typedef enum { T_STR, T_INT, T_BYTES, T_LEVEL } setting_type_t;

enum { SECRET_NONE = 0, SECRET_DSN = 1, SECRET_ALL = 2 };

typedef struct setting {
    const char *name; /* flag name, --name */
    const char *env;  /* environment variable */
    setting_type_t type;
    size_t offset;
    const char *def;
    long long min, max;
    int for_mask;
    int secret; /* SECRET_DSN: its password is masked in dumps; SECRET_ALL: the whole value is */
    const char *help;
} setting_t;

#ifndef BP_DEFAULT_MIGRATIONS_DIR
#define BP_DEFAULT_MIGRATIONS_DIR "schemas/migrations"
#endif

#define S(f) offsetof(bp_config_t, f)
#define KIB 1024LL
#define MIB (1024LL * 1024)

static const setting_t settings[] = {
    {"pg-dsn", "BP_PG_DSN", T_STR, S(pg_dsn), "host=127.0.0.1 port=5432 dbname=batchpipe user=postgres", 0, 0,
     BP_FOR_ALL, SECRET_DSN, "libpq connection string of the batchpipe database"},
    {"kafka-brokers", "BP_KAFKA_BROKERS", T_STR, S(kafka_brokers), "127.0.0.1:9092", 0, 0, BP_FOR_ALL, 0,
     "Kafka bootstrap servers (host:port,...)"},
    {"topic", "BP_TOPIC", T_STR, S(topic), "batchpipe.batches", 0, 0, BP_FOR_ALL, 0,
     "topic the batches are published to and consumed from"},
    {"dlq-topic", "BP_DLQ_TOPIC", T_STR, S(dlq_topic), "batchpipe.batches.dlq", 0, 0, BP_FOR_ALL, 0,
     "dead-letter topic for messages that cannot be applied"},
    {"partitions", "BP_PARTITIONS", T_INT, S(partitions), "12", 1, 1024, BP_FOR_CLI, 0,
     "partition count used when creating the topics"},
    {"log-level", "BP_LOG_LEVEL", T_LEVEL, S(log_level), "info", 0, 0, BP_FOR_ALL, 0,
     "lowest level logged: debug, info, warn, error"},
    {"max-body-bytes", "BP_MAX_BODY_BYTES", T_BYTES, S(max_body_bytes), "16MiB", 1 * KIB, 1024 * MIB,
     BP_FOR_API, 0, "largest request body accepted (413 beyond)"},
    {"max-objects", "BP_MAX_OBJECTS", T_INT, S(max_objects), "100000", 1, 10000000, BP_FOR_API | BP_FOR_INGEST,
     0, "most objects in one batch"},
    {"max-pairs", "BP_MAX_PAIRS", T_INT, S(max_pairs), "1000", 1, 1000000, BP_FOR_API | BP_FOR_INGEST, 0,
     "most key/value pairs in one object"},
    {"max-id-len", "BP_MAX_ID_LEN", T_INT, S(max_id_len), "255", 1, 65536, BP_FOR_API | BP_FOR_INGEST, 0,
     "longest batch_id or object_id, in bytes"},
    {"max-key-len", "BP_MAX_KEY_LEN", T_INT, S(max_key_len), "255", 1, 65536, BP_FOR_API | BP_FOR_INGEST, 0,
     "longest key, in bytes"},
    {"max-string-len", "BP_MAX_STRING_LEN", T_INT, S(max_string_len), "65536", 1, 16 * MIB,
     BP_FOR_API | BP_FOR_INGEST, 0, "longest string value, in bytes"},
    {"http-host", "BP_HTTP_HOST", T_STR, S(http_host), "", 0, 0, BP_FOR_API, 0,
     "address the HTTP listener binds; empty: 0.0.0.0 with API keys, 127.0.0.1 without (docs/SECURITY.md)"},
    {"http-port", "BP_HTTP_PORT", T_INT, S(http_port), "8000", 1, 65535, BP_FOR_API, 0, "HTTP port"},
    {"http-threads", "BP_HTTP_THREADS", T_INT, S(http_threads), "0", 0, 256, BP_FOR_API, 0,
     "event-loop threads (0: one per core)"},
    {"max-connections", "BP_MAX_CONNECTIONS", T_INT, S(max_connections), "4096", 1, 1000000, BP_FOR_API, 0,
     "most open HTTP connections per thread"},
    {"body-budget-bytes", "BP_BODY_BUDGET_BYTES", T_BYTES, S(body_budget_bytes), "256MiB", 1 * MIB, 64 * 1024 * MIB,
     BP_FOR_API, 0,
     "request-body bytes the API holds at once, all connections together (bodies being read, and what "
     "checking them costs: half a valid batch's size, 8 times anything else's); when spent, reading large "
     "bodies pauses and POSTs get 503 with Retry-After (docs/SECURITY.md)"},
    {"client-body-budget-bytes", "BP_CLIENT_BODY_BUDGET_BYTES", T_BYTES, S(client_body_budget_bytes), "64MiB", 0,
     64 * 1024 * MIB, BP_FOR_API, 0,
     "request-body bytes one client (an API key; without keys, a client address) may have in progress at "
     "once, its first request always allowed; more gets 429 with Retry-After; 0: no per-client limit"},
    {"body-timeout-ms", "BP_BODY_TIMEOUT_MS", T_INT, S(body_timeout_ms), "10000", 1000, 3600000, BP_FOR_API, 0,
     "time a client has to send a request's headers and body (also the idle time of a kept-alive connection "
     "and of an HTTP/2 one); then the connection is closed"},
    {"http2-tls", "BP_HTTP2_TLS", T_INT, S(http2_tls), "0", 0, 1, BP_FOR_API, 0,
     "1: offer HTTP/2 to TLS clients (ALPN h2); 0: HTTPS speaks HTTP/1.1 only. An HTTP/2 connection may "
     "send up to 100 request bodies at once whose bytes the body budget does not see (docs/SECURITY.md)"},
    {"http2-cleartext", "BP_HTTP2_CLEARTEXT", T_INT, S(http2_cleartext), "0", 0, 1, BP_FOR_API, 0,
     "1: accept cleartext HTTP/2 (h2c upgrade and prior knowledge); 0: no HTTP/2 without TLS"},
    {"http2-max-streams", "BP_HTTP2_MAX_STREAMS", T_INT, S(http2_max_streams), "16", 1, 256, BP_FOR_API, 0,
     "requests one HTTP/2 connection may have in progress at once"},
    {"produce-timeout-ms", "BP_PRODUCE_TIMEOUT_MS", T_INT, S(produce_timeout_ms), "10000", 100, 300000,
     BP_FOR_API, 0, "how long a POST waits for the broker's ack before 503"},
    {"produce-linger-ms", "BP_PRODUCE_LINGER_MS", T_INT, S(produce_linger_ms), "1", 0, 1000, BP_FOR_API, 0,
     "how long the producer holds a message to batch it with others (librdkafka linger.ms)"},
    {"produce-queue-max", "BP_PRODUCE_QUEUE_MAX", T_INT, S(produce_queue_max), "10000", 1, 10000000,
     BP_FOR_API, 0, "most messages waiting for an ack per thread (503 beyond)"},
    {"pg-read-dsn", "BP_PG_READ_DSN", T_STR, S(pg_read_dsn), "", 0, 0, BP_FOR_API, SECRET_DSN,
     "libpq connection strings of hot standbys that serve the API's reads, separated by ';' (empty: every "
     "read goes to BP_PG_DSN; docs/OPERATIONS.md#read-replicas)"},
    {"max-replica-lag-ms", "BP_MAX_REPLICA_LAG_MS", T_INT, S(max_replica_lag_ms), "5000", 1, 86400000,
     BP_FOR_API, 0, "a standby whose replay lags more than this (now() - pg_last_xact_replay_timestamp()) is skipped: its "
     "reads go to the primary; also how long an after= read waits for a standby before asking the primary"},
    {"pg-pool-size", "BP_PG_POOL_SIZE", T_INT, S(pg_pool_size), "4", 1, 256, BP_FOR_API, 0,
     "PostgreSQL connections per event-loop thread"},
    {"pg-heap-warmup", "BP_PG_HEAP_WARMUP", T_BYTES, S(pg_heap_warmup), "4MiB", 0, 32 * MIB, BP_FOR_API, 0,
     "bytes each new PostgreSQL session of the API allocates and frees once, so that the server's glibc "
     "stops shrinking and regrowing the backend's heap at every statement (0: off; docs/QUERIES.md)"},
    {"pg-queue-max", "BP_PG_QUEUE_MAX", T_INT, S(pg_queue_max), "1024", 1, 1000000, BP_FOR_API, 0,
     "most queries waiting for a connection per thread (503 beyond)"},
    {"pg-timeout-ms", "BP_PG_TIMEOUT_MS", T_INT, S(pg_timeout_ms), "5000", 100, 600000, BP_FOR_API, 0,
     "statement timeout of API queries"},
    {"page-size-default", "BP_PAGE_SIZE_DEFAULT", T_INT, S(page_size_default), "10", 1, 10000, BP_FOR_API, 0,
     "page_size when the request gives none"},
    {"page-size-max", "BP_PAGE_SIZE_MAX", T_INT, S(page_size_max), "1000", 1, 10000, BP_FOR_API, 0,
     "largest page_size accepted"},
    {"count-cap", "BP_COUNT_CAP", T_INT, S(count_cap), "10000", 0, 100000000, BP_FOR_API, 0,
     "matches read to count exactly what no counter answers alone (an estimate beyond)"},
    {"count-exact-max", "BP_COUNT_EXACT_MAX", T_INT, S(count_exact_max), "100000", 0, 100000000, BP_FOR_API, 0,
     "count=exact: most matches read to count what no counter answers (an estimate beyond)"},
    {"batch-inline-objects", "BP_BATCH_INLINE_OBJECTS", T_INT, S(batch_inline_objects), "100", 0, 10000,
     BP_FOR_API, 0, "objects shown inline in GET /api/v1/batches/{id}/"},
    {"wait-max-s", "BP_WAIT_MAX_S", T_INT, S(wait_max_s), "30", 0, 300, BP_FOR_API, 0,
     "largest ?wait= a POST may ask for, and the longest a read with after= tokens waits (then 503)"},
    {"public-url", "BP_PUBLIC_URL", T_STR, S(public_url), "", 0, 0, BP_FOR_API, 0,
     "base URL of absolute links (empty: from the Host header when BP_ALLOWED_HOSTS or the listen address "
     "names it, else relative links)"},
    {"allowed-hosts", "BP_ALLOWED_HOSTS", T_STR, S(allowed_hosts), "", 0, 0, BP_FOR_API, 0,
     "Host header values (name or name:port, comma-separated) that name this server, besides loopback names, "
     "BP_HTTP_HOST and BP_PUBLIC_URL's host: links use them, and without keys other Hosts are refused"},
    {"api-keys-file", "BP_API_KEYS_FILE", T_STR, S(api_keys_file), "", 0, 0, BP_FOR_API, 0,
     "file of API key hashes and scopes; empty: no authentication, loopback only (docs/SECURITY.md)"},
    {"auth", "BP_AUTH", T_STR, S(auth), "on", 0, 0, BP_FOR_API, 0,
     "on: keys from BP_API_KEYS_FILE, and without them only a loopback address; off: no keys on any address "
     "(logged as a warning)"},
    {"rate-limit", "BP_RATE_LIMIT", T_INT, S(rate_limit), "0", 0, 10000000, BP_FOR_API, 0,
     "requests per second per API key (per client address without keys); 0: no limit"},
    {"trusted-proxies", "BP_TRUSTED_PROXIES", T_STR, S(trusted_proxies), "", 0, 0, BP_FOR_API, 0,
     "addresses (comma-separated) of reverse proxies whose X-Forwarded-For names the client for rate limits"},
    {"rate-burst", "BP_RATE_BURST", T_INT, S(rate_burst), "100", 1, 10000000, BP_FOR_API, 0,
     "requests a client may send at once before the rate limit applies"},
    {"public-rate-limit", "BP_PUBLIC_RATE_LIMIT", T_INT, S(public_rate_limit), "50", 0, 10000000, BP_FOR_API, 0,
     "requests per second per client address to the public routes (/healthz, /readyz, /metrics, /console/), "
     "a burst of twice that; 0: no limit (they never count against BP_RATE_LIMIT)"},
    {"tls-cert", "BP_TLS_CERT", T_STR, S(tls_cert), "", 0, 0, BP_FOR_API, 0,
     "PEM certificate chain: serve HTTPS when set together with BP_TLS_KEY"},
    {"tls-key", "BP_TLS_KEY", T_STR, S(tls_key), "", 0, 0, BP_FOR_API, 0, "PEM private key of BP_TLS_CERT"},
    {"group-id", "BP_GROUP_ID", T_STR, S(group_id), "batchpipe-ingest", 0, 0, BP_FOR_ALL, 0,
     "consumer group of the ingest workers (the API's ?wait= follows this group's progress only)"},
    {"txn-max-messages", "BP_TXN_MAX_MESSAGES", T_INT, S(txn_max_messages), "100", 1, 100000, BP_FOR_INGEST,
     0, "most messages applied in one PostgreSQL transaction"},
    {"txn-max-bytes", "BP_TXN_MAX_BYTES", T_BYTES, S(txn_max_bytes), "8MiB", 1, 1024 * MIB, BP_FOR_INGEST, 0,
     "most message bytes applied in one transaction"},
    {"txn-max-ms", "BP_TXN_MAX_MS", T_INT, S(txn_max_ms), "50", 0, 60000, BP_FOR_INGEST, 0,
     "longest a transaction fills while messages keep coming (it closes sooner when full, or as soon as "
     "nothing more is waiting)"},
    {"txn-linger-ms", "BP_TXN_LINGER_MS", T_INT, S(txn_linger_ms), "0", 0, 60000, BP_FOR_INGEST, 0,
     "how long a transaction waits for more messages once nothing more is waiting (at most BP_TXN_MAX_MS); "
     "0: commit at once, and batch only what arrives while the previous transaction runs"},
    {"retry-backoff-max-ms", "BP_RETRY_BACKOFF_MAX_MS", T_INT, S(retry_backoff_max_ms), "5000", 10, 600000,
     BP_FOR_INGEST, 0, "cap of the backoff between retries of a transient failure"},
    {"txn-max-attempts", "BP_TXN_MAX_ATTEMPTS", T_INT, S(txn_max_attempts), "5", 1, 1000, BP_FOR_INGEST, 0,
     "attempts of a failing transaction before its messages are tried one by one and the failing one is "
     "dead-lettered (a lost connection and failures only an operator can fix are retried without limit)"},
    {"pg-statement-timeout-ms", "BP_PG_STATEMENT_TIMEOUT_MS", T_INT, S(pg_statement_timeout_ms), "30000", 0,
     86400000, BP_FOR_INGEST, 0, "statement_timeout of the worker's PostgreSQL connection; 0: none"},
    {"log-applied", "BP_LOG_APPLIED", T_INT, S(log_applied), "1", 0, 1, BP_FOR_INGEST, 0,
     "1: an info line per message applied, after its COMMIT (topic, partition, offset, request_id); 0: none"},
    {"receipt-retention-days", "BP_RECEIPT_RETENTION_DAYS", T_INT, S(receipt_retention_days), "30", 0, 36500,
     BP_FOR_INGEST, 0,
     "days the worker keeps its group's dead-letter records (receipts of older dead letters say the outcome is "
     "no longer known); an idle worker purges older ones about every 10 minutes; 0: keep them for ever"},
    {"count-in-worker", "BP_COUNT_IN_WORKER", T_INT, S(count_in_worker), "1", 0, 1, BP_FOR_INGEST, 0,
     "1: the worker computes the counter terms of the objects it inserts (migration 008) instead of the "
     "INSERT trigger; 0: the triggers count everything (migration 007's way)"},
    {"shutdown-timeout-ms", "BP_SHUTDOWN_TIMEOUT_MS", T_INT, S(shutdown_timeout_ms), "10000", 100, 600000,
     BP_FOR_API | BP_FOR_INGEST, 0, "bound on a graceful shutdown"},
    {"health-port", "BP_HEALTH_PORT", T_INT, S(health_port), "8001", 0, 65535, BP_FOR_INGEST, 0,
     "port (all addresses) of the worker's /healthz, /readyz and /metrics; 0: off"},
    {"api-url", "BP_API_URL", T_STR, S(api_url), "http://127.0.0.1:8000", 0, 0, BP_FOR_CLI, 0,
     "base URL of the batchpipe API the CLI talks to"},
    {"api-key", "BP_API_KEY", T_STR, S(api_key), "", 0, 0, BP_FOR_CLI, SECRET_ALL,
     "API key the CLI sends as a Bearer token (set it in the environment, not on the command line)"},
    {"migrations-dir", "BP_MIGRATIONS_DIR", T_STR, S(migrations_dir), BP_DEFAULT_MIGRATIONS_DIR, 0, 0, BP_FOR_CLI,
     0, "folder of the SQL migrations"},
};

#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

static char **str_field(bp_config_t *cfg, const setting_t *s)
{
    return (char **)((char *)cfg + s->offset);
}

static long long *int_field(bp_config_t *cfg, const setting_t *s)
{
    return (long long *)((char *)cfg + s->offset);
}

static const setting_t *find_setting(const char *name)
{
    for (size_t i = 0; i < N_SETTINGS; i++) {
        if (strcmp(settings[i].name, name) == 0 || strcmp(settings[i].env, name) == 0)
            return &settings[i];
    }
    return NULL;
}

/* Parse "123", "16MiB", "64k", "1G". */
static int parse_number(const char *value, int bytes, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno != 0 || end == value)
        return -1;
    if (bytes && *end != '\0') {
        long long mult;
        if (strcasecmp(end, "k") == 0 || strcasecmp(end, "kb") == 0 || strcasecmp(end, "kib") == 0)
            mult = KIB;
        else if (strcasecmp(end, "m") == 0 || strcasecmp(end, "mb") == 0 || strcasecmp(end, "mib") == 0)
            mult = MIB;
        else if (strcasecmp(end, "g") == 0 || strcasecmp(end, "gb") == 0 || strcasecmp(end, "gib") == 0)
            mult = 1024 * MIB;
        else
            return -1;
        if (v > LLONG_MAX / mult || v < LLONG_MIN / mult)
            return -1;
        v *= mult;
    } else if (*end != '\0') {
        return -1;
    }
    *out = v;
    return 0;
}

static int apply(bp_config_t *cfg, const setting_t *s, const char *value, char *err, size_t errlen)
{
    switch (s->type) {
    case T_STR:
    case T_LEVEL: {
        if (s->type == T_LEVEL) {
            static const char *const levels[] = {"debug", "info", "warn", "warning", "error"};
            int ok = 0;
            for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
                ok |= strcasecmp(value, levels[i]) == 0;
            if (!ok) {
                snprintf(err, errlen, "%s (%s): \"%s\" is not one of debug, info, warn, error", s->env, s->name,
                         value);
                return -1;
            }
        }
        char *copy = strdup(value);
        if (copy == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        free(*str_field(cfg, s));
        *str_field(cfg, s) = copy;
        return 0;
    }
    case T_INT:
    case T_BYTES: {
        long long v;
        if (parse_number(value, s->type == T_BYTES, &v) != 0) {
            snprintf(err, errlen, "%s (%s): \"%s\" is not a %s", s->env, s->name, value,
                     s->type == T_BYTES ? "size (e.g. 16MiB)" : "whole number");
            return -1;
        }
        if (v < s->min || v > s->max) {
            snprintf(err, errlen, "%s (%s): %lld is out of range [%lld, %lld]", s->env, s->name, v, s->min,
                     s->max);
            return -1;
        }
        *int_field(cfg, s) = v;
        return 0;
    }
    }
    return -1;
}

int bp_config_set(bp_config_t *cfg, const char *name, const char *value, char *err, size_t errlen)
{
    const setting_t *s = find_setting(name);
    if (s == NULL) {
        snprintf(err, errlen, "unknown setting \"%s\"", name);
        return -1;
    }
    return apply(cfg, s, value, err, errlen);
}

void bp_config_usage(FILE *out, int for_mask)
{
    fprintf(out, "Settings (flag, environment variable, default); flags override the environment:\n");
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const setting_t *s = &settings[i];
        if (!(s->for_mask & for_mask))
            continue;
        fprintf(out, "  --%-22s %-26s %s\n  %-24s   default: %s\n", s->name, s->env, s->help, "",
                s->secret ? "(see docs/CONFIGURATION.md)" : (s->def[0] ? s->def : "\"\""));
    }
}

void bp_config_markdown(FILE *out)
{
    static const char *const type_names[] = {"string", "integer", "size", "level"};
    fprintf(out, "| variable | flag | type | default | binaries | meaning |\n|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const setting_t *s = &settings[i];
        char who[32] = "";
        if (s->for_mask & BP_FOR_API)
            strcat(who, "api ");
        if (s->for_mask & BP_FOR_INGEST)
            strcat(who, "ingest ");
        if (s->for_mask & BP_FOR_CLI)
            strcat(who, "cli");
        const char *def = s->def[0] ? s->def : "(empty)";
        if (strcmp(s->name, "migrations-dir") == 0)
            def = "schemas/migrations of the source tree";
        fprintf(out, "| `%s` | `--%s` | %s | `%s` | %s | %s", s->env, s->name, type_names[s->type], def, who,
                s->help);
        if (s->type == T_INT || s->type == T_BYTES)
            fprintf(out, " (%lld to %lld)", s->min, s->max);
        fprintf(out, " |\n");
    }
}

int bp_config_load(bp_config_t *cfg, int for_mask, const char *usage, int argc, char **argv, int *first_arg,
                   char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < N_SETTINGS; i++) {
        if (apply(cfg, &settings[i], settings[i].def, err, errlen) != 0)
            return -1;
    }
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const char *v = getenv(settings[i].env);
        if (v != NULL && (settings[i].for_mask & for_mask) && apply(cfg, &settings[i], v, err, errlen) != 0)
            return -1;
    }
    int i = 1;
    for (; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fprintf(stdout, "%s\n", usage);
            bp_config_usage(stdout, for_mask);
            return 1;
        }
        if (strcmp(arg, "--") == 0) {
            i++;
            break;
        }
        if (strncmp(arg, "--", 2) != 0)
            break;
        char name[128];
        const char *value;
        const char *eq = strchr(arg + 2, '=');
        if (eq != NULL) {
            snprintf(name, sizeof(name), "%.*s", (int)(eq - arg - 2), arg + 2);
            value = eq + 1;
        } else {
            snprintf(name, sizeof(name), "%s", arg + 2);
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--%s needs a value", name);
                return -1;
            }
            value = argv[++i];
        }
        const setting_t *s = find_setting(name);
        if (s == NULL || !(s->for_mask & for_mask) || strncmp(name, "BP_", 3) == 0) {
            snprintf(err, errlen, "unknown option --%s (see --help)", name);
            return -1;
        }
        if (apply(cfg, s, value, err, errlen) != 0)
            return -1;
    }
    if ((cfg->tls_cert[0] == '\0') != (cfg->tls_key[0] == '\0')) {
        snprintf(err, errlen, "BP_TLS_CERT and BP_TLS_KEY must be set together");
        return -1;
    }
    if (strcmp(cfg->auth, "on") != 0 && strcmp(cfg->auth, "off") != 0) {
        snprintf(err, errlen, "BP_AUTH (auth): \"%s\" is not one of on, off", cfg->auth);
        return -1;
    }
    if (cfg->page_size_default > cfg->page_size_max) {
        snprintf(err, errlen, "BP_PAGE_SIZE_DEFAULT (%lld) is larger than BP_PAGE_SIZE_MAX (%lld)",
                 cfg->page_size_default, cfg->page_size_max);
        return -1;
    }
    if (first_arg != NULL)
        *first_arg = i;
    return 0;
}

char *bp_config_mask_dsn(const char *dsn)
{
    /* keyword/value form: password=... ; URI form: scheme://user:password@host. Every occurrence:
     * BP_PG_READ_DSN holds several connection strings. */
    char *copy = strdup(dsn);
    if (copy == NULL)
        return NULL;
    for (char *p = strstr(copy, "password="); p != NULL; p = strstr(p + 1, "password=")) {
        char *v = p + strlen("password=");
        char *end = v;
        if (*end == '\'') {
            end++;
            while (*end && *end != '\'')
                end += (*end == '\\' && end[1]) ? 2 : 1;
            if (*end)
                end++;
        } else {
            while (*end && *end != ' ' && *end != ';')
                end++;
        }
        size_t tail = strlen(end);
        if (end - v >= 4) {
            memcpy(v, "****", 4);
            memmove(v + 4, end, tail + 1);
        }
    }
    for (char *scheme = strstr(copy, "://"); scheme != NULL; scheme = strstr(scheme + 3, "://")) {
        char *at = strchr(scheme + 3, '@');
        char *colon = strchr(scheme + 3, ':');
        char *stop = strchr(scheme + 3, ';');
        if (at != NULL && colon != NULL && colon < at && (stop == NULL || at < stop) && at - colon - 1 >= 4) {
            memcpy(colon + 1, "****", 4);
            memmove(colon + 5, at, strlen(at) + 1);
        }
    }
    return copy;
}

json_t *bp_config_dump(const bp_config_t *cfg, int for_mask)
{
    json_t *out = json_object();
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const setting_t *s = &settings[i];
        if (!(s->for_mask & for_mask))
            continue;
        if (s->type == T_STR || s->type == T_LEVEL) {
            const char *v = *str_field((bp_config_t *)cfg, s);
            if (s->secret == SECRET_ALL) {
                json_object_set_new(out, s->env, json_string(v[0] != '\0' ? "****" : ""));
            } else if (s->secret == SECRET_DSN) {
                char *masked = bp_config_mask_dsn(v);
                json_object_set_new(out, s->env, json_string(masked ? masked : "****"));
                free(masked);
            } else {
                json_object_set_new(out, s->env, json_string(v));
            }
        } else {
            json_object_set_new(out, s->env, json_integer(*int_field((bp_config_t *)cfg, s)));
        }
    }
    return out;
}

void bp_config_free(bp_config_t *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < N_SETTINGS; i++) {
        if (settings[i].type == T_STR || settings[i].type == T_LEVEL) {
            free(*str_field(cfg, &settings[i]));
            *str_field(cfg, &settings[i]) = NULL;
        }
    }
}
