"""Operating the ingest worker: its health port (BP_HEALTH_PORT) answers /healthz while the process
lives, /readyz only while it has partitions and PostgreSQL answers (503 problem+json naming what is
missing otherwise, also while a transaction waits for its retry), and /metrics counts what a
transaction did, the retries and the dead letters, and reports each assigned partition's lag. Real
broker and PostgreSQL; a private PostgreSQL cluster is stopped and started for the readiness test."""
import json
import re
import signal
import socket
import uuid

import pytest
import requests

from conftest import Env, free_port, wait_until
from pgcluster import private_env
from test_ingest import FAST, Publisher, committed_offsets, high_watermarks, make_batch, wait_all_consumed

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Health:
    """The health port of one worker process."""

    def __init__(self, proc, port):
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path, method="GET"):
        return requests.request(method, self.url + path, timeout=5)

    def answers(self):
        if not self.proc.alive():
            raise AssertionError(f"worker exited ({self.proc.p.returncode}):\n{self.proc.logs()[-4000:]}")
        return self.get("/healthz").status_code == 200

    def readyz(self):
        """(status code, body) of /readyz, its format checked."""
        r = self.get("/readyz")
        assert r.status_code in (200, 503), r.text
        body = r.json()
        assert set(body["checks"]) >= {"partitions", "postgresql", "transactions"}, body
        if r.status_code == 200:
            assert r.headers["Content-Type"] == "application/json"
            assert body["status"] == "ready"
            assert all(c["status"] == "up" for c in body["checks"].values()), body
        else:
            assert r.headers["Content-Type"] == "application/problem+json"
            assert body["status"] == 503 and body["title"] == "Service Unavailable"
            assert body["detail"].startswith("not ready: ")
            assert r.headers["Retry-After"] == "1"
            down = [name for name, c in body["checks"].items() if c["status"] == "down"]
            assert down, body
            for name in down:  # the detail names every check that is down
                assert f"{name}: {body['checks'][name]['detail']}" in body["detail"], body
        return r.status_code, body

    def ready(self):
        return self.readyz()[0] == 200

    def down_because(self, check):
        """The 503 body when it names check as down, else None."""
        status, body = self.readyz()
        return body if status == 503 and body["checks"][check]["status"] == "down" else None

    def scrape(self):
        """{(name, ((label, value), ...)): value} of /metrics."""
        r = self.get("/metrics")
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        out = {}
        for line in r.text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = SAMPLE.match(line)
            assert m, line
            out[(m.group(1), tuple(sorted(LABEL.findall(m.group(2) or ""))))] = float(m.group(3))
        return out


def value(samples, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"{name}{labels} is not in /metrics"
    return samples[key]


def lags(samples, topic):
    """{partition: lag} of the bp_ingest_consumer_lag series of topic."""
    out = {}
    for (name, labels), v in samples.items():
        if name == "bp_ingest_consumer_lag":
            d = dict(labels)
            assert set(d) == {"topic", "partition"}, labels
            if d["topic"] == topic:
                out[int(d["partition"])] = v
    return out


def port_closed(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def start(env, **extra):
    """A worker with a health port of its own (FAST settings unless overridden), answering /healthz."""
    port = free_port()
    proc = env.start_worker(BP_HEALTH_PORT=port, **dict(FAST, **extra))
    h = Health(proc, port)
    wait_until(h.answers, 30, "the worker's /healthz to answer")
    return h


def stop(h):
    """SIGTERM: the worker exits 0 and its health port is closed."""
    assert h.proc.stop(signal.SIGTERM) == 0, h.proc.logs()[-3000:]
    assert port_closed(h.port)


def publish_docs(topic, docs, rid_prefix=None):
    pub = Publisher(topic)
    for i, doc in enumerate(docs):
        headers = [("request-id", f"{rid_prefix}-{i}".encode())] if rid_prefix else None
        pub.send(json.dumps(doc).encode(), key=doc["batch_id"].encode(), headers=headers)
    return pub.flush()


@pytest.fixture(scope="module")
def worker(bp_env):
    h = start(bp_env)
    yield h
    if h.proc.alive():
        assert h.proc.stop() == 0, h.proc.logs()[-3000:]


# ------------------------------------------------------------------------------------------------

def test_a_worker_without_partitions_is_alive_but_not_ready(bp_env):
    # a topic that does not exist: the group never assigns anything, so the state is stable
    h = start(bp_env, BP_TOPIC="bp-test-missing-" + uuid.uuid4().hex[:10],
              BP_GROUP_ID="bp-test-group-" + uuid.uuid4().hex[:10])
    assert h.get("/healthz").json() == {"status": "ok"}
    body = wait_until(lambda: h.down_because("partitions"), 10, "/readyz to say no partitions")
    assert body["checks"]["partitions"] == {"status": "down", "detail": "none assigned", "assigned": 0}
    assert "partitions: none assigned" in body["detail"]
    samples = h.scrape()
    assert value(samples, "bp_ingest_assigned_partitions") == 0
    assert value(samples, "bp_ingest_ready") == 0
    assert not any(name == "bp_ingest_consumer_lag" for name, _ in samples)
    # only the three routes, only GET and HEAD
    r = h.get("/readyz", method="POST")
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
    assert r.headers["Content-Type"] == "application/problem+json"
    r = h.get("/api/v1/")
    assert r.status_code == 404 and r.json()["status"] == 404
    assert h.get("/healthz", method="HEAD").status_code == 200
    stop(h)


def test_ready_once_partitions_are_assigned(bp_env, worker):
    first, body = worker.readyz()
    if first == 503:  # seen before the assignment (usually: the health port starts before subscribing)
        assert body["checks"]["partitions"]["status"] == "down" or body["checks"]["postgresql"]["status"] == "down"
    wait_until(worker.ready, 60, "/readyz to say ready")
    status, body = worker.readyz()
    assert body["checks"] == {"partitions": {"status": "up", "assigned": 3}, "postgresql": {"status": "up"},
                              "transactions": {"status": "up"}}
    samples = worker.scrape()
    assert value(samples, "bp_ingest_assigned_partitions") == 3
    assert value(samples, "bp_ingest_ready") == 1
    assert value(samples, "bp_ingest_rebalance_partitions_total", event="assigned") == 3


def test_metrics_count_applied_batches_and_lag_returns_to_zero(bp_env, worker):
    wait_until(worker.ready, 60, "/readyz to say ready")
    before = worker.scrape()
    docs = [make_batch(3 + 7 * i, seed=f"ops-{i}")[0] for i in range(12)]
    objects = sum(len(d["objects"]) for d in docs)
    publish_docs(bp_env.topic, docs, rid_prefix="req-ops")

    def delta(samples, name, **labels):
        return value(samples, name, **labels) - value(before, name, **labels)

    wait_until(lambda: delta(worker.scrape(), "bp_ingest_messages_applied_total") >= len(docs), 60,
               "the applied-messages counter to move")
    hw = wait_all_consumed(bp_env, workers=[worker.proc])
    after = worker.scrape()
    assert delta(after, "bp_ingest_messages_applied_total") == len(docs)
    assert delta(after, "bp_ingest_objects_applied_total") == objects
    assert delta(after, "bp_ingest_messages_skipped_total") == 0
    txns = delta(after, "bp_ingest_transaction_messages_count")
    assert 0 < txns <= len(docs)
    assert delta(after, "bp_ingest_transaction_messages_sum") == len(docs)  # every message in one of them
    assert delta(after, "bp_ingest_transaction_objects_sum") == objects
    assert delta(after, "bp_ingest_transaction_duration_seconds_count") == txns
    assert delta(after, "bp_ingest_transaction_duration_seconds_sum") > 0

    # one lag series per assigned partition, 0 once everything is committed
    wait_until(lambda: lags(worker.scrape(), bp_env.topic) == {p: 0 for p in range(bp_env.partitions)}, 30,
               "the lag of every partition to be reported as 0")
    assert committed_offsets(bp_env) == hw

    # the log line of each applied batch carries the request id it came with
    logged = {l.get("request_id") for l in worker.proc.log_lines() if l.get("msg", "").startswith("applied a batch")}
    assert {f"req-ops-{i}" for i in range(len(docs))} <= logged


def test_dead_letters_are_counted_by_reason(bp_env, worker):
    before = worker.scrape()
    key = b"ops-poison-" + uuid.uuid4().hex.encode()
    refused = json.dumps({"batch_id": key.decode(), "objects": [
        {"object_id": key.decode() + "-r", "data": [{"key": "tiny", "value": 0}]}]}).replace(
            '"value": 0', '"value": 1e-20000').encode()  # valid JSON, but beyond PostgreSQL's numeric
    pub = Publisher(bp_env.topic)
    pub.send(b'{"batch_id": "x", "objects": [', key=key)
    pub.send(refused, key=key)
    pub.flush()

    def dead(reason, samples=None):
        samples = samples or worker.scrape()
        return (value(samples, "bp_ingest_dead_letters_total", reason=reason)
                - value(before, "bp_ingest_dead_letters_total", reason=reason))

    wait_until(lambda: dead("invalid") == 1 and dead("refused") == 1, 60, "both dead letters to be counted")
    wait_all_consumed(bp_env, workers=[worker.proc])
    assert worker.ready()


def test_each_worker_reports_the_lag_of_its_own_partitions_only(bp_env, worker):
    """A second worker joins: the partitions it takes stop being reported by the first one (their
    series disappear there), and come back when it leaves."""
    wait_until(lambda: len(lags(worker.scrape(), bp_env.topic)) == bp_env.partitions, 30, "all lag series")
    other = start(bp_env)

    def split():
        mine, theirs = lags(worker.scrape(), bp_env.topic), lags(other.scrape(), bp_env.topic)
        return (mine, theirs) if mine and theirs and len(mine) + len(theirs) == bp_env.partitions else None

    mine, theirs = wait_until(split, 60, "the partitions to be shared by the two workers")
    assert set(mine) | set(theirs) == set(range(bp_env.partitions)) and not set(mine) & set(theirs)
    samples = worker.scrape()
    assert value(samples, "bp_ingest_assigned_partitions") == len(mine)
    assert value(samples, "bp_ingest_rebalance_partitions_total", event="revoked") >= len(theirs)
    wait_until(other.ready, 30, "the second worker to be ready")
    stop(other)
    wait_until(lambda: set(lags(worker.scrape(), bp_env.topic)) == set(range(bp_env.partitions)), 60,
               "the first worker to report every partition again")
    wait_until(worker.ready, 30, "the first worker to be ready")


def test_a_restarted_worker_reports_the_lag_it_starts_with(bp_env, worker):
    """The lag is the broker's end minus what PostgreSQL says is committed: a new worker that holds
    its first transaction open (BP_TXN_MAX_MS and BP_TXN_LINGER_MS of a minute) reports exactly what was published while no
    worker ran, then commits it on SIGTERM."""
    wait_all_consumed(bp_env, workers=[worker.proc])
    stop(worker)
    docs = [make_batch(4, seed=f"ops-late-{i}")[0] for i in range(9)]
    publish_docs(bp_env.topic, docs)
    hw = high_watermarks(bp_env.topic, bp_env.partitions)
    committed = committed_offsets(bp_env)
    expected = {p: hw[p] - committed.get(p, 0) for p in range(bp_env.partitions)}
    assert sum(expected.values()) == len(docs)

    h = start(bp_env, BP_TXN_MAX_MS="60000", BP_TXN_LINGER_MS="60000", BP_TXN_MAX_MESSAGES="1000")
    wait_until(lambda: lags(h.scrape(), bp_env.topic) == expected, 30, f"the lag to be reported as {expected}")
    wait_until(h.ready, 30, "/readyz to say ready while the transaction fills")
    assert committed_offsets(bp_env) == committed, "nothing may be committed before the transaction closes"
    stop(h)  # the transaction in hand is committed on the way out
    assert committed_offsets(bp_env) == hw
    assert bp_env.query("SELECT count(*) FROM batches WHERE batch_id = ANY(%s)",
                        ([d["batch_id"] for d in docs],)) == [(len(docs),)]


def test_readiness_follows_postgresql_and_retries_are_counted():
    env, cluster = private_env(Env)
    try:
        env.create()
        h = start(env)
        wait_until(h.ready, 60, "/readyz to say ready")
        wait_until(lambda: lags(h.scrape(), env.topic) == {p: 0 for p in range(env.partitions)}, 30,
                   "the lag of every partition to be reported (as 0)")
        before = h.scrape()

        cluster.stop()
        doc = make_batch(5, seed="ops-pg-down")[0]
        (part, _), = publish_docs(env.topic, [doc]).values()
        body = wait_until(lambda: h.down_because("postgresql"), 30, "/readyz to say PostgreSQL is down")
        assert body["checks"]["postgresql"]["detail"] == "unreachable"
        wait_until(lambda: h.down_because("transactions"), 30, "/readyz to say a transaction waits for a retry")
        def retries(samples):
            return value(samples, "bp_ingest_retries_total", **{"class": "retriable"})

        wait_until(lambda: retries(h.scrape()) > retries(before), 30, "the retries counter to move")
        assert lags(h.scrape(), env.topic)[part] == 1, "the batch waits: the lag shows it"
        assert value(h.scrape(), "bp_ingest_ready") == 0
        assert h.proc.alive() and h.get("/healthz").status_code == 200  # alive all along

        cluster.start()
        wait_until(h.ready, 60, "/readyz to say ready again")
        wait_until(lambda: env.query("SELECT count(*) FROM objects WHERE batch_id = %s", (doc["batch_id"],))
                   == [(5,)], 30, "the batch to be applied")
        wait_until(lambda: lags(h.scrape(), env.topic) == {p: 0 for p in range(env.partitions)}, 30,
                   "the lag to return to 0")
        after = h.scrape()
        assert value(after, "bp_ingest_messages_applied_total") - value(before, "bp_ingest_messages_applied_total") == 1
        stop(h)
    finally:
        for p in env.procs:
            if p.alive():
                p.kill9()
        cluster.destroy()
