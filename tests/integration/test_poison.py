"""Messages PostgreSQL refuses in ways other than SQLSTATE classes 22/23/54 (a trigger raising XX000 or
21000, a statement running into the worker's statement_timeout) are retried a bounded number of times,
then isolated and dead-lettered with their SQLSTATE, and the partitions keep flowing. Failures no
message can cause (a lost connection, a privilege error) are retried without limit and dead-letter
nothing."""
import json
import uuid

import pytest
from confluent_kafka import Producer

from conftest import BROKERS, Env, wait_until
from pgcluster import private_env
from test_ingest import FAST, committed_offsets, expected_state, high_watermarks, objects_state, read_dlq, \
    start_workers, wait_all_consumed

# A stand-in for what real deployments meet: an extension, a trigger or a server bug failing on one
# row. The flag table switches on a failure of every row (a privilege revoked).
TRIGGER = """
CREATE TABLE bp_test_flags (name text PRIMARY KEY);
CREATE FUNCTION bp_test_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.object_id LIKE 'poison-xx-%' THEN
    RAISE EXCEPTION 'poisoned object %', NEW.object_id USING ERRCODE = 'XX000';
  END IF;
  IF NEW.object_id LIKE 'poison-card-%' THEN
    RAISE EXCEPTION 'more than one row for %', NEW.object_id USING ERRCODE = '21000';
  END IF;
  IF NEW.object_id LIKE 'poison-slow-%' THEN
    PERFORM pg_sleep(600);
  END IF;
  IF EXISTS (SELECT 1 FROM bp_test_flags WHERE name = 'deny') THEN
    RAISE EXCEPTION 'permission denied for table objects' USING ERRCODE = '42501';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER bp_test_poison BEFORE INSERT OR UPDATE ON objects FOR EACH ROW EXECUTE FUNCTION bp_test_poison();
"""

MAX_ATTEMPTS = 3


class PartitionPublisher:
    """Publishes to chosen partitions and waits for the acks."""

    def __init__(self, topic):
        self.topic = topic
        self.p = Producer({"bootstrap.servers": BROKERS, "enable.idempotence": True})
        self.where = {}

    def send(self, partition, doc, name=None):
        name = name or doc["batch_id"]

        def dr(err, msg):
            assert err is None, err
            self.where[name] = (msg.partition(), msg.offset())

        self.p.produce(self.topic, key=doc["batch_id"].encode(), value=json.dumps(doc).encode(),
                       partition=partition, headers=[("request-id", ("req-" + name).encode())], on_delivery=dr)
        self.p.poll(0)

    def flush(self):
        assert self.p.flush(30) == 0
        return self.where


def batch(batch_id, *object_ids):
    return {"batch_id": batch_id,
            "objects": [{"object_id": o, "data": [{"key": "n", "value": i}, {"key": "tag", "value": batch_id}]}
                        for i, o in enumerate(object_ids)]}


def dlq_count(env):
    return sum(high_watermarks(env.dlq_topic, env.partitions).values())


@pytest.fixture(scope="module")
def env():
    e = Env(partitions=3)
    e.create()
    conn = e.db()
    with conn.cursor() as cur:
        cur.execute(TRIGGER)
    conn.close()
    yield e
    e.drop()


def test_messages_failing_outside_22_23_54_are_dead_lettered_and_every_partition_flows(env):
    t = uuid.uuid4().hex[:8]
    w = start_workers(env, 1, BP_TXN_MAX_ATTEMPTS=str(MAX_ATTEMPTS), BP_PG_STATEMENT_TIMEOUT_MS="1000")[0]
    pub = PartitionPublisher(env.topic)
    # on each partition: a good batch, a poison one (a good object beside the poison one: the message
    # stays atomic, so neither is stored), another good batch
    kinds = {0: ("xx", "XX000"), 1: ("card", "21000"), 2: ("slow", "57014")}
    good, poison = [], {}
    for p, (kind, _) in kinds.items():
        before = batch(f"{t}-before-{p}", f"{t}-b{p}-0", f"{t}-b{p}-1")
        bad = batch(f"{t}-poison-{p}", f"{t}-fine-{p}", f"poison-{kind}-{t}")
        after = batch(f"{t}-after-{p}", f"{t}-a{p}-0")
        for doc in (before, bad, after):
            pub.send(p, doc)
        good += [before, after]
        poison[p] = bad
    where = pub.flush()

    # the partitions' later messages are applied: nothing stalls for good
    wait_all_consumed(env, timeout=90, workers=[w])
    assert w.alive(), w.logs()[-3000:]
    assert objects_state(env, [d["batch_id"] for d in good]) == expected_state(good)
    poisoned_ids = [d["batch_id"] for d in poison.values()]
    assert env.query("SELECT count(*) FROM objects WHERE batch_id = ANY(%s)", (poisoned_ids,)) == [(0,)]

    # each poison message is a dead letter naming its SQLSTATE
    letters = {(l["headers"]["dlq-source-partition"], l["headers"]["dlq-source-offset"]): l
               for l in read_dlq(env, 3)}
    for p, (kind, state) in kinds.items():
        part, off = where[poison[p]["batch_id"]]
        letter = letters[(str(part), str(off))]
        assert json.loads(letter["value"]) == poison[p]
        assert f"SQLSTATE {state}" in letter["headers"]["dlq-reason"], letter["headers"]
        assert letter["headers"]["request-id"] == "req-" + poison[p]["batch_id"]
    assert len(letters) == 3, "only the poison messages are dead letters"

    # and the worker goes on serving every partition
    later = [batch(f"{t}-later-{p}", f"{t}-l{p}-0") for p in range(3)]
    for p, doc in enumerate(later):
        pub.send(p, doc)
    pub.flush()
    wait_all_consumed(env, timeout=30, workers=[w])
    assert objects_state(env, [d["batch_id"] for d in later]) == expected_state(later)
    assert w.stop() == 0


def test_a_failure_no_message_can_cause_is_retried_without_limit(env):
    """42501 (a privilege) on every row: never a dead letter however often it is retried, and all of
    it applied once an operator fixes the cause."""
    t = uuid.uuid4().hex[:8]
    letters_before = dlq_count(env)
    env.query("INSERT INTO bp_test_flags VALUES ('deny')")
    w = start_workers(env, 1, BP_TXN_MAX_ATTEMPTS="2")[0]
    pub = PartitionPublisher(env.topic)
    docs = [batch(f"{t}-denied-{p}", f"{t}-d{p}") for p in range(3)]
    for p, doc in enumerate(docs):
        pub.send(p, doc)
    pub.flush()

    def retried_often():
        assert w.alive(), w.logs()[-3000:]
        return len([l for l in w.log_lines() if l.get("msg", "").startswith("transaction of")
                    and "42501" in l["msg"] and l.get("level") == "error"]) >= 4 * 2
    wait_until(retried_often, 60, "the worker to retry the privilege failure (as error) well past the attempt bound")
    assert dlq_count(env) == letters_before, "a failure no message can cause dead-lettered something"

    env.query("DELETE FROM bp_test_flags WHERE name = 'deny'")
    wait_all_consumed(env, timeout=30, workers=[w])
    assert objects_state(env, [d["batch_id"] for d in docs]) == expected_state(docs)
    assert dlq_count(env) == letters_before
    assert w.stop() == 0


def test_postgresql_down_is_retried_without_limit():
    """A server that is gone for longer than the attempt bound lets the worker retry and dead-letters
    nothing: all of it applied once the server is back."""
    env, cluster = private_env(Env)
    try:
        env.create()
        w = start_workers(env, 1, BP_TXN_MAX_ATTEMPTS="2")[0]
        docs = [batch(f"down-{i}", f"down-{i}-0", f"down-{i}-1") for i in range(6)]
        pub = PartitionPublisher(env.topic)
        for i, doc in enumerate(docs[:3]):
            pub.send(i % 3, doc)
        pub.flush()
        wait_all_consumed(env, timeout=30, workers=[w])
        cluster.stop()
        for i, doc in enumerate(docs[3:]):
            pub.send(i % 3, doc)
        pub.flush()

        def retried_often():
            assert w.alive(), w.logs()[-3000:]
            return len([l for l in w.log_lines() if l.get("msg", "").startswith("transaction of")]) >= 4 * 2
        wait_until(retried_often, 60, "the worker to retry well past the attempt bound")
        cluster.start()
        wait_all_consumed(env, timeout=60, workers=[w])
        assert objects_state(env) == expected_state(docs)
        assert dlq_count(env) == 0, "a lost connection dead-lettered something"
        assert sum(committed_offsets(env).values()) == len(docs)
        assert w.stop() == 0
    finally:
        for p in env.procs:
            if p.alive():
                p.kill9()
        cluster.destroy()
