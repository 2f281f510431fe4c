"""Read-your-writes: POST ...?wait=N answers 201 with the stored batch (object) once an ingest worker
applied it, 202 when N seconds pass first (no worker), when PostgreSQL is down (the data is accepted
all the same) or when the server stops; the loop keeps serving while POSTs wait; bad values are 400."""
import json
import signal
import subprocess
import threading
import uuid

import pytest
import requests

from conftest import Env, wait_until
from pgcluster import private_env

PROBLEM = "application/problem+json"


def small_batch(objects=2):
    batch_id = "w-" + uuid.uuid4().hex
    return {"batch_id": batch_id,
            "objects": [{"object_id": f"{batch_id}-o{i}", "data": [{"key": "n", "value": i}, {"key": "s", "value": "x"}]}
                        for i in range(objects)]}


def post(url, path, body, timeout=60, **kw):
    return requests.post(url + path, data=json.dumps(body).encode(), timeout=timeout,
                         headers={"Content-Type": "application/json", **kw.pop("headers", {})}, **kw)


def without_ack(body):
    return {k: v for k, v in body.items()
            if k not in ("partition", "offset", "request_id", "status", "token", "receipt_url")}


def idle_topic(env):
    """A topic of its own that no worker consumes: a POST with ?wait= there can only time out."""
    topic = "bp-test-idle-" + uuid.uuid4().hex[:10]
    env.cli("topics", BP_TOPIC=topic, BP_DLQ_TOPIC=topic + ".dlq")
    return topic


@pytest.fixture(scope="module")
def with_worker(bp_env):
    worker = bp_env.start_worker()
    bp_env.wait_assigned(worker)
    api = bp_env.start_api()
    yield api
    assert api.proc.stop() == 0
    worker.stop()


@pytest.fixture(scope="module")
def no_worker(bp_env):
    """One loop thread, so that the GETs of a test share the waiting POST's loop."""
    api = bp_env.start_api(BP_TOPIC=idle_topic(bp_env), BP_HTTP_THREADS=1)
    yield api
    assert api.proc.stop() == 0


# --- a worker applies it: 201 ---------------------------------------------------------------------

def test_wait_answers_201_with_the_stored_batch_and_reads_see_it_at_once(with_worker):
    batch = small_batch(3)
    r = post(with_worker.url, "/api/v1/batches/?wait=10", batch, headers={"X-Request-Id": "rw-1"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "stored" and body["request_id"] == "rw-1"
    assert isinstance(body["partition"], int) and isinstance(body["offset"], int)
    assert r.headers["Location"].endswith(f"/api/v1/batches/{batch['batch_id']}/")
    assert body["receipt_url"].endswith(f"/api/v1/receipts/{body['token']}/")  # the 201 names its receipt too
    assert body["object_count"] == 3
    assert [o["object_id"] for o in body["objects"]] == [o["object_id"] for o in batch["objects"]]
    assert body["objects"][1]["data"] == batch["objects"][1]["data"]
    # no polling: the very next reads see it, and the 201 has the shape of GET /api/v1/batches/{id}/
    got = with_worker.get(f"/api/v1/batches/{batch['batch_id']}/")
    assert got.status_code == 200
    assert without_ack(body) == got.json()
    page = with_worker.get("/api/v1/objects/", params={"batch_id": batch["batch_id"]}).json()
    assert page["count"] == 3


def test_wait_on_a_single_object_answers_201_with_the_object(with_worker):
    obj = {"batch_id": "w-" + uuid.uuid4().hex, "object_id": "obj-" + uuid.uuid4().hex,
           "data": [{"key": "colour", "value": "red"}]}
    r = post(with_worker.url, "/api/v1/objects/?wait=10", obj)
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["Location"].endswith(f"/api/v1/objects/{obj['object_id']}/")
    got = with_worker.get(f"/api/v1/objects/{obj['object_id']}/")
    assert got.status_code == 200
    assert without_ack(body) == got.json()
    assert body["data"] == obj["data"] and body["status"] == "stored"


def test_many_concurrent_waits_all_get_201(with_worker):
    batches = [small_batch(1) for _ in range(20)]
    results = [None] * len(batches)

    def one(i):
        results[i] = post(with_worker.url, "/api/v1/batches/?wait=20", batches[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r.status_code for r in results] == [201] * len(batches), [r.text for r in results if r.status_code != 201][:2]
    assert [r.json()["batch_id"] for r in results] == [b["batch_id"] for b in batches]


def test_without_wait_it_is_still_202_at_once(with_worker):
    r = post(with_worker.url, "/api/v1/batches/", small_batch())
    assert r.status_code == 202 and r.json()["status"] == "accepted" and "wait" not in r.json()


# --- freshness: applied at once, and the waiting POST woken by the commit --------------------------

def own_topic_and_group(env):
    """A topic and a consumer group of their own (so that a worker with other settings gets every
    partition), for a worker and an API alike."""
    topic = idle_topic(env)
    return {"BP_TOPIC": topic, "BP_DLQ_TOPIC": topic + ".dlq", "BP_GROUP_ID": "bp-test-fresh-" + uuid.uuid4().hex[:8]}


def listen_backends(env):
    """(pid, query) of the API's LISTEN connections to this module's database."""
    return env.query("SELECT pid, query FROM pg_stat_activity WHERE datname = current_database()"
                     " AND application_name = 'batchpipe-api-listen' AND starts_with(query, 'LISTEN')")


def test_a_lone_batch_is_applied_at_once_however_long_a_transaction_may_fill(bp_env):
    """BP_TXN_MAX_MS bounds how long a transaction fills while messages keep coming; it is no wait imposed
    on a lone message. With a minute of it, lone batches POSTed one after the other with ?wait=20 are
    each answered 201 (stored): a worker that held its transaction open for BP_TXN_MAX_MS would let
    every wait run out first (202, timed out)."""
    own = own_topic_and_group(bp_env)
    worker = bp_env.start_worker(BP_TXN_MAX_MS="60000", BP_TXN_MAX_MESSAGES="1000", **own)
    try:
        bp_env.wait_assigned(worker)
        api = bp_env.start_api(BP_HTTP_THREADS=1, **own)
        for _ in range(3):
            batch = small_batch(1)
            r = post(api.url, "/api/v1/batches/?wait=20", batch)
            assert r.status_code == 201, r.text
            assert r.json()["objects"][0]["object_id"] == batch["objects"][0]["object_id"]
        assert api.proc.stop() == 0
    finally:
        assert worker.stop() == 0


def test_the_workers_commit_notifies_and_waits_survive_the_loss_of_the_listen_connection(bp_env, with_worker):
    """The worker announces each partition's new next_offset with NOTIFY in the transaction that moves
    it; a thread of the API with waiting POSTs LISTENs on that channel. When PostgreSQL drops that
    connection (pg_terminate_backend), waiting POSTs are still answered 201 (the poll covers the gap),
    and the API LISTENs again on a new connection."""
    others = {pid for pid, _ in listen_backends(bp_env)}  # with_worker's API listens too
    ours = lambda: [b for b in listen_backends(bp_env) if b[0] not in others]  # noqa: E731
    api = bp_env.start_api(BP_HTTP_THREADS=1)
    assert post(api.url, "/api/v1/batches/?wait=20", small_batch(1)).status_code == 201  # listens from now on
    metrics = lambda: api.get("/metrics", timeout=5).text  # noqa: E731
    wait_until(lambda: 'bp_write_wait_listening{thread="0"} 1' in metrics(), 20, "the API to LISTEN")
    (pid, listen_sql), = ours()
    channel = listen_sql.split('"')[1]

    # what the API hears, a client of PostgreSQL hears too: "PARTITION:NEXT_OFFSET" at each commit
    conn = bp_env.db()
    try:
        with conn.cursor() as cur:
            cur.execute(f'LISTEN "{channel}"')
        r = post(api.url, "/api/v1/batches/?wait=20", small_batch(1))
        assert r.status_code == 201, r.text
        part, offset = r.json()["partition"], r.json()["offset"]

        def heard():
            conn.poll()
            return any(int(n.payload.split(":")[0]) == part and int(n.payload.split(":")[1]) > offset
                       for n in conn.notifies)

        wait_until(heard, 20, f"a notification that partition {part} is past offset {offset}")
    finally:
        conn.close()

    bp_env.query("SELECT pg_terminate_backend(%s)", (pid,))
    for _ in range(3):  # answered all along: by the poll while the connection is gone
        r = post(api.url, "/api/v1/batches/?wait=20", small_batch(1))
        assert r.status_code == 201, r.text
    wait_until(lambda: [b for b in ours() if b[0] != pid], 30, "the API to LISTEN again")
    wait_until(lambda: 'bp_write_wait_listening{thread="0"} 1' in metrics(), 20, "the gauge to say so")
    r = post(api.url, "/api/v1/batches/?wait=20", small_batch(1))
    assert r.status_code == 201, r.text
    assert api.proc.stop() == 0
    msgs = [(l.get("level"), l.get("msg", "")) for l in api.proc.log_lines()]
    assert any(level == "warn" and m.startswith(f"LISTEN {channel}: ") for level, m in msgs), msgs[-20:]
    assert ("info", f"LISTEN {channel}: listening again") in msgs


# --- nobody applies it: 202 after the bound -------------------------------------------------------

def test_wait_without_a_worker_answers_202_and_the_loop_keeps_serving(no_worker):
    batch = small_batch()
    result = {}

    def waiting_post():
        try:
            result["r"] = post(no_worker.url, "/api/v1/batches/?wait=2", batch)
        except Exception as exc:  # noqa: BLE001 - reported below
            result["exc"] = exc

    t = threading.Thread(target=waiting_post)
    t.start()
    answered_meanwhile = 0
    with requests.Session() as s:
        while t.is_alive():
            assert s.get(no_worker.url + "/api/v1/", timeout=1.5).status_code == 200
            other = post(no_worker.url, "/api/v1/batches/", small_batch(1), timeout=1.5)
            assert other.status_code == 202
            if t.is_alive():
                answered_meanwhile += 1
    t.join()
    assert "exc" not in result, result
    r = result["r"]
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "accepted" and body["wait"] == "timed out"
    assert body["batch_id"] == batch["batch_id"] and body["objects"] == 2
    assert answered_meanwhile >= 3


def test_wait_follows_the_workers_own_group_not_another_one(bp_env):
    """Another consumer group (a replay into the same database, a second deployment) applies the topic
    while the workers' own group (BP_GROUP_ID) is stopped: ?wait= must not take the other group's
    progress for its own, so the POST ends as a timed-out 202, never a 201."""
    topic = idle_topic(bp_env)
    other = bp_env.start_worker(BP_TOPIC=topic, BP_DLQ_TOPIC=topic + ".dlq",
                                BP_GROUP_ID="bp-test-replay-" + uuid.uuid4().hex[:8])
    try:
        bp_env.wait_assigned(other)
        api = bp_env.start_api(BP_TOPIC=topic, BP_DLQ_TOPIC=topic + ".dlq", BP_HTTP_THREADS=1)
        # the other group does apply what is posted (so its ingest_offsets rows move past the POST)
        first = small_batch(1)
        assert post(api.url, "/api/v1/batches/", first).status_code == 202
        wait_until(lambda: api.get(f"/api/v1/batches/{first['batch_id']}/").status_code == 200, 30,
                   "the other group's worker to apply a batch")
        batch = small_batch(2)
        r = post(api.url, "/api/v1/batches/?wait=2", batch)
        assert r.status_code == 202, r.text
        assert r.json()["wait"] == "timed out"
        assert api.proc.stop() == 0
    finally:
        other.stop()


@pytest.mark.parametrize("bad", ["abc", "-1", "10000", "2.5", ""])
def test_bad_wait_values_are_400(no_worker, bad):
    r = post(no_worker.url, f"/api/v1/batches/?wait={bad}", small_batch())
    assert r.status_code == 400 and r.headers["Content-Type"] == PROBLEM
    assert "wait" in r.json()["detail"]
    r = post(no_worker.url, f"/api/v1/objects/?wait={bad}",
             {"batch_id": "b", "object_id": "o", "data": [{"key": "k", "value": 1}]})
    assert r.status_code == 400 and "wait" in r.json()["detail"]


def test_sigterm_answers_a_waiting_post_202_and_exits_0(bp_env):
    api = bp_env.start_api(BP_TOPIC=idle_topic(bp_env), BP_HTTP_THREADS=1, BP_LOG_LEVEL="debug",
                           BP_SHUTDOWN_TIMEOUT_MS=20000)
    rid = "wait-term-" + uuid.uuid4().hex
    result = {}

    def waiting_post():
        try:
            result["r"] = post(api.url, "/api/v1/batches/?wait=30", small_batch(), headers={"X-Request-Id": rid})
        except Exception as exc:  # noqa: BLE001 - reported below
            result["exc"] = exc

    t = threading.Thread(target=waiting_post)
    t.start()
    # the broker acked it and it waits for the workers: visible in /metrics
    wait_until(lambda: 'bp_write_waiting{thread="0"} 1' in api.get("/metrics", timeout=5).text, 20,
               "the POST to wait")
    assert api.proc.stop(signal.SIGTERM, timeout=30) == 0
    t.join(30)
    assert "exc" not in result, f"the client lost its answer: {result.get('exc')!r}"
    r = result["r"]
    assert r.status_code == 202, r.text
    assert r.json()["wait"] == "shutting down"
    assert not any("still in flight" in l.get("msg", "") for l in api.proc.log_lines())


def test_client_that_goes_away_while_waiting_is_forgotten(bp_env):
    """An HTTP/2 client gives up during its wait: the server drops the waiting POST at once (nothing is
    left in flight to hold up a stop)."""
    api = bp_env.start_api(BP_TOPIC=idle_topic(bp_env), BP_HTTP_THREADS=1, BP_SHUTDOWN_TIMEOUT_MS=20000,
                           BP_HTTP2_CLEARTEXT=1)
    curl = subprocess.Popen(["curl", "-sS", "--http2-prior-knowledge", "--max-time", "3",
                             "-H", "Content-Type: application/json", "--data-binary", json.dumps(small_batch()),
                             api.url + "/api/v1/batches/?wait=30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    metrics = lambda: api.get("/metrics", timeout=5).text  # noqa: E731
    wait_until(lambda: 'bp_write_waiting{thread="0"} 1' in metrics(), 10, "the POST to wait")
    assert curl.wait(30) == 28  # curl's "operation timed out": it went away without an answer
    wait_until(lambda: 'bp_write_waiting{thread="0"} 0' in metrics()
               and 'bp_http_inflight_requests{thread="0"} 0' in metrics(), 10, "the waiting POST to be dropped")
    assert api.proc.stop() == 0
    assert not any("still in flight" in l.get("msg", "") for l in api.proc.log_lines())


# --- PostgreSQL goes away while a POST waits: 202, not 503 ----------------------------------------

def test_postgres_down_during_a_wait_answers_202():
    env, cluster = private_env(Env)
    try:
        env.create()
        api = env.start_api(BP_TOPIC=idle_topic(env), BP_HTTP_THREADS=1)
        result = {}

        def waiting_post():
            try:
                result["r"] = post(api.url, "/api/v1/batches/?wait=30", small_batch())
            except Exception as exc:  # noqa: BLE001 - reported below
                result["exc"] = exc

        t = threading.Thread(target=waiting_post)
        t.start()
        wait_until(lambda: 'bp_write_waiting{thread="0"} 1' in api.get("/metrics", timeout=5).text, 20,
                   "the POST to wait")
        cluster.stop()
        t.join(40)
        assert not t.is_alive() and "exc" not in result, result
        r = result["r"]
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "accepted" and r.json()["wait"] == "database unavailable"
        assert api.proc.stop() == 0
    finally:
        for p in env.procs:
            if p.alive():
                p.kill9()
        cluster.destroy()
