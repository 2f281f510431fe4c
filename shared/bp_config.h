/* bp_config.h - every setting of batchpipe in one table: name, environment variable, type, default,
 * bounds and help. Parsing (defaults < environment < flags), --help and the config dump all read it. */
#ifndef BP_CONFIG_H
#define BP_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "bp_error.h"

/* Which binaries a setting concerns (a mask). */
enum { BP_FOR_API = 1, BP_FOR_INGEST = 2, BP_FOR_CLI = 4, BP_FOR_ALL = 7 };

typedef struct bp_config {
    /* shared */
    char *pg_dsn;
    char *kafka_brokers;
    char *topic;
    char *dlq_topic;
    long long partitions;
    char *log_level;
    long long max_body_bytes;
    long long max_objects;
    long long max_pairs;
    long long max_id_len;
    long long max_key_len;
    long long max_string_len;
    /* api */
    char *http_host;
    long long http_port;
    long long http_threads;
    long long max_connections;
    long long body_budget_bytes;
    long long client_body_budget_bytes;
    long long body_timeout_ms;
    long long http2_tls;
    long long http2_cleartext;
    long long http2_max_streams;
    long long produce_timeout_ms;
    long long produce_linger_ms;
    long long produce_queue_max;
    char *pg_read_dsn;
    long long max_replica_lag_ms;
    long long pg_pool_size;
    long long pg_heap_warmup;
    long long pg_queue_max;
    long long pg_timeout_ms;
    long long page_size_default;
    long long page_size_max;
    long long count_cap;
    long long count_exact_max;
    long long batch_inline_objects;
    long long wait_max_s;
    char *public_url;
    char *allowed_hosts;
    char *api_keys_file;
    char *auth;
    char *trusted_proxies;
    long long rate_limit;
    long long rate_burst;
    long long public_rate_limit;
    char *tls_cert;
    char *tls_key;
    /* ingest */
    char *group_id;
    long long txn_max_messages;
    long long txn_max_bytes;
    long long txn_max_ms;
    long long txn_linger_ms;
    long long retry_backoff_max_ms;
    long long txn_max_attempts;
    long long pg_statement_timeout_ms;
    long long log_applied;
    long long receipt_retention_days;
    long long count_in_worker;
    long long shutdown_timeout_ms;
    long long health_port;
    /* cli */
    char *migrations_dir;
    char *api_url;
    char *api_key;
} bp_config_t;

/* Fill cfg with defaults, then the environment, then argv flags (--name=value or --name value).
 * for_mask limits which settings this binary accepts (BP_FOR_*). On --help, prints usage to stdout and
 * returns 1. On a bad value writes one line naming the setting into err and returns -1. On success
 * returns 0 and *first_arg is the index of the first argument that is not a flag (or argc).
 * Free with bp_config_free. */
int bp_config_load(bp_config_t *cfg, int for_mask, const char *usage, int argc, char **argv, int *first_arg,
                   char *err, size_t errlen) BP_MUST_CHECK;

/* Set one setting by name (flag name "pg-dsn" or env name "BP_PG_DSN"). Returns 0, or -1 with err. */
int bp_config_set(bp_config_t *cfg, const char *name, const char *value, char *err, size_t errlen);

/* Print the table of settings (name, env, default, help) for the given binaries. */
void bp_config_usage(FILE *out, int for_mask);

/* The table of every setting as Markdown (docs/CONFIGURATION.md is generated from it). */
void bp_config_markdown(FILE *out);

/* The effective configuration as a JSON object, secrets masked. Caller owns the result. */
json_t *bp_config_dump(const bp_config_t *cfg, int for_mask);

/* Free every string the config owns; cfg itself is the caller's. Accepts NULL. */
void bp_config_free(bp_config_t *cfg);

/* Copy of a libpq connection string with any password replaced by "****". Caller frees. */
char *bp_config_mask_dsn(const char *dsn);

#endif
