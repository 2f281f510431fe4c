"""Receipts (#14): every 202 names its message with a token; GET /api/v1/receipts/{token}/ says whether
the ingest group has applied it, not yet (with the partition's lag), or dead-lettered it (why, where the
letter is, how to replay it) - exactly, across worker restarts, from what the workers commit in
PostgreSQL. A W3C traceparent travels from the POST to the message's header and the worker's log line.
Against the real Kafka, PostgreSQL, API and worker."""
import json
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import BROKERS, Env, receipt_token, wait_until
from test_ingest import FAST

PROBLEM = "application/problem+json"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

# A batch the API takes but PostgreSQL refuses for its data (SQLSTATE class 22: dead-lettered at once,
# without retries): what a column constraint or an extension does in real deployments.
TRIGGER = """
CREATE FUNCTION bp_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.object_id LIKE 'refused-%' THEN
    RAISE EXCEPTION 'object % is refused', NEW.object_id USING ERRCODE = '22023';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER bp_test_refuse BEFORE INSERT OR UPDATE ON objects FOR EACH ROW EXECUTE FUNCTION bp_test_refuse();
"""


def token_of(topic, partition, offset, batch_id=None):
    """Version 1 without batch_id (what tokens issued before version 2 are), else version 2."""
    return receipt_token(topic, partition, offset, batch_id)


def batch(batch_id, *object_ids):
    return {"batch_id": batch_id,
            "objects": [{"object_id": o, "data": [{"key": "n", "value": i}]} for i, o in enumerate(object_ids)]}


def read_message(topic, partition, offset, timeout=30):
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "bp-test-reader-" + uuid.uuid4().hex,
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, partition, offset)])

        def got():
            m = c.poll(0.5)
            return m if m is not None and m.error() is None and m.offset() == offset else None
        return wait_until(got, timeout, f"message {topic}/{partition}@{offset}")
    finally:
        c.close()


def headers_of(msg):
    return {k: v.decode() for k, v in (msg.headers() or [])}


def receipt(api, token):
    r = api.get(f"/api/v1/receipts/{token}/")
    assert r.status_code == 200, r.text
    return r.json()


def wait_state(api, token, state, timeout=60):
    return wait_until(lambda: (lambda b: b if b["state"] == state else None)(receipt(api, token)), timeout,
                      f"receipt {token} to be {state}")


def post(api, doc, **headers):
    r = api.post("/api/v1/batches/", doc, headers={"Content-Type": "application/json", **headers})
    assert r.status_code == 202, r.text
    return r


@pytest.fixture(scope="module")
def env():
    e = Env(partitions=2)
    e.create()
    conn = e.db()
    with conn.cursor() as cur:
        cur.execute(TRIGGER)  # no parameters: the '%' of RAISE stays as it is
    conn.close()
    yield e
    e.drop()


@pytest.fixture(scope="module")
def api(env):
    a = env.start_api()
    yield a
    if a.proc.alive():
        a.proc.stop()


def test_a_202_names_its_receipt(env, api):
    r = post(api, batch("rcpt-202", "rcpt-202-a"))
    body = r.json()
    token = body["token"]
    assert token == token_of(env.topic, body["partition"], body["offset"], "rcpt-202")
    assert body["receipt_url"] == f"{api.url}/api/v1/receipts/{token}/"
    assert r.headers["Location"] == body["receipt_url"]
    assert body["url"] == f"{api.url}/api/v1/batches/rcpt-202/"


def test_pending_receipt_is_accepted_with_the_partitions_lag(env, api):
    # no worker runs yet: two messages on one partition (same key), the second behind the first
    first = post(api, batch("rcpt-pending", "rcpt-pending-a")).json()
    second = post(api, batch("rcpt-pending", "rcpt-pending-b")).json()
    assert first["partition"] == second["partition"] and second["offset"] > first["offset"]
    b = receipt(api, second["token"])
    assert b["state"] == "accepted", b
    assert b["partition"] == second["partition"] and b["offset"] == second["offset"]
    assert b["group_id"] == env.group
    # right after the ack the watermarks cache may be older than the message: the API asks the broker
    # again instead of saying 404, and the lag covers at least both messages
    assert b["lag"] >= 2 and b["ahead"] >= 1 and b["high_watermark"] > second["offset"]


def test_bad_and_foreign_tokens_are_400_problems(env, api):
    for bad, words in [("garbage", "not a receipt token"), ("1.0.x.00000000", "not a receipt token"),
                       (token_of("another-topic", 0, 0), "another topic")]:
        r = api.get(f"/api/v1/receipts/{bad}/")
        assert r.status_code == 400, (bad, r.text)
        assert r.headers["Content-Type"].startswith(PROBLEM)
        assert words in r.json()["detail"], (bad, r.json())


def test_offset_beyond_the_partition_is_a_404_problem(env, api):
    for token in (token_of(env.topic, 0, 10**12), token_of(env.topic, 7, 0)):
        r = api.get(f"/api/v1/receipts/{token}/")
        assert r.status_code == 404, (token, r.text)
        assert r.headers["Content-Type"].startswith(PROBLEM)
        assert r.json()["detail"]


def test_traceparent_travels_to_the_topic_and_an_invalid_one_is_ignored(env, api):
    r = post(api, batch("rcpt-trace", "rcpt-trace-a"), traceparent=TRACEPARENT, **{"X-Request-Id": "rcpt-trace-rid"})
    body = r.json()
    msg = read_message(env.topic, body["partition"], body["offset"])
    assert headers_of(msg)["traceparent"] == TRACEPARENT
    r = post(api, batch("rcpt-trace-bad", "rcpt-trace-bad-a"), traceparent="00-not-a-trace-01")
    msg = read_message(env.topic, r.json()["partition"], r.json()["offset"])
    assert "traceparent" not in headers_of(msg)


@pytest.fixture(scope="module")
def worker(env, api):
    w = env.start_worker(**FAST)
    env.wait_assigned(w)
    yield w
    if w.alive():
        w.stop()


def test_applied_receipt_after_the_worker_catches_up(env, api, worker):
    body = post(api, batch("rcpt-applied", "rcpt-applied-a")).json()
    b = wait_state(api, body["token"], "applied")
    assert b["group_id"] == env.group and b["applied_by"]
    assert b["next_offset"] > body["offset"]


def test_applied_receipt_links_its_batch_then_says_superseded_and_deleted(env, api, worker):
    bid = "rcpt link/1"  # escaped in the link as the API escapes it elsewhere
    path = "/api/v1/batches/rcpt%20link%2F1/"
    url = api.url + path
    first = post(api, batch(bid, "rcpt-link-a", "rcpt-link-b")).json()
    b = wait_state(api, first["token"], "applied")
    assert (b["batch_id"], b["batch_url"], b["batch_state"]) == (bid, url, "current"), b
    assert "superseded_by" not in b
    assert api.get(path).status_code == 200

    # the same batch again: its objects now come from the second message
    second = post(api, batch(bid, "rcpt-link-a", "rcpt-link-b")).json()
    b2 = wait_state(api, second["token"], "applied")
    assert (b2["batch_id"], b2["batch_url"], b2["batch_state"]) == (bid, url, "current"), b2
    b1 = receipt(api, first["token"])
    assert b1["state"] == "applied" and (b1["batch_id"], b1["batch_url"]) == (bid, url), b1
    assert b1["batch_state"] == "superseded", b1
    assert b1["superseded_by"] == {"partition": second["partition"], "offset": second["offset"],
                                   "receipt_url": second["receipt_url"]}, b1
    r = env.cli("receipt", first["token"], check=False, BP_API_URL=api.url)
    fields = {l[:14].strip(): l[15:] for l in r.stdout.splitlines()}  # "%-14s value"
    assert r.returncode == 0 and fields["batch:"] == "superseded" and fields["batch_url:"] == url, r.stdout
    assert fields["superseded by:"] == f"{second['partition']}:{second['offset']}", r.stdout
    assert fields["its receipt:"] == second["receipt_url"], r.stdout

    # a version-1 token of the same message (as issued before version 2) still reads, without the link
    old = receipt(api, token_of(env.topic, first["partition"], first["offset"]))
    assert old["state"] == "applied" and "batch_id" not in old and "batch_state" not in old, old

    # deleted: still applied, the batch named, no link to follow
    r = api.delete(path + "?cascade=true")
    assert r.status_code == 204, r.text
    for token in (first["token"], second["token"]):
        gone = receipt(api, token)
        assert gone["state"] == "applied", gone
        assert (gone["batch_id"], gone["batch_url"], gone["batch_state"]) == (bid, None, "deleted"), gone


def test_applied_receipt_of_a_batch_whose_objects_were_deleted_says_changed(env, api, worker):
    # the validator refuses an empty batch: a batch is left without objects only by deletes since
    first = post(api, batch("rcpt-emptied", "rcpt-emptied-a")).json()
    assert wait_state(api, first["token"], "applied")["batch_state"] == "current"
    assert api.delete("/api/v1/objects/rcpt-emptied-a/").status_code == 204
    b = receipt(api, first["token"])
    assert b["state"] == "applied" and b["batch_state"] == "changed", b
    assert b["batch_url"] == f"{api.url}/api/v1/batches/rcpt-emptied/" and "superseded_by" not in b
    assert api.get("/api/v1/batches/rcpt-emptied/").status_code == 200  # the batch is there, empty


def test_the_worker_logs_the_traceparent_with_the_request_id(env, api, worker):
    body = post(api, batch("rcpt-trace2", "rcpt-trace2-a"), traceparent=TRACEPARENT,
                **{"X-Request-Id": "rcpt-trace2-rid"}).json()
    wait_state(api, body["token"], "applied")

    def logged():
        return [l for l in worker.log_lines()
                if l.get("request_id") == "rcpt-trace2-rid" and l.get("offset") == body["offset"]]
    lines = wait_until(logged, 30, "the worker's applied line")
    assert lines[0]["traceparent"] == TRACEPARENT
    assert lines[0]["partition"] == body["partition"]


def test_dead_lettered_receipt_is_exact_and_survives_a_worker_restart(env, api, worker):
    body = post(api, batch("rcpt-dead", "rcpt-dead-ok", "refused-1"), traceparent=TRACEPARENT,
                **{"X-Request-Id": "rcpt-dead-rid"}).json()
    b = wait_state(api, body["token"], "dead_lettered")
    d = b["dead_letter"]
    assert d["sqlstate"] == "22023" and "refused-1" in d["reason"]
    assert d["topic"] == env.dlq_topic
    assert d["replay"] == f"batchpipe dlq replay {d['partition']}:{d['offset']}"
    assert b["batch_id"] == "rcpt-dead" and b["batch_url"].endswith("/api/v1/batches/rcpt-dead/")
    assert b["request_id"] == "rcpt-dead-rid" and b["traceparent"] == TRACEPARENT
    # the letter is where the receipt says, and names this message
    letter = headers_of(read_message(env.dlq_topic, d["partition"], d["offset"]))
    assert letter["dlq-source-partition"] == str(body["partition"])
    assert letter["dlq-source-offset"] == str(body["offset"])
    assert letter["traceparent"] == TRACEPARENT
    # the worker said so in its log, with the request id and the trace
    wait_until(lambda: [l for l in worker.log_lines() if l.get("request_id") == "rcpt-dead-rid"
                        and l.get("traceparent") == TRACEPARENT and "dlq_reason" in l], 30,
               "the worker's dead-letter line")

    # a new worker (the record is in PostgreSQL, not in the process) says the same, and records its own
    assert worker.stop() == 0
    w2 = env.start_worker(**FAST)
    try:
        env.wait_assigned(w2)
        assert receipt(api, body["token"]) == b
        again = post(api, batch("rcpt-dead2", "refused-2")).json()
        b2 = wait_state(api, again["token"], "dead_lettered")
        assert b2["dead_letter"]["sqlstate"] == "22023" and b2["traceparent"] is None
        assert receipt(api, body["token"]) == b
    finally:
        w2.stop()


def test_cli_post_prints_the_token_and_receipt_shows_it(env, api, tmp_path):
    w = env.start_worker(**FAST)
    try:
        env.wait_assigned(w)
        f = tmp_path / "b.json"
        f.write_text(json.dumps(batch("rcpt-cli", "rcpt-cli-a")))
        r = env.cli("post", "--no-progress", str(f), check=False, BP_API_URL=api.url)
        assert r.returncode == 0, r.stdout + r.stderr
        line = r.stdout.splitlines()[0]
        token = line.split(" token=")[1]
        assert token.startswith("2.")
        wait_state(api, token, "applied")
        r = env.cli("receipt", token, check=False, BP_API_URL=api.url)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "state:" in r.stdout and "applied" in r.stdout
        fields = dict(l.split(None, 1) for l in r.stdout.splitlines() if " " in l.strip())
        assert fields["batch_url:"] == f"{api.url}/api/v1/batches/rcpt-cli/", r.stdout
        assert fields["batch:"] == "current" and fields["batch_id:"] == "rcpt-cli", r.stdout
        r = env.cli("receipt", token, "--json", check=False, BP_API_URL=api.url)
        assert r.returncode == 0 and json.loads(r.stdout)["state"] == "applied"
        # a dead-lettered one exits 1 and shows how to replay it
        f.write_text(json.dumps(batch("rcpt-cli-dead", "refused-3")))
        r = env.cli("post", "--no-progress", str(f), check=False, BP_API_URL=api.url)
        token = r.stdout.splitlines()[0].split(" token=")[1]
        wait_state(api, token, "dead_lettered")
        r = env.cli("receipt", token, check=False, BP_API_URL=api.url)
        assert r.returncode == 1 and "batchpipe dlq replay" in r.stdout, r.stdout + r.stderr
        # not a token: a usage error, nothing asked
        r = env.cli("receipt", "nonsense", check=False, BP_API_URL=api.url)
        assert r.returncode == 2 and "not a receipt token" in r.stderr
    finally:
        w.stop()


def test_dead_letter_records_past_their_retention_are_purged_and_the_receipt_says_unknown(env, api):
    w = env.start_worker(**FAST)
    try:
        env.wait_assigned(w)
        body = post(api, batch("rcpt-old", "refused-old")).json()
        wait_state(api, body["token"], "dead_lettered")
    finally:
        w.stop()
    env.query("UPDATE dead_letters SET dead_at = now() - interval '40 days' WHERE partition = %s AND \"offset\" = %s",
              (body["partition"], body["offset"]))
    # an idle worker purges what is older than BP_RECEIPT_RETENTION_DAYS, and raises the horizon past it:
    # the receipt no longer claims "applied" for a message it cannot vouch for
    w = env.start_worker(BP_RECEIPT_RETENTION_DAYS="30", **FAST)
    try:
        b = wait_state(api, body["token"], "unknown")
        assert "no longer recorded" in b["detail"]
        assert env.query("SELECT count(*) FROM dead_letters WHERE dead_at < now() - interval '30 days'")[0][0] == 0
        wait_until(lambda: any("purged" in l.get("msg", "") for l in w.log_lines()), 30, "the purge's log line")
    finally:
        w.stop()


def test_a_message_that_is_not_a_batch_has_a_dead_letter_receipt_too(env, api):
    # published straight to the topic (not through the API): no JSON, no batch_id, no SQLSTATE
    from confluent_kafka import Producer
    where = {}
    p = Producer({"bootstrap.servers": BROKERS, "enable.idempotence": True})
    p.produce(env.topic, key=b"not-json", value=b"{not json", partition=1,
              headers=[("request-id", b"rcpt-raw"), ("traceparent", TRACEPARENT.encode())],
              on_delivery=lambda err, msg: where.update(err=err, partition=msg.partition(), offset=msg.offset()))
    assert p.flush(30) == 0 and where["err"] is None
    token = token_of(env.topic, where["partition"], where["offset"])
    w = env.start_worker(**FAST)
    try:
        b = wait_state(api, token, "dead_lettered")
    finally:
        w.stop()
    assert b["dead_letter"]["reason"].startswith("invalid JSON") and b["dead_letter"]["sqlstate"] is None
    assert b["batch_id"] is None and "batch_url" not in b
    assert b["request_id"] == "rcpt-raw" and b["traceparent"] == TRACEPARENT
