"""Latest wins by log order, not by clocks; deletes survive late messages and replays.

Everything here runs on a topic with message.timestamp.type=CreateTime (the publishers' clocks), the
worst case: within a partition a later offset must win whatever its timestamp (two API hosts with
skewed clocks, a publisher with a future or an ancient timestamp); a message whose key is not its
batch_id is a dead letter; a DELETE goes through the topic, so a message published before it and applied
after it (a lagging worker), a replay of the topic by a new group and a dead letter replayed later do
not bring the object back, while a batch posted again after its DELETE does come back."""
import glob
import json
import os
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import BROKERS, Env, wait_until
from test_ingest import FAST, high_watermarks

HOUR_MS = 3_600_000


def send(topic, value, key, partition=None, timestamp=None, headers=None):
    """Publish one message (key as given, bytes or None) and wait for the ack: (partition, offset)."""
    # murmur2 as the API and docs/TOPIC.md's publishers: a batch's messages share one partition whoever
    # sends them (librdkafka's default, crc32, would put this module's direct messages on another
    # partition than the API's for the same batch_id, e.g. on partition 2 whose clock a test pins an
    # hour ahead, and the cross-partition order would then rightly follow that clock)
    p = Producer({"bootstrap.servers": BROKERS, "enable.idempotence": True, "partitioner": "murmur2_random"})
    got = []
    kw = {}
    if partition is not None:
        kw["partition"] = partition
    if timestamp is not None:
        kw["timestamp"] = timestamp
    if isinstance(value, dict):
        value = json.dumps(value, separators=(",", ":")).encode()
    p.produce(topic, key=key, value=value, headers=headers or [],
              on_delivery=lambda err, msg: got.append((err, msg.partition(), msg.offset())), **kw)
    assert p.flush(30) == 0
    (err, part, off), = got
    assert err is None, err
    return part, off


def batch(bid, *objects):
    """A batch of (object_id, value) objects, each with one pair "v"."""
    return {"batch_id": bid, "objects": [{"object_id": o, "data": [{"key": "v", "value": v}]} for o, v in objects]}


def dlq_reasons(env, rids, timeout=30):
    """{request-id: dlq-reason} of the dead letters, once every request-id in rids has one."""
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "bp-test-dlq-" + uuid.uuid4().hex,
                  "enable.auto.commit": False})
    c.assign([TopicPartition(env.dlq_topic, p, OFFSET_BEGINNING) for p in range(env.partitions)])
    out = {}
    deadline = time.monotonic() + timeout
    try:
        while not set(rids) <= set(out) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            h = {k: v.decode() for k, v in (m.headers() or [])}
            out[h.get("request-id")] = h["dlq-reason"]
    finally:
        c.close()
    assert set(rids) <= set(out), f"dead letters of {rids} expected, found {out}"
    return out


def stored(env, oid):
    """(batch_id, value of "v") of the stored object, or None."""
    rows = env.query("SELECT batch_id, data->0->'value' FROM objects WHERE object_id = %s", (oid,))
    return rows[0] if rows else None


def wait_applied(env, part, off, group=None, timeout=30):
    group = group or env.group

    def done():
        rows = env.query("SELECT next_offset FROM ingest_offsets WHERE group_id = %s AND topic = %s AND partition = %s",
                         (group, env.topic, part))
        return rows and rows[0][0] > off
    wait_until(done, timeout, f"group {group} to apply {part}@{off}")


def wait_group_at_end(env, group, timeout=60):
    hw = high_watermarks(env.topic, env.partitions)

    def done():
        rows = dict(env.query("SELECT partition, next_offset FROM ingest_offsets WHERE group_id = %s AND topic = %s",
                              (group, env.topic)))
        return all(rows.get(p, 0) == n for p, n in hw.items())
    wait_until(done, timeout, f"group {group} to reach {hw}")


@pytest.fixture(scope="module")
def env():
    """A world whose topic keeps the publishers' timestamps (CreateTime), whatever batchpipe topics
    would choose."""
    e = Env()
    e.cli("migrate")
    admin = AdminClient({"bootstrap.servers": BROKERS})
    futures = admin.create_topics([
        NewTopic(e.topic, e.partitions, 1, config={"message.timestamp.type": "CreateTime"}),
        NewTopic(e.dlq_topic, e.partitions, 1, config={"message.timestamp.type": "CreateTime"})])
    for f in futures.values():
        f.result(30)
    yield e
    e.drop()


@pytest.fixture
def worker(env):
    w = env.start_worker(**FAST)
    env.wait_assigned(w)
    yield w
    if w.alive():
        assert w.stop() == 0, w.logs()[-3000:]


@pytest.fixture
def api(env):
    a = env.start_api()
    yield a
    if a.proc.alive():
        a.proc.stop()


# ------------------------------------------------------------------------------------------------
# order

def test_second_api_host_with_a_slow_clock_still_wins(env, worker, api):
    """Two API hosts, the second one's clock 10 s behind: the later POST is the one stored."""
    # libfaketime preloaded into the API itself (not the faketime wrapper, which forks: the API would
    # outlive the test's stop and pdeathsig); only the wall clock is set back, as NTP skew does
    libs = glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1")
    assert libs, "libfaketime not found: install Debian's faketime (ops/lib.sh does)"
    # (an ASan build wants its runtime first in the library list: let it run after the preload)
    asan = ":".join(o for o in (os.environ.get("ASAN_OPTIONS"), "verify_asan_link_order=0") if o)
    slow = env.start_api(LD_PRELOAD=libs[0], FAKETIME="-10s", FAKETIME_DONT_FAKE_MONOTONIC="1",
                         ASAN_OPTIONS=asan)
    try:
        bid, oid = "skew-" + uuid.uuid4().hex, "skew-o-" + uuid.uuid4().hex
        r = api.post("/api/v1/batches/?wait=10", batch(bid, (oid, "v1")))
        assert r.status_code == 201, r.text
        r = slow.post("/api/v1/batches/?wait=10", batch(bid, (oid, "v2")))
        assert r.status_code == 201, r.text
        assert r.json()["objects"][0]["data"] == [{"key": "v", "value": "v2"}], r.text
        assert api.get(f"/api/v1/objects/{oid}/").json()["data"] == [{"key": "v", "value": "v2"}]
    finally:
        slow.proc.stop()


def test_within_a_partition_the_later_offset_wins_whatever_its_timestamp(env, worker):
    bid = "ts-" + uuid.uuid4().hex
    oid = bid + "-o"
    now = int(time.time() * 1000)
    # on partition 2 only: on a CreateTime topic the future timestamp makes this partition's later
    # messages win moves from other partitions for an hour (why our topics use LogAppendTime), and
    # the move test below uses partitions 0 and 1
    send(env.topic, batch(bid, (oid, "future")), bid.encode(), partition=2, timestamp=now + HOUR_MS)
    part, off = send(env.topic, batch(bid, (oid, "now")), bid.encode(), partition=2)
    wait_applied(env, part, off)
    assert stored(env, oid) == (bid, "now"), "a future timestamp must not pin the object"
    # the oldest timestamp a producer can give (librdkafka reads 0 as "now")
    part, off = send(env.topic, batch(bid, (oid, "ancient")), bid.encode(), partition=2, timestamp=1)
    wait_applied(env, part, off)
    assert stored(env, oid) == (bid, "ancient"), "an ancient timestamp must still win by its offset"


def test_object_moved_to_a_batch_on_another_partition(env, worker):
    a, b = "mv-a-" + uuid.uuid4().hex, "mv-b-" + uuid.uuid4().hex
    oid = a + "-o"
    pa, _ = send(env.topic, batch(a, (oid, "in a")), a.encode(), partition=0)
    pb, off = send(env.topic, batch(b, (oid, "in b")), b.encode(), partition=1)
    assert pa != pb
    wait_applied(env, pb, off)
    wait_until(lambda: stored(env, oid) == (b, "in b"), 30, "the object to be in its new batch")


def test_key_other_than_batch_id_or_none_is_a_dead_letter(env, worker):
    bid = "key-" + uuid.uuid4().hex
    send(env.topic, batch(bid, (bid + "-1", 1)), b"not-" + bid.encode(), headers=[("request-id", b"req-key-other")])
    part, off = send(env.topic, batch(bid, (bid + "-2", 2)), None, headers=[("request-id", b"req-key-none")])
    wait_applied(env, part, off)
    reasons = dlq_reasons(env, ["req-key-other", "req-key-none"])
    for rid in ("req-key-other", "req-key-none"):
        assert "the message key must be the batch_id" in reasons[rid], reasons
    assert stored(env, bid + "-1") is None and stored(env, bid + "-2") is None
    assert env.query("SELECT count(*) FROM batches WHERE batch_id = %s", (bid,)) == [(0,)]


# ------------------------------------------------------------------------------------------------
# deletes

def test_delete_published_straight_to_the_topic(env, worker):
    bid = "del-" + uuid.uuid4().hex
    send(env.topic, batch(bid, (bid + "-1", 1), (bid + "-2", 2)), bid.encode())
    part, off = send(env.topic, {"op": "delete", "batch_id": bid, "object_id": bid + "-1"}, bid.encode())
    wait_applied(env, part, off)
    assert stored(env, bid + "-1") is None and stored(env, bid + "-2") == (bid, 2)
    # not empty: cascade false changes nothing
    part, off = send(env.topic, {"op": "delete", "batch_id": bid, "cascade": False}, bid.encode())
    wait_applied(env, part, off)
    assert stored(env, bid + "-2") == (bid, 2)
    part, off = send(env.topic, {"op": "delete", "batch_id": bid, "cascade": True}, bid.encode())
    wait_applied(env, part, off)
    assert stored(env, bid + "-2") is None
    assert env.query("SELECT count(*) FROM batches WHERE batch_id = %s", (bid,)) == [(0,)]
    # malformed delete messages are dead letters
    bad = [{"op": "remove", "batch_id": bid, "object_id": "x"},
           {"op": "delete", "batch_id": bid, "object_id": "x", "cascade": True},
           {"op": "delete", "batch_id": bid, "cascade": "yes"},
           {"op": "delete", "object_id": "x"}]
    for i, doc in enumerate(bad):
        part, off = send(env.topic, doc, bid.encode(), headers=[("request-id", f"req-bad-del-{i}".encode())])
    wait_applied(env, part, off)
    letters = dlq_reasons(env, [f"req-bad-del-{i}" for i in range(len(bad))])
    assert "op" in letters["req-bad-del-0"]
    assert "cascade" in letters["req-bad-del-1"] and "cascade" in letters["req-bad-del-2"]
    assert "batch_id" in letters["req-bad-del-3"]


def test_message_applied_after_a_delete_does_not_resurrect(env, api):
    w = env.start_worker(**FAST)
    env.wait_assigned(w)
    bid, oid = "late-" + uuid.uuid4().hex, "late-o-" + uuid.uuid4().hex
    other = "late-b-" + uuid.uuid4().hex
    assert api.post("/api/v1/batches/?wait=10", batch(bid, (oid, "v1"))).status_code == 201
    assert api.post("/api/v1/batches/?wait=10", batch(other, (other + "-o", "v1"))).status_code == 201
    assert w.stop() == 0
    # published while the workers are stopped: applied only after the DELETEs
    assert api.post("/api/v1/batches/", batch(bid, (oid, "v2"))).status_code == 202
    assert api.post("/api/v1/batches/", batch(other, (other + "-o", "v2"))).status_code == 202
    r = api.delete(f"/api/v1/objects/{oid}/")
    assert r.status_code == 204, r.text
    r = api.delete(f"/api/v1/batches/{other}/?cascade=true")
    assert r.status_code == 204, r.text
    assert api.get(f"/api/v1/objects/{oid}/").status_code == 404
    assert api.get(f"/api/v1/batches/{other}/").status_code == 404
    w = env.start_worker(**FAST)
    try:
        wait_group_at_end(env, env.group)
        assert api.get(f"/api/v1/objects/{oid}/").status_code == 404
        assert api.get(f"/api/v1/batches/{other}/").status_code == 404
        assert api.get(f"/api/v1/objects/{other}-o/").status_code == 404
        # the batch of the deleted object is still there (only the object was deleted)
        assert api.get(f"/api/v1/batches/{bid}/").json()["object_count"] == 0
    finally:
        assert w.stop() == 0


def test_batch_posted_again_after_its_delete_comes_back(env, worker, api):
    bid = "again-" + uuid.uuid4().hex
    assert api.post("/api/v1/batches/?wait=10", batch(bid, (bid + "-o", 1))).status_code == 201
    assert api.delete(f"/api/v1/batches/{bid}/").status_code == 409
    assert api.delete(f"/api/v1/batches/{bid}/?cascade=true").status_code == 204
    assert api.get(f"/api/v1/batches/{bid}/").status_code == 404
    assert api.delete(f"/api/v1/batches/{bid}/?cascade=true").status_code == 404
    r = api.post("/api/v1/batches/?wait=10", batch(bid, (bid + "-o", 2)))
    assert r.status_code == 201, r.text
    assert api.get(f"/api/v1/objects/{bid}-o/").json()["data"] == [{"key": "v", "value": 2}]


def test_replay_by_a_new_group_keeps_deletes(env, worker, api):
    gone, back = "rg-gone-" + uuid.uuid4().hex, "rg-back-" + uuid.uuid4().hex
    kept = "rg-kept-" + uuid.uuid4().hex
    for bid in (gone, back, kept):
        assert api.post("/api/v1/batches/?wait=10", batch(bid, (bid + "-1", 1), (bid + "-2", 2))).status_code == 201
    assert api.delete(f"/api/v1/batches/{gone}/?cascade=true").status_code == 204
    assert api.delete(f"/api/v1/objects/{kept}-1/").status_code == 204
    assert api.delete(f"/api/v1/batches/{back}/?cascade=true").status_code == 204
    assert api.post("/api/v1/batches/?wait=10", batch(back, (back + "-1", "again"))).status_code == 201
    wait_group_at_end(env, env.group)

    def state():
        return {oid: stored(env, oid) for b in (gone, back, kept) for oid in (b + "-1", b + "-2")}
    before = state()
    assert before == {gone + "-1": None, gone + "-2": None, back + "-1": (back, "again"), back + "-2": None,
                      kept + "-1": None, kept + "-2": (kept, 2)}
    group = "replay-" + uuid.uuid4().hex
    w = env.start_worker(BP_GROUP_ID=group, **FAST)
    try:
        wait_group_at_end(env, group)
        assert state() == before
        assert api.get(f"/api/v1/batches/{gone}/").status_code == 404
    finally:
        assert w.stop() == 0


def test_dead_letter_replayed_after_a_delete_does_not_resurrect(env, api):
    # a worker that refuses data with more than one pair: the first version is dead-lettered
    w = env.start_worker(BP_MAX_PAIRS="1", **FAST)
    env.wait_assigned(w)
    bid = "dlq-" + uuid.uuid4().hex
    oid = bid + "-o"
    doc = {"batch_id": bid, "objects": [{"object_id": oid, "data": [{"key": "a", "value": 1}, {"key": "b", "value": 2}]}]}
    part, off = send(env.topic, doc, bid.encode(), headers=[("request-id", b"req-dlq-replay")])
    wait_applied(env, part, off)
    assert api.post("/api/v1/batches/?wait=10", batch(bid, (oid, "later"))).status_code == 201
    assert api.delete(f"/api/v1/objects/{oid}/").status_code == 204
    assert w.stop() == 0
    letters = [l for l in json.loads("[" + ",".join(env.cli("dlq", "list", "--json", "--limit", "0").stdout.splitlines()) + "]")
               if l["request_id"] == "req-dlq-replay"]
    assert len(letters) == 1, letters
    w = env.start_worker(**FAST)
    try:
        r = env.cli("dlq", "replay", f"{letters[0]['partition']}:{letters[0]['offset']}")
        dest = r.stdout.split(" -> ")[1].split()[1]
        rpart, roff = (int(x) for x in dest.split("@"))
        wait_applied(env, rpart, roff)
        assert stored(env, oid) is None, "a replayed dead letter older than the delete brought the object back"
    finally:
        assert w.stop() == 0
