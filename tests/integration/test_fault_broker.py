"""Fault injection on private Kafka brokers (kafkacluster.py; the shared broker is never touched): a broker
stopped while clients POST (503 with Retry-After while it is down, never a 2xx, and no 202 lost), one of
three brokers killed with -9 (no 202 lost, the cluster heals), the API killed with -9 with requests in
flight (every 202 it gave is on the topic and gets ingested), and the broker killed while a worker
applies (the final state is exact). docs/RELIABILITY.md, "Fault injection", says what each one proves."""
import json
import threading
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
import requests

from conftest import Env, wait_until
from kafkacluster import KafkaCluster
from test_ingest import FAST, committed_offsets, expected_state, make_batch, objects_state, typed, wait_settled


# ------------------------------------------------------------------------------------------------
# helpers

def private_env(cluster):
    """A fresh database and consumer group (shared PostgreSQL) whose topics live on the private cluster."""
    env = Env(partitions=3)
    env.vars["BP_KAFKA_BROKERS"] = cluster.bootstrap
    return env


class Outcome:
    """One POST as the client saw it: what was sent, when, and the answer (or the exception)."""

    def __init__(self, doc, body):
        self.doc = doc
        self.body = body
        self.sent = time.monotonic()
        self.answered = None
        self.status = None
        self.headers = {}
        self.json = None
        self.exc = None

    @property
    def batch_id(self):
        return self.doc["batch_id"]

    def __repr__(self):
        what = self.exc if self.exc is not None else f"{self.status} {self.json}"
        return f"<POST {self.batch_id} sent {self.sent:.3f} answered {self.answered}: {what!r}>"


class Poster(threading.Thread):
    """POSTs generated batches one after the other until halted, recording every outcome."""

    def __init__(self, url, tag, objects=(5, 30), timeout=60):
        super().__init__(daemon=True)
        self.url = url + "/api/v1/batches/"
        self.tag = tag
        self.objects = objects
        self.timeout = timeout
        self.halt = threading.Event()
        self.outcomes = []
        self.current = None  # the Outcome whose request is on the wire now
        self.error = None

    def run(self):
        session = requests.Session()
        i = 0
        try:
            while not self.halt.is_set():
                n = self.objects[0] + (i * 7919) % (self.objects[1] - self.objects[0] + 1)
                doc, body = make_batch(n, seed=f"{self.tag}-{i}")
                i += 1
                o = Outcome(doc, body)
                self.current = o
                try:
                    r = session.post(self.url, data=body, headers={"Content-Type": "application/json"},
                                     timeout=self.timeout)
                    o.status = r.status_code
                    o.headers = r.headers  # case-insensitive
                    try:
                        o.json = r.json()
                    except ValueError:
                        o.json = r.text[:500]
                except requests.RequestException as exc:
                    o.exc = exc
                    session.close()
                    session = requests.Session()
                    self.halt.wait(0.05)  # the server is gone: do not spin on "connection refused"
                o.answered = time.monotonic()
                self.current = None
                self.outcomes.append(o)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


class Posters:
    def __init__(self, url, count, tag, **kw):
        self.threads = [Poster(url, f"{tag}-{k}", **kw) for k in range(count)]
        for t in self.threads:
            t.start()

    def outcomes(self):
        return [o for t in self.threads for o in list(t.outcomes)]

    def acked(self, since=None):
        return [o for o in self.outcomes() if o.status == 202 and (since is None or o.sent >= since)]

    def in_flight(self):
        return [t.current for t in self.threads if t.current is not None]

    def halt(self):
        """Ask every client to finish after its current request (never fails: safe in a finally)."""
        for t in self.threads:
            t.halt.set()

    def stop(self, timeout=90):
        """Halt, wait for the clients and return every outcome."""
        self.halt()
        for t in self.threads:
            t.join(timeout)
            assert not t.is_alive(), "a client thread did not finish"
            assert t.error is None, t.error
        return self.outcomes()


def wait_acked(posters, count, since, timeout, what):
    wait_until(lambda: len(posters.acked(since)) >= count, timeout, f"{count} POSTs answered 202 {what}")


def assert_ingested(env, acked, timeout=120, workers=()):
    """Wait until every acked batch is in PostgreSQL with all its objects, exactly as posted, and from
    the very message the 202 named (partition, offset)."""
    docs = [o.doc for o in acked]
    ids = [d["batch_id"] for d in docs]
    want = expected_state(docs)

    def done():
        for w in workers:
            if not w.alive():
                raise AssertionError(f"worker exited {w.p.returncode}:\n{w.logs()[-3000:]}")
        return objects_state(env, ids) == want

    try:
        wait_until(done, timeout, f"the {len(docs)} acknowledged batches to be ingested")
    except AssertionError:
        got = objects_state(env, ids)
        missing = sorted({want[k][0] for k in want if k not in got})
        raise AssertionError(f"{len(missing)} acknowledged batches missing or incomplete: {missing[:10]}") from None
    assert sorted(r[0] for r in env.query("SELECT batch_id FROM batches WHERE batch_id = ANY(%s)", (ids,))) \
        == sorted(ids)
    src = {b: (p, o) for b, p, o in env.query(
        "SELECT DISTINCT batch_id, src_partition, src_offset FROM objects WHERE batch_id = ANY(%s)", (ids,))}
    wrong = [(o.batch_id, src.get(o.batch_id), where) for o in acked
             for where in [(o.json["partition"], o.json["offset"])] if src.get(o.batch_id) != where]
    assert wrong == [], f"batches ingested from another message than the acknowledged one: {wrong[:5]}"


def high_watermarks(bootstrap, topic, partitions=3):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bp-test-hw-" + uuid.uuid4().hex, "log_level": 0})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    finally:
        c.close()


def read_topic(bootstrap, topic, partitions=3, timeout=60):
    """{(partition, offset): (key, value)} of every message on the topic now."""
    hw = high_watermarks(bootstrap, topic, partitions)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bp-test-read-" + uuid.uuid4().hex,
                  "enable.auto.commit": False, "log_level": 0})
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out = {}
    deadline = time.monotonic() + timeout
    try:
        while any(o > 0 and (p, o - 1) not in out for p, o in hw.items()):
            assert time.monotonic() < deadline, f"could not read {topic} up to {hw} within {timeout}s"
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            out[(m.partition(), m.offset())] = (m.key(), m.value())
    finally:
        c.close()
    return out


def wait_all_consumed(env, bootstrap, timeout, workers=()):
    """Wait until ingest_offsets reaches every partition's high watermark."""
    hw = high_watermarks(bootstrap, env.topic, env.partitions)

    def done():
        for w in workers:
            if not w.alive():
                raise AssertionError(f"worker exited {w.p.returncode}:\n{w.logs()[-3000:]}")
        got = committed_offsets(env)
        return all(got.get(p, 0) == n for p, n in hw.items())

    wait_until(done, timeout, f"ingest_offsets to reach the high watermarks {hw}")
    return hw


@pytest.fixture(scope="module")
def kafka1():
    cluster = KafkaCluster(1)
    yield cluster
    cluster.destroy()


@pytest.fixture
def single(kafka1):
    """The private single broker (started again if an earlier test left it down) and a fresh Env on it."""
    kafka1.ensure_up()
    env = private_env(kafka1)
    try:
        env.create()
        yield kafka1, env
    finally:
        env.drop()


# ------------------------------------------------------------------------------------------------
# 1. the broker stops while clients POST

def test_broker_stopped_during_posts_gives_503_then_recovers_and_loses_no_202(single):
    cluster, env = single
    api = env.start_api(BP_PRODUCE_TIMEOUT_MS=3000)
    worker = env.start_worker(**FAST)
    env.wait_assigned(worker)
    posters = Posters(api.url, 4, "down-" + uuid.uuid4().hex[:8])
    try:
        wait_acked(posters, 20, None, 60, "before the broker stops")

        assert cluster.stop(1) in (0, 143), cluster.log_tail(1)  # SIGTERM: a controlled shutdown
        down = time.monotonic()

        def within_window():
            return [o for o in posters.outcomes() if o.sent >= down]
        wait_until(lambda: len(within_window()) >= 8, 60, "8 POSTs answered while the broker is down")
        up = time.monotonic()
        cluster.start(1)
        back = time.monotonic()
        assert api.proc.alive() and worker.alive()
        wait_acked(posters, 20, back, 120, "after the broker is back")
    finally:
        posters.halt()
    outcomes = posters.stop()

    # every POST got an HTTP answer: the API kept serving throughout
    assert [o for o in outcomes if o.exc is not None] == []
    window = [o for o in outcomes if o.sent >= down and o.answered <= up]
    print(f"{len(outcomes)} POSTs, {len(window)} while the broker was down; "
          f"{len(posters.acked())} acked, {len(posters.acked(back))} after the restart")
    assert len(window) >= 4, f"only {len(window)} POSTs were made and answered while the broker was down"
    not_503 = [o for o in window if o.status != 503 or int(o.headers.get("Retry-After", "0")) < 1
               or not o.headers.get("Content-Type", "").startswith("application/problem+json")]
    assert not_503 == [], f"answers while the broker was down that are not a 503 with Retry-After: {not_503[:5]}"
    # what could not have been acked was not acked (the strong claim: no 2xx at all in the window)
    assert [o for o in window if 200 <= o.status < 300] == []
    assert all(o.status in (202, 503) for o in outcomes), {o.status for o in outcomes}

    acked = posters.acked()
    assert_ingested(env, acked, timeout=120, workers=[worker])
    assert worker.stop() == 0
    assert api.proc.stop() == 0


# ------------------------------------------------------------------------------------------------
# 2. three brokers, one killed with -9

def create_replicated_topics(cluster, env):
    """The topics as an operator makes them: `batchpipe topics`, whose defaults on three brokers are
    replication factor 3 and min.insync.replicas 2."""
    r = env.cli("topics")
    for topic in (env.topic, env.dlq_topic):
        assert f"topic {topic}: created with {env.partitions} partitions, replication factor 3, " \
               "min.insync.replicas 2" in r.stdout, r.stdout
    assert "warning" not in r.stderr, r.stderr
    wait_until(lambda: cluster.fully_replicated([env.topic, env.dlq_topic]), 60, "the new topics to be replicated")


@pytest.fixture
def three():
    """A private three-broker cluster and a fresh Env whose topics `batchpipe topics` made (3 replicas,
    min.insync.replicas 2)."""
    cluster = KafkaCluster(3)
    env = private_env(cluster)
    try:
        create_replicated_topics(cluster, env)
        env.cli("migrate")
        yield cluster, env
    finally:
        env.drop()
        cluster.destroy()


def test_one_of_three_brokers_killed_loses_no_202_and_the_cluster_heals(three):
    cluster, env = three
    api = env.start_api()
    workers = [env.start_worker(**FAST) for _ in range(2)]
    wait_settled(env, workers, timeout=90)
    posters = Posters(api.url, 3, "kill-" + uuid.uuid4().hex[:8])
    try:
        wait_acked(posters, 20, None, 60, "before the kill")
        # the broker that leads most partitions of the topic: its partitions must fail over
        leaders = cluster.leaders(env.topic)
        victim = max(cluster.nodes(), key=lambda n: sum(1 for l in leaders.values() if l == n))
        cluster.stop(victim, hard=True)
        killed = time.monotonic()
        wait_acked(posters, 30, killed, 120, f"after broker {victim} was killed")
    finally:
        posters.halt()
    outcomes = posters.stop()
    assert all(w.alive() for w in workers), [w.logs()[-2000:] for w in workers]

    # the API kept answering (503 allowed during the failover), and every 202 is ingested in full
    assert [o for o in outcomes if o.exc is not None] == []
    assert all(o.status in (202, 503) for o in outcomes), {o.status for o in outcomes}
    acked = [o for o in outcomes if o.status == 202]
    print(f"broker {victim} killed (leaders were {leaders}); {len(outcomes)} POSTs, {len(acked)} acked, "
          f"{sum(o.sent >= killed for o in acked)} of them after the kill, "
          f"{sum(o.status == 503 for o in outcomes)} answered 503, "
          f"longest answer {max(o.answered - o.sent for o in outcomes):.1f}s")
    assert_ingested(env, acked, timeout=120, workers=workers)

    # the killed broker comes back and catches up: every replica in sync again
    cluster.start(victim)
    cluster.wait_ready()
    wait_until(lambda: cluster.fully_replicated([env.topic, env.dlq_topic, "__consumer_offsets"]), 120,
               "every partition to have its 3 replicas in sync again")
    # and the whole pipeline still works end to end
    doc, body = make_batch(5, seed="after-heal-" + uuid.uuid4().hex)
    r = api.post("/api/v1/batches/", body)
    assert r.status_code == 202, r.text
    wait_until(lambda: objects_state(env, [doc["batch_id"]]) == expected_state([doc]), 60,
               "the batch posted after the heal to be ingested")
    for w in workers:
        assert w.stop() == 0
    assert api.proc.stop() == 0


def topic_configs(cluster, topic):
    from confluent_kafka.admin import ConfigResource
    admin = cluster.admin()  # alive until the answer came
    [f] = admin.describe_configs([ConfigResource("topic", topic)]).values()
    return {k: v.value for k, v in f.result(30).items() if k in ("min.insync.replicas", "message.timestamp.type")}


def test_topics_are_durable_on_three_brokers_and_readyz_tells_a_missing_replica(three):
    cluster, env = three
    # made by `batchpipe topics` in the fixture: 3 replicas everywhere, min ISR 2, the broker's clock
    md = cluster.metadata().topics
    for topic in (env.topic, env.dlq_topic):
        assert all(len(p.replicas) == 3 for p in md[topic].partitions.values())
    assert topic_configs(cluster, env.topic) == {"min.insync.replicas": "2", "message.timestamp.type": "LogAppendTime"}
    assert topic_configs(cluster, env.dlq_topic) == {"min.insync.replicas": "2", "message.timestamp.type": "CreateTime"}
    # run again: nothing to say, nothing changed
    r = env.cli("topics")
    assert r.stdout.splitlines() == [f"topic {env.topic}: ready", f"topic {env.dlq_topic}: ready"], r.stdout
    assert "warning" not in r.stderr

    api = env.start_api()

    def replication():
        r = api.get("/readyz", timeout=10)
        return r, r.json()["checks"]["replication"]
    wait_until(lambda: (lambda r, rep: r.status_code == 200 and rep["status"] == "up")(*replication()), 30,
               "/readyz to say ready and know the replicas")
    r, rep = replication()
    assert r.status_code == 200 and rep == {"status": "up", "partitions": 3, "replication_factor": 3,
                                            "min_insync_replicas": 2, "under_replicated": 0, "below_min_isr": 0}

    cluster.stop(3)  # one of three: every partition misses a replica, two are still in sync

    def one_missing():
        r, rep = replication()
        return (r, rep) if rep["under_replicated"] == 3 else None
    r, rep = wait_until(one_missing, 90, "/readyz to report the under-replicated partitions")
    assert r.status_code == 200, r.text  # two in sync >= min.insync.replicas: writes still taken
    assert rep["status"] == "up" and rep["below_min_isr"] == 0 and "under-replicated" in rep["detail"]
    metrics = api.get("/metrics").text
    assert f'bp_kafka_partitions_under_replicated{{topic="{env.topic}"}} 3' in metrics
    doc, body = make_batch(3, seed="rf-" + uuid.uuid4().hex)
    assert api.post("/api/v1/batches/", body).status_code == 202

    # an operator asks for 3 in sync while only 2 can be: the brokers refuse writes, so not ready
    from confluent_kafka.admin import ConfigResource
    admin = cluster.admin(cluster.running())
    [f] = admin.alter_configs([ConfigResource("topic", env.topic, set_config={
        "min.insync.replicas": "3", "message.timestamp.type": "LogAppendTime"})]).values()
    f.result(30)

    def below():
        r, rep = replication()
        return (r, rep) if rep["below_min_isr"] == 3 else None
    r, rep = wait_until(below, 60, "/readyz to report the partitions below min.insync.replicas")
    assert r.status_code == 503 and r.json()["status"] == "not ready"
    assert rep["status"] == "down" and "below min.insync.replicas" in rep["detail"]
    assert int(r.headers["Retry-After"]) >= 1
    assert api.proc.stop() == 0


# ------------------------------------------------------------------------------------------------
# 3. the API killed with -9 while requests are in flight

def test_api_killed_with_requests_in_flight_never_acked_what_is_not_on_the_topic(single):
    cluster, env = single
    api = env.start_api()
    # batches of a few hundred objects keep requests on the wire long enough to be caught in flight
    posters = Posters(api.url, 12, "api9-" + uuid.uuid4().hex[:8], objects=(200, 800))
    try:
        wait_acked(posters, 20, None, 60, "before the API is killed")
        wait_until(lambda: len(posters.in_flight()) >= 4, 30, "4 POSTs in flight at once")
        api.proc.kill9()
        killed = time.monotonic()
    finally:
        posters.halt()
    outcomes = posters.stop()

    errors = [o for o in outcomes if o.exc is not None]
    print(f"{len(outcomes)} POSTs: {sum(o.status == 202 for o in outcomes)} acked, {len(errors)} errors, "
          f"{sum(o.sent < killed for o in errors)} of them in flight at the kill")
    assert [o for o in errors if o.sent < killed], "no request was in flight when the API was killed"
    # connection reset or refused, or an answer cut short: never a timeout (nothing hangs)
    assert all(isinstance(o.exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError))
               and not isinstance(o.exc, requests.Timeout) for o in errors), errors[:5]
    answered = [o for o in outcomes if o.exc is None]
    assert all(o.status in (202, 503) for o in answered), {o.status for o in answered}
    acked = [o for o in answered if o.status == 202]

    # every 202 names a message that is on the topic, keyed by its batch_id, holding the batch as posted
    messages = read_topic(cluster.bootstrap, env.topic)
    bad = []
    for o in acked:
        m = messages.get((o.json["partition"], o.json["offset"]))
        if m is None or m[0] != o.batch_id.encode() or typed(json.loads(m[1])) != typed(o.doc):
            bad.append((o.batch_id, o.json["partition"], o.json["offset"], m and m[0]))
    assert bad == [], f"{len(bad)} acknowledged batches are not on the topic as acknowledged: {bad[:5]}"

    # and a worker started now ingests them all
    worker = env.start_worker(**FAST)
    wait_all_consumed(env, cluster.bootstrap, timeout=120, workers=[worker])
    assert_ingested(env, acked, timeout=60, workers=[worker])
    assert worker.stop() == 0


# ------------------------------------------------------------------------------------------------
# 4. the worker's broker disappears while it applies

def publish_all(bootstrap, topic, docs):
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5, "log_level": 0})
    errors = []
    for doc in docs:
        body = json.dumps(doc, separators=(",", ":")).encode()
        while True:
            try:
                p.produce(topic, key=doc["batch_id"].encode(), value=body,
                          on_delivery=lambda err, msg: err is not None and errors.append(err))
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    assert p.flush(60) == 0, "messages not delivered within 60 s"
    assert errors == [], errors


def test_broker_killed_while_the_worker_applies_leaves_an_exact_final_state(single):
    cluster, env = single
    tag = uuid.uuid4().hex[:8]
    first = [make_batch(100 + (i * 37) % 300, seed=f"w-{tag}-{i}")[0] for i in range(60)]
    publish_all(cluster.bootstrap, env.topic, first)
    # small transactions: the worker is still applying when the broker goes away
    worker = env.start_worker(**dict(FAST, BP_TXN_MAX_MESSAGES="2"))

    env.wait_assigned(worker)
    # a tight poll (wait_until slows down to 0.5 s): kill the broker right after the first commit
    deadline = time.monotonic() + 60
    while sum(committed_offsets(env).values()) == 0:
        assert worker.alive(), f"worker exited {worker.p.returncode}:\n{worker.logs()[-3000:]}"
        assert time.monotonic() < deadline, "the worker committed nothing within 60 s"
        time.sleep(0.01)
    applied_at_kill = sum(committed_offsets(env).values())
    print(f"broker killed after {applied_at_kill} of {len(first)} messages were applied")
    logged_before = len(worker.log_lines())
    cluster.stop(1, hard=True)

    def noticed():
        return any(l.get("msg", "").startswith("consumer:") for l in worker.log_lines()[logged_before:])
    wait_until(noticed, 60, "the worker to notice that the broker is gone")
    assert worker.alive(), worker.logs()[-3000:]
    cluster.start(1)

    # more batches after the restart: the worker must fetch again, not only finish what it held
    second = [make_batch(20, seed=f"w2-{tag}-{i}")[0] for i in range(10)]
    publish_all(cluster.bootstrap, env.topic, second)
    hw = wait_all_consumed(env, cluster.bootstrap, timeout=120, workers=[worker])
    assert sum(hw.values()) == len(first) + len(second)
    assert applied_at_kill < len(first), "the worker had applied everything before the broker went away"
    docs = first + second
    assert objects_state(env) == expected_state(docs)
    assert dict(env.query("SELECT batch_id, count(*) FROM objects GROUP BY batch_id")) == \
        {d["batch_id"]: len(d["objects"]) for d in docs}
    assert sum(high_watermarks(cluster.bootstrap, env.dlq_topic).values()) == 0, "dead letters were written"
    assert worker.stop() == 0
