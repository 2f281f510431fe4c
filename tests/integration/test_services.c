/* test_services.c - proves the services are real: librdkafka produces to and consumes from the
 * running broker in a consumer group and commits, and libpq reads the migrated schema. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bp_config.h"
#include "bp_kafka.h"
#include "bp_pg.h"

static bp_config_t cfg;

static int setup(void **state)
{
    char err[512];
    char *argv[] = {"test", NULL};
    const char *dsn = getenv("BP_TEST_PG_DSN");
    if (dsn != NULL)
        setenv("BP_PG_DSN", dsn, 1);
    if (bp_config_load(&cfg, BP_FOR_ALL, "", 1, argv, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    bp_config_free(&cfg);
    return 0;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    *(rd_kafka_resp_err_t *)m->_private = m->err;
}

static void test_kafka_produce_consume_commit(void **state)
{
    char err[512], topic[64], group[64], payload[96];
    snprintf(topic, sizeof(topic), "bp-selftest-%d-%lld", getpid(), now_ms());
    snprintf(group, sizeof(group), "bp-selftest-group-%d", getpid());
    snprintf(payload, sizeof(payload), "hello %s", topic);

    /* producer: idempotent, acks=all, as the API uses it */
    rd_kafka_conf_t *pconf = bp_kafka_conf_new(&cfg, "selftest-producer", err, sizeof(err));
    assert_non_null(pconf);
    assert_int_equal(bp_kafka_conf_set(pconf, "enable.idempotence", "true", err, sizeof(err)), 0);
    rd_kafka_conf_set_dr_msg_cb(pconf, dr_cb);
    rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof(err));
    assert_non_null(prod);
    assert_true(bp_kafka_create_topic(prod, topic, 3, 1, NULL, NULL, 0, 15000, err, sizeof(err)) >= 0);

    rd_kafka_resp_err_t delivered = RD_KAFKA_RESP_ERR__IN_PROGRESS;
    assert_int_equal(rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY("k", 1),
                                       RD_KAFKA_V_VALUE(payload, strlen(payload)),
                                       RD_KAFKA_V_OPAQUE(&delivered), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    long long deadline = now_ms() + 30000;
    while (delivered == RD_KAFKA_RESP_ERR__IN_PROGRESS && now_ms() < deadline)
        rd_kafka_poll(prod, 100);
    assert_int_equal(delivered, RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(prod);

    /* consumer in a group: cooperative-sticky, as the worker uses it */
    rd_kafka_conf_t *cconf = bp_kafka_conf_new(&cfg, "selftest-consumer", err, sizeof(err));
    assert_non_null(cconf);
    assert_int_equal(bp_kafka_conf_set(cconf, "group.id", group, err, sizeof(err)), 0);
    assert_int_equal(bp_kafka_conf_set(cconf, "auto.offset.reset", "earliest", err, sizeof(err)), 0);
    assert_int_equal(bp_kafka_conf_set(cconf, "enable.auto.commit", "false", err, sizeof(err)), 0);
    assert_int_equal(bp_kafka_conf_set(cconf, "partition.assignment.strategy", "cooperative-sticky", err,
                                       sizeof(err)), 0);
    rd_kafka_t *cons = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, err, sizeof(err));
    assert_non_null(cons);
    rd_kafka_poll_set_consumer(cons);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(cons, sub), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(sub);

    int got = 0;
    int32_t partition = -1;
    int64_t offset = -1;
    deadline = now_ms() + 60000;
    while (!got && now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 200);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->len == strlen(payload) &&
            memcmp(m->payload, payload, m->len) == 0) {
            got = 1;
            partition = m->partition;
            offset = m->offset;
        }
        rd_kafka_message_destroy(m);
    }
    assert_true(got);

    /* commit synchronously and read the committed offset back from the broker */
    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(offs, topic, partition)->offset = offset + 1;
    assert_int_equal(rd_kafka_commit(cons, offs, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(offs);
    offs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(offs, topic, partition);
    assert_int_equal(rd_kafka_committed(cons, offs, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(offs->elems[0].offset, offset + 1);
    rd_kafka_topic_partition_list_destroy(offs);
    rd_kafka_consumer_close(cons);
    rd_kafka_destroy(cons);
}

static void test_pg_reads_migrated_schema(void **state)
{
    char err[512];
    PGconn *conn = bp_pg_connect(cfg.pg_dsn, err, sizeof(err));
    if (conn == NULL)
        fail_msg("%s", err);
    PGresult *res = PQexec(conn, "SELECT max(version) FROM bp_schema_migrations");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_true(atoi(PQgetvalue(res, 0, 0)) >= 1);
    PQclear(res);
    res = PQexec(conn, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' "
                       "AND table_name IN ('batches', 'objects', 'ingest_offsets')");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(res, 0, 0), "3");
    PQclear(res);
    /* the GIN index that serves the data filters exists */
    res = PQexec(conn, "SELECT indexdef FROM pg_indexes WHERE indexname = 'objects_data_idx'");
    assert_int_equal(PQntuples(res), 1);
    assert_non_null(strstr(PQgetvalue(res, 0, 0), "jsonb_path_ops"));
    PQclear(res);
    PQfinish(conn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kafka_produce_consume_commit),
        cmocka_unit_test(test_pg_reads_migrated_schema),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
