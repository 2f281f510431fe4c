"""The ingest worker against the real broker and PostgreSQL: batches published straight to the topic
end up in batches/objects (types and order kept), a newer version wins, what ingest_offsets says is
applied is never applied again, poison messages go to the dead-letter topic with their reasons while
the partition keeps flowing, a PostgreSQL restart loses nothing, workers can be added and killed, and
SIGTERM leaves nothing half done. (test_ingest_crash.py: repeated kill -9 with a concurrent reader.)"""
import argparse
import json
import os
import signal
import sys
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from conftest import BROKERS, FIXTURES, Env, wait_until
from pgcluster import private_env

sys.path.insert(0, FIXTURES)
import gen_batch  # noqa: E402  (tests/fixtures, standard library only)

# Small transactions and short backoffs keep the tests quick; the logic is the same.
FAST = {"BP_TXN_MAX_MS": "20", "BP_RETRY_BACKOFF_MAX_MS": "500", "BP_SHUTDOWN_TIMEOUT_MS": "8000"}


# ------------------------------------------------------------------------------------------------
# helpers (test_ingest_crash.py uses them too)

def make_batch(objects, seed, batch_id=None, prefix=None, pairs=3):
    """A generated batch (tests/fixtures/gen_batch.py) as (doc, compact JSON bytes)."""
    args = argparse.Namespace(batch_id=batch_id, objects=objects, pairs=pairs, vary_pairs=True, seed=str(seed),
                              prefix=prefix, compact=True)
    doc = gen_batch.build(args)
    return doc, json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


class Publisher:
    """Publishes straight to a topic with an idempotent producer and records where each message landed."""

    def __init__(self, topic):
        self.topic = topic
        self.p = Producer({"bootstrap.servers": BROKERS, "enable.idempotence": True, "linger.ms": 5})
        self.delivered = []  # (index, partition, offset) in delivery order
        self.errors = []
        self.count = 0

    def send(self, value, key=None, headers=None, timestamp=None):
        index = self.count
        self.count += 1

        def dr(err, msg):
            if err is not None:
                self.errors.append(err)
            else:
                self.delivered.append((index, msg.partition(), msg.offset()))

        kw = {"timestamp": timestamp} if timestamp is not None else {}
        while True:
            try:
                self.p.produce(self.topic, key=key, value=value, headers=headers or [], on_delivery=dr, **kw)
                break
            except BufferError:
                self.p.poll(0.1)
        self.p.poll(0)
        return index

    def flush(self):
        assert self.p.flush(30) == 0, "messages not delivered within 30 s"
        assert not self.errors, self.errors
        return {i: (p, o) for i, p, o in self.delivered}


def publish(topic, value, key=None, headers=None, timestamp=None):
    """Publish one message and wait for the ack: returns (partition, offset)."""
    pub = Publisher(topic)
    i = pub.send(value, key=key, headers=headers, timestamp=timestamp)
    return pub.flush()[i]


def high_watermarks(topic, partitions):
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "bp-test-hw-" + uuid.uuid4().hex})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    finally:
        c.close()


def committed_offsets(env):
    rows = env.query("SELECT partition, next_offset FROM ingest_offsets WHERE group_id = %s AND topic = %s",
                     (env.group, env.topic))
    return {p: n for p, n in rows}


def kafka_committed(env):
    """The group's offsets as lag tools see them (committed to Kafka)."""
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": env.group})
    try:
        tps = c.committed([TopicPartition(env.topic, p) for p in range(env.partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def wait_applied(env, partition, offset, timeout=30):
    """Wait until ingest_offsets says the message at (partition, offset) was dealt with."""
    wait_until(lambda: committed_offsets(env).get(partition, 0) > offset, timeout,
               f"ingest_offsets of partition {partition} to pass offset {offset}")


def wait_all_consumed(env, timeout=60, workers=()):
    """Wait until every partition's next_offset equals its high watermark; returns them."""
    hw = high_watermarks(env.topic, env.partitions)

    def done():
        for w in workers:
            if w.alive() is False and w.p.returncode not in (0, -9):
                raise AssertionError(f"worker exited {w.p.returncode}:\n{w.logs()[-3000:]}")
        got = committed_offsets(env)
        return all(got.get(p, 0) == n for p, n in hw.items())

    wait_until(done, timeout, f"ingest_offsets to reach the high watermarks {hw}")
    return hw


def typed(v):
    """A JSON value with its type made explicit, so that True != 1 and "42" != 42 when compared."""
    if v is None:
        return ("null",)
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, (int, float)):
        return ("number", v)
    if isinstance(v, str):
        return ("string", v)
    if isinstance(v, list):
        return ("array", tuple(typed(x) for x in v))
    if isinstance(v, dict):
        return ("object", tuple(sorted((k, typed(x)) for k, x in v.items())))
    raise TypeError(type(v))


def objects_state(env, batch_ids=None):
    """{object_id: (batch_id, typed data)} from the database."""
    if batch_ids is None:
        rows = env.query("SELECT object_id, batch_id, data FROM objects")
    else:
        rows = env.query("SELECT object_id, batch_id, data FROM objects WHERE batch_id = ANY(%s)", (list(batch_ids),))
    return {oid: (bid, typed(data)) for oid, bid, data in rows}


def expected_state(docs):
    """{object_id: (batch_id, typed data)} after applying docs in order (later wins, none dropped)."""
    state = {}
    for doc in docs:
        for obj in doc["objects"]:
            state[obj["object_id"]] = (doc["batch_id"], typed(obj["data"]))
    return state


def read_dlq(env, count, timeout=30):
    """The first count messages of the dead-letter topic (all partitions), as dicts."""
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "bp-test-dlq-" + uuid.uuid4().hex,
                  "enable.auto.commit": False})
    c.assign([TopicPartition(env.dlq_topic, p, OFFSET_BEGINNING) for p in range(env.partitions)])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            out.append({"key": m.key(), "value": m.value(), "timestamp": m.timestamp()[1],
                        "headers": {k: v.decode() for k, v in (m.headers() or [])}})
    finally:
        c.close()
    assert len(out) >= count, f"expected {count} dead letters, found {len(out)}: {out}"
    return out


def owned_partitions(proc):
    """The partitions a worker owns now, replayed from its "assigned"/"revoked"/"lost" log lines."""
    owned = set()
    for l in proc.log_lines():
        msg = l.get("msg", "")
        verb = msg.split(" ", 1)[0]
        if verb in ("assigned", "revoked", "lost") and "[" in msg:
            inside = msg[msg.index("[") + 1:msg.rindex("]")]
            parts = {int(x.split("@")[0]) for x in inside.split(",") if x}
            owned = owned | parts if verb == "assigned" else owned - parts
    return owned


def wait_settled(env, workers, timeout=60):
    """Wait until every partition is owned by exactly one of the (live) workers."""
    def settled():
        owned = [p for w in workers if w.alive() for p in owned_partitions(w)]
        return sorted(owned) == list(range(env.partitions))
    wait_until(settled, timeout, "every partition to have exactly one owner")


def start_workers(env, n, **extra):
    settings = dict(FAST, **extra)
    workers = [env.start_worker(**settings) for _ in range(n)]
    for w in workers:
        env.wait_assigned(w)
    return workers


@pytest.fixture(scope="module")
def worker(bp_env):
    w = start_workers(bp_env, 1)[0]
    yield w
    if w.alive():
        assert w.stop() == 0, w.logs()[-3000:]


# ------------------------------------------------------------------------------------------------
# 1. a valid batch

def test_valid_batch_is_written_with_order_and_types(bp_env, worker):
    with open(os.path.join(FIXTURES, "mixed_values.json"), "rb") as f:
        raw = f.read()
    doc = json.loads(raw)
    part, off = publish(bp_env.topic, raw, key=doc["batch_id"].encode(), headers=[("request-id", b"req-valid-1")])
    wait_applied(bp_env, part, off)
    assert committed_offsets(bp_env)[part] == off + 1

    assert bp_env.query("SELECT batch_id FROM batches WHERE batch_id = %s", (doc["batch_id"],)) == [(doc["batch_id"],)]
    assert objects_state(bp_env, [doc["batch_id"]]) == expected_state([doc])
    # the JSON types as PostgreSQL sees them: a string that looks like a number stays a string, etc.
    types = dict(bp_env.query(
        "SELECT e->>'key', jsonb_typeof(e->'value') FROM objects, jsonb_array_elements(data) e "
        "WHERE object_id IN ('strings', 'numbers', 'booleans-and-null')"))
    assert types["size"] == "string" and types["stock"] == "number" and types["price"] == "number"
    assert types["in_stock"] == "boolean" and types["color"] == "null"
    # numbers are kept exactly, beyond int64 and double
    huge = bp_env.query("SELECT e->>'value' FROM objects, jsonb_array_elements(data) e "
                        "WHERE object_id = 'numbers' AND e->>'key' = 'huge'")
    assert huge == [("123456789012345678901234567890",)]
    src = bp_env.query("SELECT DISTINCT src_partition, src_offset FROM objects WHERE batch_id = %s", (doc["batch_id"],))
    assert src == [(part, off)]


# ------------------------------------------------------------------------------------------------
# 2. upserts: later data wins, objects move between batches, nothing silently dropped

def load(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        raw = f.read()
    return json.loads(raw), raw


def test_same_batch_again_takes_the_later_data(bp_env, worker):
    v1, raw1 = load("batch_v1.json")
    v2, raw2 = load("batch_v2.json")
    key = v1["batch_id"].encode()
    part, off = publish(bp_env.topic, raw1, key=key)
    wait_applied(bp_env, part, off)
    assert objects_state(bp_env, [v1["batch_id"]]) == expected_state([v1])
    created = dict(bp_env.query("SELECT object_id, created_at FROM objects WHERE batch_id = %s", (v1["batch_id"],)))
    (batch_created, batch_updated), = bp_env.query(
        "SELECT created_at, updated_at FROM batches WHERE batch_id = %s", (v1["batch_id"],))

    part, off = publish(bp_env.topic, raw2, key=key)
    wait_applied(bp_env, part, off)
    assert objects_state(bp_env, [v1["batch_id"]]) == expected_state([v2])
    rows = bp_env.query("SELECT object_id, created_at, updated_at FROM objects WHERE batch_id = %s", (v1["batch_id"],))
    for oid, created_at, updated_at in rows:
        assert created_at == created[oid], "created_at must be kept"
        assert updated_at > created_at, "updated_at must move when the data changes"
    (c, u), = bp_env.query("SELECT created_at, updated_at FROM batches WHERE batch_id = %s", (v1["batch_id"],))
    assert c == batch_created and u > batch_updated


def test_partial_batch_again_merges_and_older_version_loses(bp_env, worker):
    bid = "merge-" + uuid.uuid4().hex
    full, raw_full = make_batch(6, seed=1, batch_id=bid, prefix=bid + "-o")
    part, off = publish(bp_env.topic, raw_full, key=bid.encode())
    wait_applied(bp_env, part, off)

    # the same batch again with only two of its objects, newer data: merged, the other four stay
    partial = {"batch_id": bid, "objects": [{"object_id": o["object_id"], "data": [{"key": "v", "value": 2}]}
                                            for o in full["objects"][:2]]}
    part, off = publish(bp_env.topic, json.dumps(partial).encode(), key=bid.encode())
    wait_applied(bp_env, part, off)
    assert objects_state(bp_env, [bid]) == expected_state([full, partial])

    # a later offset wins even when its timestamp is older (a publisher's clock behind): the log
    # orders a partition, not the clocks (test_order.py has the cases)
    older = {"batch_id": bid, "objects": [{"object_id": full["objects"][0]["object_id"],
                                           "data": [{"key": "v", "value": "older clock"}]}]}
    part, off = publish(bp_env.topic, json.dumps(older).encode(), key=bid.encode(),
                        timestamp=int(time.time() * 1000) - 3_600_000)
    wait_applied(bp_env, part, off)
    assert objects_state(bp_env, [bid]) == expected_state([full, partial, older])


def test_object_moved_to_another_batch_belongs_to_the_new_one(bp_env, worker):
    a = "move-a-" + uuid.uuid4().hex
    b = "move-b-" + uuid.uuid4().hex
    first = {"batch_id": a, "objects": [{"object_id": a + "-1", "data": [{"key": "k", "value": 1}]},
                                        {"object_id": a + "-2", "data": []}]}
    part, off = publish(bp_env.topic, json.dumps(first).encode(), key=a.encode())
    wait_applied(bp_env, part, off)
    second = {"batch_id": b, "objects": [{"object_id": a + "-1", "data": [{"key": "k", "value": "moved"}]}]}
    part, off = publish(bp_env.topic, json.dumps(second).encode(), key=b.encode())
    wait_applied(bp_env, part, off)
    assert objects_state(bp_env, [a, b]) == expected_state([first, second])
    assert bp_env.query("SELECT batch_id FROM objects WHERE object_id = %s", (a + "-1",)) == [(b,)]


def test_repeated_object_id_in_one_message_last_wins(bp_env, worker):
    bid = "dup-" + uuid.uuid4().hex
    doc = {"batch_id": bid, "objects": [{"object_id": bid + "-x", "data": [{"key": "n", "value": 1}]},
                                        {"object_id": bid + "-y", "data": []},
                                        {"object_id": bid + "-x", "data": [{"key": "n", "value": 2}]}]}
    part, off = publish(bp_env.topic, json.dumps(doc).encode(), key=bid.encode())
    wait_applied(bp_env, part, off)
    assert objects_state(bp_env, [bid]) == {bid + "-x": (bid, typed([{"key": "n", "value": 2}])),
                                            bid + "-y": (bid, typed([]))}


def test_messages_below_next_offset_are_skipped(bp_env, worker):
    """As when two workers briefly overlap on a partition: what the row says is applied is not
    applied again, even if this worker still receives it."""
    bid = "skip-" + uuid.uuid4().hex
    key = bid.encode()
    part, off = publish(bp_env.topic, json.dumps({"batch_id": bid, "objects": [
        {"object_id": bid + "-0", "data": []}]}).encode(), key=key)
    wait_applied(bp_env, part, off)
    # "another worker" applied the next two offsets of this partition
    bp_env.query("UPDATE ingest_offsets SET next_offset = %s WHERE group_id = %s AND topic = %s AND partition = %s",
                 (off + 3, bp_env.group, bp_env.topic, part))
    pub = Publisher(bp_env.topic)
    for i in (1, 2, 3):
        pub.send(json.dumps({"batch_id": bid, "objects": [{"object_id": f"{bid}-{i}", "data": []}]}).encode(), key=key)
    where = pub.flush()
    assert [where[i][1] for i in range(3)] == [off + 1, off + 2, off + 3]
    wait_applied(bp_env, part, off + 3)
    assert sorted(objects_state(bp_env, [bid])) == [bid + "-0", bid + "-3"]


# ------------------------------------------------------------------------------------------------
# 3. poison messages

def test_poison_messages_go_to_the_dlq_and_the_partition_keeps_flowing(bp_env, worker):
    key = ("poison-" + uuid.uuid4().hex).encode()
    with open(os.path.join(FIXTURES, "batch_typos.json"), "rb") as f:
        typos = f.read()
    # passes the validator (jansson reads 1e-20000 as 0.0) but PostgreSQL's numeric refuses it
    # the key is the batch_id (another key would be a dead letter of its own)
    refused = json.dumps({"batch_id": key.decode(), "objects": [
        {"object_id": key.decode() + "-r", "data": [{"key": "tiny", "value": 0}]}]}).replace(
            '"value": 0', '"value": 1e-20000').encode()
    good = {"batch_id": key.decode(), "objects": [{"object_id": key.decode() + "-ok",
                                                              "data": [{"key": "after", "value": True}]}]}
    pub = Publisher(bp_env.topic)
    poison = [(b'{"batch_id": "x", "objects": [', "req-p-json"), (typos, "req-p-schema"), (refused, "req-p-pg")]
    created = int(time.time() * 1000) - 3_600_000  # an hour ago: the broker replaces it (LogAppendTime)
    for i, (value, rid) in enumerate(poison):
        pub.send(value, key=key, headers=[("request-id", rid.encode()), ("content-type", b"application/json")],
                 timestamp=created + i)
    pub.send(json.dumps(good).encode(), key=key)
    where = pub.flush()
    part = where[0][0]
    assert {p for p, _ in where.values()} == {part}, "same key, same partition"
    wait_applied(bp_env, part, where[3][1])

    # the message after the poison ones was applied
    assert objects_state(bp_env, [good["batch_id"]]) == expected_state([good])
    assert bp_env.query("SELECT count(*) FROM objects WHERE object_id = %s", (key.decode() + "-r",)) == [(0,)]

    letters = {l["headers"]["dlq-source-offset"]: l for l in read_dlq(bp_env, 3)}
    # the originals' timestamps, as the topic holds them (message.timestamp.type=LogAppendTime: the broker's)
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "bp-test-src-" + uuid.uuid4().hex,
                  "enable.auto.commit": False})
    c.assign([TopicPartition(bp_env.topic, part, where[0][1])])
    stamps = {}
    deadline = time.monotonic() + 30
    while len(stamps) < 3 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            stamps[m.offset()] = m.timestamp()[1]
    c.close()
    reasons = {}
    for i, (value, rid) in enumerate(poison):
        l = letters[str(where[i][1])]
        assert l["key"] == key and l["value"] == value
        h = l["headers"]
        assert h["dlq-source-topic"] == bp_env.topic
        assert h["dlq-source-partition"] == str(part)
        assert h["request-id"] == rid
        assert l["timestamp"] == stamps[where[i][1]], "a dead letter keeps the original message's timestamp"
        reasons[rid] = h["dlq-reason"]
    assert "invalid JSON" in reasons["req-p-json"]
    assert "metadta" in reasons["req-p-schema"] and "/objects/2" in reasons["req-p-schema"]
    assert "PostgreSQL" in reasons["req-p-pg"] and "numeric" in reasons["req-p-pg"]

    # the worker said so, with topic, partition, offset and request-id
    lines = [l for l in worker.log_lines() if l.get("msg", "").startswith("dead-lettered")]
    logged = {(l["partition"], l["offset"], l.get("request_id")) for l in lines if l.get("topic") == bp_env.topic}
    for i, (_, rid) in enumerate(poison):
        assert (part, where[i][1], rid) in logged


# ------------------------------------------------------------------------------------------------
# 4. PostgreSQL restarted during ingest

def test_postgresql_restart_during_ingest_loses_nothing():
    env, cluster = private_env(Env)
    try:
        env.create()
        w = start_workers(env, 1)[0]
        docs = [make_batch(40, seed=f"pg-{i}")[0] for i in range(60)]
        pub = Publisher(env.topic)
        for doc in docs[:30]:
            pub.send(json.dumps(doc).encode(), key=doc["batch_id"].encode())
        pub.flush()
        wait_until(lambda: env.query("SELECT count(*) FROM batches")[0][0] > 0, 30, "the first batches")
        cluster.stop()
        for doc in docs[30:]:  # on the broker while PostgreSQL is down
            pub.send(json.dumps(doc).encode(), key=doc["batch_id"].encode())
        pub.flush()
        # the worker keeps retrying, logging the error class, and does not exit
        wait_until(lambda: any(l.get("level") == "warn" and l.get("error_class") == "retriable"
                               for l in w.log_lines()), 30, "a logged retry")
        assert w.alive()
        cluster.start()
        wait_all_consumed(env, workers=[w])
        assert w.alive()
        assert objects_state(env) == expected_state(docs)
        assert w.stop() == 0
    finally:
        for p in env.procs:
            if p.alive():
                p.kill9()
        cluster.destroy()


# ------------------------------------------------------------------------------------------------
# 5. scaling: workers added and killed during ingest

def test_workers_added_and_killed_during_ingest_keep_state_exact():
    env = Env()
    env.create()
    try:
        workers = start_workers(env, 3)
        wait_settled(env, workers)
        docs = []
        for i in range(120):
            bid = f"scale-{i}"
            docs.append(make_batch(5 + i % 20, seed=f"v1-{i}", batch_id=bid, prefix=bid + "-")[0])
        for i in range(0, 120, 3):  # a second version of every third batch, published later
            bid = f"scale-{i}"
            docs.append(make_batch(5 + i % 20, seed=f"v2-{i}", batch_id=bid, prefix=bid + "-")[0])
        pub = Publisher(env.topic)
        victim = None
        for n, doc in enumerate(docs):
            pub.send(json.dumps(doc).encode(), key=doc["batch_id"].encode())
            time.sleep(0.01)
            if n == 50:  # a fourth worker joins (it has nothing to do: 3 partitions)
                workers.append(env.start_worker(**FAST))
                env.wait_assigned(workers[-1])
            if n == 100:  # kill -9 one that holds partitions: they must move on, nothing lost
                wait_settled(env, workers)
                victim = next(w for w in workers if owned_partitions(w))
                victim.kill9()
        where = pub.flush()
        survivors = [w for w in workers if w is not victim]
        wait_all_consumed(env, timeout=90, workers=survivors)

        assert objects_state(env) == expected_state(docs)
        # every object comes from the message of its last version, not from a replay of an older one
        last = {}
        for i, doc in enumerate(docs):
            for obj in doc["objects"]:
                last[obj["object_id"]] = where[i]
        rows = env.query("SELECT object_id, src_partition, src_offset FROM objects")
        assert {oid: (p, o) for oid, p, o in rows} == last
        assert env.query("SELECT count(*) FROM batches")[0][0] == 120
        # lag tools see the same progress shortly after (the offsets are also committed to Kafka)
        hw = high_watermarks(env.topic, env.partitions)
        wait_until(lambda: kafka_committed(env) == hw, 30, "the group's Kafka offsets to reach the end")
        # cooperative rebalancing: joining or leaving members never cost a member its whole assignment
        assert not any(l.get("msg", "").startswith("lost") for w in workers for l in w.log_lines())
        for w in survivors:
            assert w.alive()
            assert w.stop() == 0
    finally:
        env.drop()


# ------------------------------------------------------------------------------------------------
# 7. SIGTERM during ingest

def test_sigterm_during_ingest_exits_cleanly_and_nothing_is_lost():
    env = Env()
    env.create()
    try:
        # small transactions, so that the signal lands between (or in) some of them
        w = start_workers(env, 1, BP_TXN_MAX_MS="200", BP_TXN_MAX_MESSAGES="4")[0]
        docs = [make_batch(200, seed=f"term-{i}")[0] for i in range(120)]
        pub = Publisher(env.topic)
        for doc in docs:
            pub.send(json.dumps(doc).encode(), key=doc["batch_id"].encode())
        pub.flush()
        wait_until(lambda: env.query("SELECT count(*) FROM batches")[0][0] > 0, 30, "ingest to start")
        assert w.stop(signal.SIGTERM) == 0, w.logs()[-3000:]
        lines = w.log_lines()
        assert any(l.get("msg", "").startswith("leaving group") for l in lines)
        assert env.query("SELECT count(*) FROM batches")[0][0] < len(docs), "stopped too late to test anything"

        # what the table says is applied is where the next worker starts
        at_stop = committed_offsets(env)
        w2 = start_workers(env, 1)[0]
        assigned = next(l["msg"] for l in w2.log_lines() if l.get("msg", "").startswith("assigned"))
        starts = dict(x.split("@") for x in assigned[assigned.index("[") + 1:-1].split(","))
        assert starts == {str(p): str(at_stop[p]) if p in at_stop else "beginning" for p in range(env.partitions)}
        wait_all_consumed(env, workers=[w2])
        assert objects_state(env) == expected_state(docs)
        counts = dict(env.query("SELECT batch_id, count(*) FROM objects GROUP BY batch_id"))
        assert counts == {d["batch_id"]: len(d["objects"]) for d in docs}
        assert w2.stop() == 0
    finally:
        env.drop()
