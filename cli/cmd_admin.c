/* cmd_admin.c - the setup subcommands: migrate the database, create the topics, show the effective
 * configuration and the settings table, hash an API key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "bp_clock.h"
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
    "usage: batchpipe [settings] topics [--replication-factor N] [--min-insync-replicas N]\n"
    "Create BP_TOPIC and BP_DLQ_TOPIC with BP_PARTITIONS partitions if they are missing, as durable as the\n"
    "cluster allows: replication factor min(3, brokers) and min.insync.replicas one less (at least 1) unless\n"
    "given; BP_TOPIC with message.timestamp.type=LogAppendTime (the broker's clock orders messages across\n"
    "partitions), BP_DLQ_TOPIC with CreateTime (a letter keeps its original's timestamp). On topics that\n"
    "exist, say what differs and fix what can be fixed in place (min.insync.replicas, timestamp type; the\n"
    "partition count and replication factor are reported only). Harmless to run again.\n";
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

#define TOPICS_TIMEOUT_MS 15000

/* What one topic should look like. */
typedef struct topic_want {
    const char *name;
    const char *timestamp_type;
    int partitions, rf, min_isr;
} topic_want_t;

/* Create want's topic, or bring the existing one as close to want as can be done in place. Prints what
 * it found and did on stdout. Returns 0, or 1 with the reason on stderr. */
static int ensure_topic(rd_kafka_t *rk, const topic_want_t *want)
{
    char err[1024];
    char min_isr[16];
    snprintf(min_isr, sizeof(min_isr), "%d", want->min_isr);
    const char *names[] = {"min.insync.replicas", "message.timestamp.type"};
    const char *values[] = {min_isr, want->timestamp_type};
    int created = bp_kafka_create_topic(rk, want->name, want->partitions, want->rf, names, values, 2,
                                        TOPICS_TIMEOUT_MS, err, sizeof(err));
    if (created < 0) {
        fprintf(stderr, "batchpipe topics: %s\n", err);
        return 1;
    }
    if (created == 1) {
        printf("topic %s: created with %d partitions, replication factor %d, min.insync.replicas %d, "
               "message.timestamp.type %s\n", want->name, want->partitions, want->rf, want->min_isr,
               want->timestamp_type);
        printf("topic %s: ready\n", want->name);
        return 0;
    }
    /* The broker said it exists; a topic created a moment ago (by hand, or by another `topics`) may
     * still be missing from the metadata, or have no partitions there yet: ask again until it shows. */
    bp_kafka_topic_info_t info;
    long long deadline = bp_clock_ms() + TOPICS_TIMEOUT_MS;
    for (;;) {
        long long left = deadline - bp_clock_ms();
        if (bp_kafka_topic_describe(rk, want->name, left > 1000 ? (int)left : 1000, &info, err, sizeof(err)) != 0) {
            fprintf(stderr, "batchpipe topics: %s\n", err);
            return 1;
        }
        if (info.partitions > 0)
            break;
        if (bp_clock_ms() + 200 >= deadline) {
            fprintf(stderr, "batchpipe topics: topic %s: the broker says it exists, its metadata shows no "
                    "partitions\n", want->name);
            return 1;
        }
        struct timespec pause = {0, 200 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    if (info.partitions != want->partitions)
        printf("topic %s: has %d partitions, BP_PARTITIONS is %d: left as is (a new count moves batch ids to "
               "other partitions; do it by hand if you mean it)\n", want->name, info.partitions, want->partitions);
    int isr = want->min_isr;
    if (info.replication != want->rf) {
        printf("topic %s: replication factor %d, wanted %d: left as is (change it with "
               "kafka-reassign-partitions.sh)\n", want->name, info.replication, want->rf);
        /* a min.insync.replicas above what the replicas can give would refuse every write */
        int most = info.replication > 1 ? info.replication - 1 : 1;
        if (isr > most) {
            printf("topic %s: min.insync.replicas %d would refuse writes with %d replicas: using %d\n",
                   want->name, isr, info.replication, most);
            isr = most;
        }
    }
    snprintf(min_isr, sizeof(min_isr), "%d", isr);
    int fix_isr = info.min_isr != isr;
    int fix_ts = strcmp(info.timestamp_type, want->timestamp_type) != 0;
    if (fix_isr)
        printf("topic %s: min.insync.replicas %d, setting %d\n", want->name, info.min_isr, isr);
    if (fix_ts)
        printf("topic %s: message.timestamp.type %s, setting %s\n", want->name,
               info.timestamp_type[0] != '\0' ? info.timestamp_type : "unknown", want->timestamp_type);
    if (fix_isr || fix_ts) {
        if (bp_kafka_topic_set_configs(rk, want->name, names, values, 2, TOPICS_TIMEOUT_MS, err, sizeof(err)) != 0) {
            fprintf(stderr, "batchpipe topics: %s\n", err);
            return 1;
        }
    }
    printf("topic %s: ready\n", want->name);
    return 0;
}

int cli_topics(const bp_config_t *cfg, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        printf("%s", topics_usage);
        return 0;
    }
    long long rf = 0, min_isr = 0; /* 0: from the cluster's size */
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int o;
        if ((o = cli_option(argc, argv, &i, "--replication-factor", &v)) != 0) {
            if (o < 0 || cli_parse_ll(v, 1, 32767, &rf) != 0) {
                fprintf(stderr, "batchpipe topics: --replication-factor takes a whole number from 1 to 32767\n");
                return 2;
            }
        } else if ((o = cli_option(argc, argv, &i, "--min-insync-replicas", &v)) != 0) {
            if (o < 0 || cli_parse_ll(v, 1, 32767, &min_isr) != 0) {
                fprintf(stderr, "batchpipe topics: --min-insync-replicas takes a whole number from 1 to 32767\n");
                return 2;
            }
        } else {
            fprintf(stderr, "batchpipe topics: takes no arguments (see batchpipe topics --help)\n");
            return 2;
        }
    }
    if (rf > 0 && min_isr > rf) {
        fprintf(stderr, "batchpipe topics: --min-insync-replicas %lld is more than the replication factor %lld: "
                        "every write would be refused\n", min_isr, rf);
        return 2;
    }
    char err[1024];
    rd_kafka_conf_t *conf = bp_kafka_conf_new(cfg, "batchpipe-cli", err, sizeof(err));
    /* a consumer handle that joins no group: asking about a missing topic never creates it */
    if (conf == NULL || bp_kafka_conf_set(conf, "allow.auto.create.topics", "false", err, sizeof(err)) != 0) {
        if (conf != NULL)
            rd_kafka_conf_destroy(conf);
        fprintf(stderr, "batchpipe topics: %s\n", err);
        return 1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        fprintf(stderr, "batchpipe topics: %s\n", err);
        return 1;
    }
    int rc = 0;
    bp_kafka_topic_info_t info;
    if (bp_kafka_topic_describe(rk, cfg->topic, TOPICS_TIMEOUT_MS, &info, err, sizeof(err)) != 0) {
        fprintf(stderr, "batchpipe topics: %s\n", err);
        rc = 1;
        goto done;
    }
    int brokers = info.brokers;
    if (rf == 0)
        rf = brokers < 3 ? (brokers > 0 ? brokers : 1) : 3;
    if (min_isr == 0)
        min_isr = rf > 1 ? rf - 1 : 1;
    if (rf > brokers) {
        fprintf(stderr, "batchpipe topics: replication factor %lld needs %lld brokers; the cluster has %d\n", rf, rf,
                brokers);
        rc = 1;
        goto done;
    }
    if (min_isr < 2)
        fprintf(stderr,
                "batchpipe topics: warning: %d broker%s, replication factor %lld, min.insync.replicas %lld: an "
                "acknowledged batch may live on one broker only (durable: 3 brokers, replication factor 3, "
                "min.insync.replicas 2)\n", brokers, brokers == 1 ? "" : "s", rf, min_isr);
    topic_want_t wants[2] = {
        {cfg->topic, "LogAppendTime", (int)cfg->partitions, (int)rf, (int)min_isr},
        {cfg->dlq_topic, "CreateTime", (int)cfg->partitions, (int)rf, (int)min_isr},
    };
    for (int i = 0; i < 2 && rc == 0; i++)
        rc = ensure_topic(rk, &wants[i]);
done:
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
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
