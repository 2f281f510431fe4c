/* test_count_txn.c - the worker transaction's own count (ingest/count_txn.c): the objects an upsert
 * inserted, found by their ordinals in the messages' payloads, summed over the transaction, counted
 * again when a key became sparse, and the parameters of the one statement that adds them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "count_txn.h"

typedef struct fake {
    rd_kafka_message_t rkm;
    bp_ingest_msg_t msg;
} fake_t;

static void fake_init(fake_t *f, const char *payload)
{
    memset(f, 0, sizeof(*f));
    f->rkm.payload = (void *)payload;
    f->rkm.len = strlen(payload);
    f->msg.rkm = &f->rkm;
}

/* The number of terms of the params (elements of the kinds array: its dimension, bytes 12-15). */
static uint32_t nterms(const bp_count_params_t *p)
{
    const unsigned char *b = (const unsigned char *)p->values[1];
    return (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15];
}

static void test_ordinals_sum_and_recount(void **state)
{
    (void)state;
    fake_t m1, m2;
    /* m1 repeats object a: the upsert took the second one (ordinal 2), whose data is "hat" */
    fake_init(&m1, "{\"batch_id\":\"b\\u0031\",\"objects\":[{\"object_id\":\"a\",\"data\":[{\"key\":\"type\",\"value\":"
                   "\"shoe\"}]},{\"object_id\":\"a\",\"data\":[{\"key\":\"type\",\"value\":\"hat\"}]},"
                   "{\"object_id\":\"c\",\"data\":[{\"key\":\"sku\",\"value\":\"S1\"}]}]}");
    fake_init(&m2, "{\"objects\":[{\"data\":[{\"key\":\"sku\",\"value\":\"S2\"}],\"object_id\":\"d\"}],\"batch_id\":\"b2\"}");
    bp_ingest_msg_t *set[2] = {&m1.msg, &m2.msg};
    bp_count_txn_t *c = bp_count_txn_new();
    assert_non_null(c);
    const int64_t rows[] = {2, 1, 1, 3, 1, 2};
    assert_int_equal(bp_count_txn_add(c, set, 2, rows, 3), BP_COUNT_OK);
    assert_int_equal(bp_count_txn_objects(c), 3);
    bp_count_params_t p;
    assert_int_equal(bp_count_txn_params(c, &p), BP_COUNT_OK);
    /* t, b1, b2, k type, k sku, v "hat", p type "hat", v "S1", v "S2", p sku "S1", p sku "S2" */
    assert_int_equal(nterms(&p), 11);
    assert_int_equal(p.values[4][0], '{'); /* the deltas: a bigint[] in text format */
    bp_count_params_free(&p);
    /* sku became sparse: its values and pairs go, its key stays */
    assert_int_equal(bp_count_txn_set_sparse(c, "[\"sku\"]"), BP_COUNT_OK);
    assert_int_equal(bp_count_txn_params(c, &p), BP_COUNT_OK);
    assert_int_equal(nterms(&p), 7);
    bp_count_params_free(&p);
    /* a new transaction forgets the objects, keeps the sparse keys */
    bp_count_txn_begin(c);
    assert_int_equal(bp_count_txn_objects(c), 0);
    const int64_t one[] = {1, 3};
    assert_int_equal(bp_count_txn_add(c, set, 2, one, 1), BP_COUNT_OK);
    assert_int_equal(bp_count_txn_params(c, &p), BP_COUNT_OK);
    assert_int_equal(nterms(&p), 3); /* t, b1, k sku */
    bp_count_params_free(&p);
    bp_count_txn_free(c);
}

static void test_bad_rows_and_overflow(void **state)
{
    (void)state;
    fake_t m;
    fake_init(&m, "{\"batch_id\":\"b\",\"objects\":[{\"object_id\":\"a\",\"data\":[{\"key\":\"t\",\"value\":\"1e200000\"}]}]}");
    bp_ingest_msg_t *set[1] = {&m.msg};
    bp_count_txn_t *c = bp_count_txn_new();
    const int64_t no_msg[] = {2, 1}, no_obj[] = {1, 2}, ok[] = {1, 1};
    assert_int_equal(bp_count_txn_add(c, set, 1, no_msg, 1), BP_COUNT_MALFORMED);
    assert_int_equal(bp_count_txn_add(c, set, 1, no_obj, 1), BP_COUNT_MALFORMED);
    assert_int_equal(bp_count_txn_add(c, set, 1, ok, 1), BP_COUNT_OVERFLOW);
    assert_int_equal(bp_count_txn_objects(c), 0); /* a statement that does not count is not kept */
    assert_int_equal(bp_count_txn_set_sparse(c, "{}"), BP_COUNT_MALFORMED);
    bp_count_txn_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ordinals_sum_and_recount),
        cmocka_unit_test(test_bad_rows_and_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
