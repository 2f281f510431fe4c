"""The counter terms the worker computes in C (ingest/count_terms.c, migration 008) are the terms
migration 007's SQL computes: tricky values (numbers 1e2 / 1.0 / -0.0 / 12345678901234567890, unicode and
escapes, empty strings, a key repeated in one object, null, booleans, the typed rule's "42" beside 42)
published straight to Kafka and applied by a real worker, with the INSERT trigger disabled so that only
the worker can have counted them; then `batchpipe counts verify` and bp_counts_diff (007's SQL over
every row) find no difference. Also: a key that the worker's own transaction makes sparse, counted
again by the next transaction with the new sparse set, and updates and deletes, which the triggers
still count."""
import json

import pytest

from conftest import Env, wait_until
from test_ingest import FAST, Publisher, wait_all_consumed

# raw JSON texts: the worker must see the producer's own spelling of every number
TRICKY = [
    '[{"key":"n","value":1e2},{"key":"n","value":100},{"key":"m","value":100.0}]',
    '[{"key":"n","value":1.0},{"key":"n","value":1},{"key":"z","value":-0.0},{"key":"z2","value":0}]',
    '[{"key":"big","value":12345678901234567890},{"key":"big","value":1.2345678901234567890e19}]',
    '[{"key":"small","value":1.50e-3},{"key":"small","value":"0.0015"},{"key":"neg","value":-12.300}]',
    '[{"key":"s","value":""},{"key":"k","value":""},{"key":"s","value":"\\u0041"},{"key":"s","value":"A"}]',
    '[{"key":"caf\\u00e9","value":"caf\u00e9"},{"key":"emoji","value":"\\ud83d\\ude00 \u00fc\\n\\t\\"q\\"\\\\"}]',
    '[{"key":"b","value":true},{"key":"b","value":"true"},{"key":"b","value":false},{"key":"nl","value":null}]',
    '[{"key":"t","value":"42"},{"key":"t","value":42.0},{"key":"u","value":42},{"key":"t","value":"null"},'
    '{"key":"t","value":null}]',
    '[{"key":"d","value":"x"},{"key":"d","value":"x"},{"key":"d","value":"y"},{"key":"e","value":"x"}]',
    '[{"key":"ctl\\u0001","value":"\\u001f"},{"key":"sp ace","value":" 42"},{"key":"sp ace","value":"1e2"}]',
    '[]',
    # long strings: the worker's buffers grow while it re-escapes them
    '[{"key":"long","value":"%s"},{"key":"long2","value":"%s"}]' % ("\\n\\u00e9x" * 3000, "y" * 60000),
]


@pytest.fixture(scope="module")
def env():
    e = Env()
    e.create()
    yield e
    e.drop()


def diffs(env):
    return env.query("SELECT kind, key, value::text, counted, actual FROM bp_counts_diff()")


def batch(bid, objects):
    return ('{"batch_id":%s,"objects":[%s]}' % (json.dumps(bid), ",".join(
        '{"object_id":%s,"data":%s}' % (json.dumps(oid), data) for oid, data in objects))).encode()


def verify(env):
    assert diffs(env) == []
    r = env.cli("counts", "verify", check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_worker_counts_tricky_values_as_007_does(env):
    env.query("ALTER TABLE objects DISABLE TRIGGER objects_count_insert")  # only the worker can count inserts
    worker = env.start_worker(**FAST)
    pub = Publisher(env.topic)
    try:
        for i in range(3):  # the same data in several batches and transactions
            pub.send(batch(f"tricky-{i}", [(f"o-{i}-{j}", d) for j, d in enumerate(TRICKY)]), key=f"tricky-{i}".encode())
        # a string the typed rule reads as a number numeric cannot hold: 007's trigger failed the
        # statement on it, so the message is a dead letter, and the others stand
        pub.send(batch("overflow", [("o-overflow", '[{"key":"t","value":"1e200000"}]')]), key=b"overflow")
        pub.flush()
        wait_all_consumed(env, timeout=90, workers=[worker])
        assert env.query("SELECT count(*) FROM objects")[0][0] == 3 * len(TRICKY)
        assert env.query("SELECT count(*) FROM objects WHERE object_id = 'o-overflow'")[0][0] == 0
        verify(env)
        # canonical forms, as 007 writes them: 1e2 = 100 = 100.0 is one value, counted once per object
        assert env.query("SELECT sum(n) FROM count_terms WHERE kind = 'v' AND value = '100'")[0][0] == 3
        assert env.query("SELECT DISTINCT value::text FROM count_terms WHERE kind = 'p' AND key = 'big'") == \
            [("12345678901234567890",)]
        assert env.query("SELECT sum(n) FROM count_terms WHERE kind = 'x' AND value = '[\"42\", 42]'")[0][0] == 3

        # a key of unique values: the worker's transaction makes it sparse (007's rule, 250 objects with
        # 250 values), and the next transactions count with the new set (the worker read it at connect)
        pub.send(batch("uniq", [(f"u-{j}", '[{"key":"sku","value":"S-%d"},{"key":"n","value":%d.0}]' % (j, j % 3))
                                for j in range(250)]), key=b"uniq")
        pub.flush()
        wait_all_consumed(env, timeout=90, workers=[worker])
        assert env.query("SELECT key FROM count_keys") == [("sku",)]
        pub.send(batch("uniq-2", [("u2", '[{"key":"sku","value":"S-1"},{"key":"n","value":"1"}]')]), key=b"uniq-2")
        # updates and deletes stay with the triggers: a batch sent again with other values, a delete
        pub.send(batch("tricky-0", [("o-0-0", TRICKY[7]), ("o-0-1", TRICKY[0])]), key=b"tricky-0")
        pub.send(json.dumps({"op": "delete", "batch_id": "tricky-1", "object_id": "o-1-3"}).encode(), key=b"tricky-1")
        pub.flush()
        wait_all_consumed(env, timeout=90, workers=[worker])
        assert env.query("SELECT count(*) FROM objects WHERE object_id = 'u2'")[0][0] == 1
        # the worker read no sparse key at connect: its next transaction was told of sku and counted again
        assert "the sparse keys changed during the transaction" in worker.logs()
        verify(env)
    finally:
        worker.stop(timeout=60)
        env.query("ALTER TABLE objects ENABLE TRIGGER objects_count_insert")


def test_the_trigger_still_counts_other_writers(env):
    """An INSERT outside a worker (an operator's SQL) is counted by the trigger as in 007."""
    env.query("INSERT INTO batches (batch_id) VALUES ('sql') ON CONFLICT DO NOTHING")
    env.query("INSERT INTO objects (object_id, batch_id, data, src_ts, src_partition, src_offset) "
              "VALUES ('sql-1', 'sql', %s::jsonb, 0, 0, 0)", (TRICKY[7],))
    verify(env)
