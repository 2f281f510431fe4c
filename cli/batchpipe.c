/* batchpipe.c - the operator's command-line tool: migrate the database, create the topics, show the
 * effective configuration. Each subcommand is a function; main only picks one. */
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

static const char usage[] =
    "usage: batchpipe [settings] COMMAND\n"
    "\n"
    "Commands:\n"
    "  migrate   create the database if missing and apply the SQL migrations not yet applied\n"
    "  topics    create the batch topic and its dead-letter topic (BP_PARTITIONS partitions) if missing\n"
    "  config    print the effective configuration as JSON, secrets masked\n"
    "  hash-key  read an API key on standard input and print its line for BP_API_KEYS_FILE\n"
    "            (batchpipe hash-key [SCOPES [NAME]], scopes default read,write,delete)\n"
    "  settings  print the table of every setting as Markdown (docs/CONFIGURATION.md)\n"
    "\n"
    "Every setting is also read from its environment variable.\n";

static int cmd_migrate(const bp_config_t *cfg)
{
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

static int cmd_topics(const bp_config_t *cfg)
{
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
static int cmd_hash_key(int argc, char **argv)
{
    const char *scopes = argc > 0 ? argv[0] : "read,write,delete";
    const char *name = argc > 1 ? argv[1] : "key";
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

static int cmd_config(const bp_config_t *cfg)
{
    json_t *dump = bp_config_dump(cfg, BP_FOR_ALL);
    json_dumpf(dump, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
    putchar('\n');
    json_decref(dump);
    return 0;
}

int main(int argc, char **argv)
{
    bp_config_t cfg;
    char err[1024];
    int first = argc;
    int rc = bp_config_load(&cfg, BP_FOR_ALL, usage, argc, argv, &first, err, sizeof(err));
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "batchpipe: %s\n", err);
        bp_config_free(&cfg);
        return rc < 0 ? 2 : 0;
    }
    bp_log_level_t level = BP_LOG_WARN;
    (void)bp_log_level_parse(cfg.log_level, &level);
    bp_log_init("cli", level > BP_LOG_WARN ? level : BP_LOG_WARN);
    if (first >= argc) {
        fprintf(stderr, "%s", usage);
        bp_config_free(&cfg);
        return 2;
    }
    const char *cmd = argv[first];
    if (strcmp(cmd, "migrate") == 0)
        rc = cmd_migrate(&cfg);
    else if (strcmp(cmd, "topics") == 0)
        rc = cmd_topics(&cfg);
    else if (strcmp(cmd, "config") == 0)
        rc = cmd_config(&cfg);
    else if (strcmp(cmd, "hash-key") == 0)
        rc = cmd_hash_key(argc - first - 1, argv + first + 1);
    else if (strcmp(cmd, "settings") == 0)
        bp_config_markdown(stdout), rc = 0;
    else {
        fprintf(stderr, "batchpipe: unknown command \"%s\" (see --help)\n", cmd);
        rc = 2;
    }
    bp_config_free(&cfg);
    return rc;
}
