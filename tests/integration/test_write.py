"""The write path: POST /api/v1/batches/ and /api/v1/objects/ answer 202 only once the broker acked,
publish exactly the validated batch keyed by batch_id with the request id as a header, refuse bad
bodies with problem+json without publishing anything, and stay responsive and bounded when the
broker is unreachable or the server is stopping.

The topic is read back with a plain Kafka consumer; the ingest worker is not involved."""
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from confluent_kafka import Consumer, TopicPartition

from conftest import BROKERS, FIXTURES, free_port, wait_until

PROBLEM_CONTENT_TYPE = "application/problem+json"


# --- helpers -------------------------------------------------------------------------------------

def fixture_bytes(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def fixture_json(name):
    return json.loads(fixture_bytes(name))


def small_batch(batch_id=None, objects=2):
    batch_id = batch_id or "b-" + uuid.uuid4().hex
    return {"batch_id": batch_id,
            "objects": [{"object_id": f"{batch_id}-o{i}", "data": [{"key": "n", "value": i}]}
                        for i in range(objects)]}


def reader():
    return Consumer({"bootstrap.servers": BROKERS, "group.id": "bp-test-write-reader-" + uuid.uuid4().hex,
                     "enable.auto.commit": False, "enable.partition.eof": False})


def read_message(topic, partition, offset, timeout=30):
    """The message at (topic, partition, offset), read with a fresh consumer."""
    c = reader()
    try:
        c.assign([TopicPartition(topic, partition, offset)])

        def got():
            m = c.poll(0.5)
            if m is not None and m.error() is None and m.offset() == offset:
                return m
            return None
        return wait_until(got, timeout, f"message {topic}/{partition}@{offset}")
    finally:
        c.close()


def high_watermarks(env):
    c = reader()
    try:
        return [c.get_watermark_offsets(TopicPartition(env.topic, p), timeout=10)[1]
                for p in range(env.partitions)]
    finally:
        c.close()


def headers_of(msg):
    return {k: v.decode() for k, v in (msg.headers() or [])}


def assert_problem(r, status):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == PROBLEM_CONTENT_TYPE
    body = r.json()
    assert body["status"] == status
    assert body["detail"]
    return body


def post_json(api, path, body, **kw):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **kw.pop("headers", {})}
    return api.session.post(api.url + path, data=data, headers=headers, timeout=kw.pop("timeout", 60), **kw)


@pytest.fixture(scope="module")
def write_api(bp_env):
    a = bp_env.start_api()
    yield a
    if a.proc.alive():
        assert a.proc.stop() == 0


# --- accepted batches ----------------------------------------------------------------------------

def test_valid_batch_is_acked_and_published_as_sent(write_api, bp_env):
    batch = fixture_json("valid_batch.json")
    rid = "test-" + uuid.uuid4().hex
    r = post_json(write_api, "/api/v1/batches/", batch, headers={"X-Request-Id": rid})
    assert r.status_code == 202, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.headers["X-Request-Id"] == rid
    body = r.json()
    assert body["batch_id"] == batch["batch_id"]
    assert body["objects"] == len(batch["objects"])
    assert body["status"] == "accepted"
    assert body["request_id"] == rid
    # Location names the receipt (what became of the message); url the batch
    assert r.headers["Location"] == body["receipt_url"] == f"{write_api.url}/api/v1/receipts/{body['token']}/"
    assert body["url"] == f"{write_api.url}/api/v1/batches/{batch['batch_id']}/"

    msg = read_message(bp_env.topic, body["partition"], body["offset"])
    assert msg.key().decode() == batch["batch_id"]
    assert json.loads(msg.value()) == batch
    assert b"\n" not in msg.value()  # compact JSON
    hdrs = headers_of(msg)
    assert hdrs["request-id"] == rid
    assert hdrs["content-type"] == "application/json"


def test_request_id_is_generated_when_the_client_sends_none(write_api, bp_env):
    r = post_json(write_api, "/api/v1/batches", small_batch())  # no trailing slash
    assert r.status_code == 202, r.text
    rid = r.headers["X-Request-Id"]
    assert rid and r.json()["request_id"] == rid
    msg = read_message(bp_env.topic, r.json()["partition"], r.json()["offset"])
    assert headers_of(msg)["request-id"] == rid


def test_batch_id_with_reserved_characters_is_percent_encoded_in_its_url(write_api):
    batch = small_batch(batch_id="shop/2024 week#3")
    r = post_json(write_api, "/api/v1/batches/", batch)
    assert r.status_code == 202, r.text
    assert r.json()["url"].endswith("/api/v1/batches/shop%2F2024%20week%233/")


def test_single_object_is_published_as_a_one_object_batch(write_api, bp_env):
    obj = fixture_json("object_single.json")
    r = write_api.session.post(write_api.url + "/api/v1/objects", data=fixture_bytes("object_single.json"),
                               headers={"Content-Type": "application/json; charset=UTF-8"}, timeout=60)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["batch_id"] == obj["batch_id"] and body["object_id"] == obj["object_id"]
    assert body["objects"] == 1
    assert body["url"].endswith(f"/api/v1/objects/{obj['object_id']}/")
    assert r.headers["Location"] == body["receipt_url"]
    msg = read_message(bp_env.topic, body["partition"], body["offset"])
    assert msg.key().decode() == obj["batch_id"]
    assert json.loads(msg.value()) == {"batch_id": obj["batch_id"],
                                       "objects": [{"object_id": obj["object_id"], "data": obj["data"]}]}


def test_one_batch_id_always_lands_on_one_partition(write_api):
    batch = small_batch()
    partitions = {post_json(write_api, "/api/v1/batches/", batch).json()["partition"] for _ in range(5)}
    assert len(partitions) == 1


def test_wait_parameter_is_validated(write_api):
    assert post_json(write_api, "/api/v1/batches/?wait=0", small_batch()).status_code == 202
    assert post_json(write_api, "/api/v1/batches/?wait=1", small_batch()).status_code == 202
    for bad in ("abc", "-1", "31", "1.5", ""):
        body = assert_problem(post_json(write_api, f"/api/v1/batches/?wait={bad}", small_batch()), 400)
        assert "wait" in body["detail"]


def test_fifty_concurrent_posts_are_all_acked_at_distinct_offsets(write_api):
    def one(i):
        with requests.Session() as s:
            r = s.post(write_api.url + "/api/v1/batches/", data=json.dumps(small_batch(objects=3)),
                       headers={"Content-Type": "application/json"}, timeout=60)
            return r.status_code, r.json()

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(50)))
    assert [status for status, _ in results] == [202] * 50
    places = {(b["partition"], b["offset"]) for _, b in results}
    assert len(places) == 50


def test_one_megabyte_batch_of_3000_objects_is_accepted(write_api, bp_env):
    gen = os.path.join(FIXTURES, "gen_batch.py")
    raw = subprocess.run([sys.executable, gen, "--objects", "3000", "--pairs", "4", "--vary-pairs", "--seed", "7"],
                         capture_output=True, check=True, timeout=60).stdout
    assert len(raw) > 900_000
    r = post_json(write_api, "/api/v1/batches/", raw)
    assert r.status_code == 202, r.text[:2000]
    assert r.json()["objects"] == 3000
    msg = read_message(bp_env.topic, r.json()["partition"], r.json()["offset"])
    assert json.loads(msg.value()) == json.loads(raw)


# --- refused bodies: 4xx problem+json, nothing published ------------------------------------------

def test_both_mistakes_of_the_original_samples_are_reported_and_nothing_is_published(write_api, bp_env):
    before = high_watermarks(bp_env)
    r = post_json(write_api, "/api/v1/batches/", fixture_bytes("batch_typos.json"))
    body = assert_problem(r, 400)
    pointers = {e["pointer"] for e in body["errors"]}
    assert "/objects/2/metadta" in pointers and "/objects/2" in pointers
    assert "/objects/4/data/1/kye" in pointers and "/objects/4/data/1" in pointers
    assert r.headers["X-Request-Id"]
    assert high_watermarks(bp_env) == before


NESTED = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("name,content_type,body,status,pointer,words", [
    ("malformed JSON", "application/json", b'{"batch_id": "x", "objects": [', 400, "", "invalid JSON"),
    ("not JSON at all", "application/json", b"batch_id=x", 400, "", "invalid JSON"),
    ("text/plain", "text/plain", b'{"batch_id": "x", "objects": []}', 415, None, "application/json"),
    ("form data", "application/x-www-form-urlencoded", b"a=b", 415, None, "application/json"),
    ("latin-1 JSON", "application/json; charset=iso-8859-1", b'{}', 415, None, "application/json"),
    ("no content type", None, b'{}', 415, None, "Content-Type"),
    ("empty body", "application/json", b"", 400, None, "empty"),
    ("duplicate object_id", "application/json",
     json.dumps({"batch_id": "dup", "objects": [{"object_id": "a", "data": []},
                                                {"object_id": "a", "data": []}]}).encode(),
     400, "/objects/1/object_id", "already appears"),
    ("empty batch_id", "application/json", json.dumps({"batch_id": "", "objects": [
        {"object_id": "a", "data": []}]}).encode(), 400, "/batch_id", "empty"),
    ("300-byte object_id", "application/json", json.dumps({"batch_id": "long", "objects": [
        {"object_id": "x" * 300, "data": []}]}).encode(), 400, "/objects/0/object_id", "longer than 255"),
    ("nesting 100,000 deep", "application/json", NESTED, 400, "", "nesting"),
    ("invalid UTF-8", "application/json", b'{"batch_id": "\xff\xfe", "objects": []}', 400, "", "invalid JSON"),
    ("NUL in a string", "application/json",
     b'{"batch_id": "a", "objects": [{"object_id": "b", "data": [{"key": "k", "value": "x\\u0000y"}]}]}',
     400, "", "\\u0000"),
    ("an array, not a batch", "application/json", b"[]", 400, "", "JSON object"),
    ("no objects", "application/json", b'{"batch_id": "a", "objects": []}', 400, "/objects", "at least 1"),
])
def test_bad_bodies_are_refused_with_a_clear_problem(write_api, bp_env, name, content_type, body, status,
                                                     pointer, words):
    before = high_watermarks(bp_env)
    headers = {"Content-Type": content_type} if content_type else {}
    r = write_api.session.post(write_api.url + "/api/v1/batches/", data=body, headers=headers, timeout=60)
    problem = assert_problem(r, status)
    if pointer is None:
        assert words in problem["detail"], problem
    else:
        hits = [e for e in problem["errors"] if e["pointer"] == pointer and words in e["message"]]
        assert hits, problem
    # the server keeps answering, and nothing reached the topic
    assert write_api.get("/api/v1/").status_code == 200
    assert high_watermarks(bp_env) == before


def test_single_object_with_a_misspelt_member_is_refused(write_api):
    body = {"batch_id": "b", "object_id": "o", "dta": []}
    problem = assert_problem(post_json(write_api, "/api/v1/objects/", body), 400)
    pointers = {e["pointer"] for e in problem["errors"]}
    assert pointers == {"", "/dta"}


def test_body_over_the_limit_is_413_and_the_server_keeps_answering(bp_env, tmp_path):
    api = bp_env.start_api(BP_MAX_BODY_BYTES="64KiB")
    try:
        big = tmp_path / "big.json"
        big.write_text(json.dumps(small_batch(objects=20_000)))
        assert big.stat().st_size > 1_000_000
        # curl, like most clients, announces a large body (Expect: 100-continue) and sends it only if the
        # server does not answer first. h2o answers 413 for a declared Content-Length over the limit
        # before reading the body (api/errors.c turns its text into problem+json). A client that pushes
        # the whole body regardless may see its connection reset instead: h2o closes without reading it.
        out = tmp_path / "answer.json"
        r = subprocess.run(["curl", "-sS", "-o", str(out), "-w", "%{http_code} %{content_type}", "-H",
                            "Expect: 100-continue", "-H", "Content-Type: application/json", "--data-binary",
                            f"@{big}", api.url + "/api/v1/batches/"], capture_output=True, text=True, timeout=60)
        assert r.stdout == "413 application/problem+json", r
        problem = json.loads(out.read_text())
        assert problem["status"] == 413 and "65536" in problem["detail"]
        fresh = requests.Session()
        ok = fresh.post(api.url + "/api/v1/batches/", data=json.dumps(small_batch()),
                        headers={"Content-Type": "application/json"}, timeout=60)
        assert ok.status_code == 202, ok.text
        assert fresh.get(api.url + "/api/v1/", timeout=10).status_code == 200
    finally:
        assert api.proc.stop() == 0


# --- broker trouble and shutdown -----------------------------------------------------------------

def test_unreachable_broker_gives_503_while_the_loop_keeps_serving(bp_env):
    # one loop thread, so that the GETs below share the POST's loop; the broker address is a closed port
    api = bp_env.start_api(BP_KAFKA_BROKERS=f"127.0.0.1:{free_port()}", BP_PRODUCE_TIMEOUT_MS=3000,
                           BP_HTTP_THREADS=1)
    result = {}

    def post():
        try:
            result["r"] = requests.post(api.url + "/api/v1/batches/", data=json.dumps(small_batch()),
                                        headers={"Content-Type": "application/json"}, timeout=30)
        except Exception as exc:  # noqa: BLE001 - reported below
            result["exc"] = exc

    t = threading.Thread(target=post)
    t.start()
    answered_meanwhile = 0
    with requests.Session() as s:
        while t.is_alive():
            r = s.get(api.url + "/api/v1/", timeout=2.0)  # below the 3 s the POST waits
            assert r.status_code == 200
            if t.is_alive():
                answered_meanwhile += 1
    t.join()
    assert "exc" not in result, result
    r = result["r"]
    problem = assert_problem(r, 503)
    assert int(r.headers["Retry-After"]) > 0
    assert "did not acknowledge within 3000 ms" in problem["detail"]
    assert "may or may not" in problem["detail"]
    assert answered_meanwhile >= 3
    assert api.proc.stop() == 0


def test_client_that_goes_away_before_the_verdict_does_not_disturb_the_server(bp_env):
    """An HTTP/2 client gives up (curl --max-time closes the connection): h2o drops the request at once;
    the verdict later finds it gone, and the request no longer holds up a shutdown."""
    api = bp_env.start_api(BP_KAFKA_BROKERS=f"127.0.0.1:{free_port()}", BP_PRODUCE_TIMEOUT_MS=1500,
                           BP_SHUTDOWN_TIMEOUT_MS=20000, BP_HTTP_THREADS=1, BP_LOG_LEVEL="debug",
                           BP_HTTP2_CLEARTEXT=1)
    rid = "gone-" + uuid.uuid4().hex
    r = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--max-time", "0.5",
                        "-H", "Content-Type: application/json", "-H", f"X-Request-Id: {rid}",
                        "--data-binary", json.dumps(small_batch()), api.url + "/api/v1/batches/"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 28, r  # curl's "operation timed out": it went away without an answer

    def logged(words):
        return lambda: any(l.get("request_id") == rid and words in l.get("msg", "") for l in api.proc.log_lines())
    wait_until(logged("queued"), 10, "the POST to be queued")
    wait_until(logged("went away"), 10, "the verdict of the abandoned POST")
    h2 = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                         api.url + "/api/v1/"], capture_output=True, text=True, timeout=30)
    assert h2.stdout == "200"
    # nothing is left in flight: the stop does not wait for the abandoned request
    assert api.proc.stop() == 0
    assert not any("still in flight" in l.get("msg", "") for l in api.proc.log_lines())


def test_sigterm_with_a_post_in_flight_answers_it_and_exits_0(bp_env):
    api = bp_env.start_api(BP_KAFKA_BROKERS=f"127.0.0.1:{free_port()}", BP_PRODUCE_TIMEOUT_MS=60000,
                           BP_SHUTDOWN_TIMEOUT_MS=3000, BP_HTTP_THREADS=1, BP_LOG_LEVEL="debug")
    rid = "term-" + uuid.uuid4().hex
    result = {}

    def post():
        try:
            result["r"] = requests.post(api.url + "/api/v1/batches/", data=json.dumps(small_batch()),
                                        headers={"Content-Type": "application/json", "X-Request-Id": rid},
                                        timeout=30)
        except Exception as exc:  # noqa: BLE001 - reported below
            result["exc"] = exc

    t = threading.Thread(target=post)
    t.start()
    wait_until(lambda: any(l.get("request_id") == rid and "queued" in l.get("msg", "")
                           for l in api.proc.log_lines()), 10, "the POST to be queued")
    assert api.proc.stop(signal.SIGTERM, timeout=30) == 0
    t.join(30)
    assert "exc" not in result, f"the client lost its answer: {result.get('exc')!r}"
    problem = assert_problem(result["r"], 503)
    assert "shutting down" in problem["detail"]
    assert "Retry-After" in result["r"].headers
    logs = api.proc.log_lines()
    assert any("still queued" in l.get("msg", "") for l in logs)
    assert any(l.get("msg") == "stopped" for l in logs)
