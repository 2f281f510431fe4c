/* cmd_admin.c - the setup subcommands: migrate the database, create the topics, show the effective
 * configuration and the settings table, hash an API key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "bp_config.h"
#include "bp_kafka.h"
#include "bp_log.h"
#include "bp_pg.h"
#include "cli.h"

static const char migrate_usage[] =
    "usage: batchpipe [settings] migrate\n"
    "Create the database of BP_PG_DSN if missing and apply the migrations of BP_MIGRATIONS_DIR not yet\n"
    "applied, in order, under an advisory lock (safe to run from several hosts at once).\n";
static const char topics_usage[] =
    "usage: batchpipe [settings] topics\n"
    "Create BP_TOPIC and BP_DLQ_TOPIC with BP_PARTITIONS partitions if they are missing.\n";
static const char config_usage[] =
    "usage: batchpipe [settings] config\n"
    "Print the effective configuration (defaults < environment < flags) as JSON, secrets masked.\n";
static const char hash_key_usage[] =
    "usage: batchpipe hash-key [SCOPES [NAME]] < keyfile\n"
    "Read an API key on standard input and print its line for BP_API_KEYS_FILE.\n"
    "SCOPES is a comma-separated subset of read,write,delete (default all three); NAME labels the key.\n";
static const char settings_usage[] =
    "usage: batchpipe settings\n"
    "Print the table of every setting as Markdown (docs/CONFIGURATION.md is generated from it).\n";

int cli_migrate(const bp_config_t *cfg, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("%s", migrate_usage);
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "batchpipe migrate: takes no arguments (see batchpipe migrate --help)\n");
        return 2;
    }
    char err[1024];
    if (bp_pg_ensure_database(cfg->pg_dsn, err, sizeof(err)) != 0) {
        fprintf(stderr, "batchpipe migrate: %s\n", err);
        return 1;
    }
    PGconn *conn = bp_pg_connect(cfg->pg_dsn, err, sizeof(err));
    if (conn == NULL) {
        fprintf(stderr, "batchpipe migrate: %s\n", err);
        return 1;
    }
    PQclear(PQexec(conn, "SET client_min_messages = warning"));
    int applied = 0;
    int rc = bp_migrate_apply(conn, cfg->migrations_dir, &applied, err, sizeof(err));
    PQfinish(conn);
    if (rc != 0) {
        fprintf(stderr, "batchpipe migrate: %s\n", err);
        return 1;
    }
    printf("migrations: %d applied, database up to date\n", applied);
    return 0;
}

int cli_topics(const bp_config_t *cfg, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("%s", topics_usage);
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "batchpipe topics: takes no arguments (see batchpipe topics --help)\n");
        return 2;
    }
    char err[1024];
    rd_kafka_conf_t *conf = bp_kafka_conf_new(cfg, "batchpipe-cli", err, sizeof(err));
    if (conf == NULL) {
        fprintf(stderr, "batchpipe topics: %s\n", err);
        return 1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        fprintf(stderr, "batchpipe topics: %s\n", err);
        return 1;
    }
    int rc = 0;
    const char *topics[2] = {cfg->topic, cfg->dlq_topic};
    for (int i = 0; i < 2 && rc == 0; i++) {
        if (bp_kafka_create_topic(rk, topics[i], (int)cfg->partitions, 1, 15000, err, sizeof(err)) != 0) {
            fprintf(stderr, "batchpipe topics: %s\n", err);
            rc = 1;
        } else {
            printf("topic %s: ready\n", topics[i]);
        }
    }
    rd_kafka_destroy(rk);
    return rc;
}

/* Hash a key read from stdin (never from argv: it would show in ps and shell history). */
int cli_hash_key(const bp_config_t *cfg, int argc, char **argv)
{
    (void)cfg;
    if (cli_wants_help(argc, argv)) {
        printf("%s", hash_key_usage);
        return 0;
    }
    const char *scopes = argc > 1 ? argv[1] : "read,write,delete";
    const char *name = argc > 2 ? argv[2] : "key";
    char key[1100];
    if (fgets(key, sizeof(key), stdin) == NULL) {
        fprintf(stderr, "batchpipe hash-key: no key on standard input\n");
        return 2;
    }
    key[strcspn(key, "\r\n")] = '\0';
    if (key[0] == '\0' || strlen(key) > 1024) {
        fprintf(stderr, "batchpipe hash-key: the key must be 1 to 1024 bytes\n");
        return 2;
    }
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(key, strlen(key), md, &mdlen, EVP_sha256(), NULL);
    OPENSSL_cleanse(key, sizeof(key));
    for (int i = 0; i < 32; i++)
        printf("%02x", md[i]);
    printf(" %s %s\n", scopes, name);
    return 0;
}

int cli_config(const bp_config_t *cfg, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("%s", config_usage);
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "batchpipe config: takes no arguments (see batchpipe config --help)\n");
        return 2;
    }
    json_t *dump = bp_config_dump(cfg, BP_FOR_ALL);
    json_dumpf(dump, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
    putchar('\n');
    json_decref(dump);
    return 0;
}

int cli_settings(const bp_config_t *cfg, int argc, char **argv)
{
    (void)cfg;
    if (cli_wants_help(argc, argv)) {
        printf("%s", settings_usage);
        return 0;
    }
    bp_config_markdown(stdout);
    return 0;
}
