"""The whole pipeline, end to end on the real services: POST to the API → Kafka → ingest worker →
PostgreSQL → GET from the API. Covers the lessons of the original assignment's samples with the
project's own fixtures: a 1 MB batch of 3,000 objects, the misspelled batch rejected whole, a
resubmission that updates, mixed value types kept, and a direct publish to the topic."""
import json
import math
import os
import subprocess
import sys
import urllib.parse

import pytest
from confluent_kafka import Producer

from conftest import BROKERS, FIXTURES, wait_until


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)


def generate(indent=False, **kw):
    argv = [sys.executable, os.path.join(FIXTURES, "gen_batch.py")] + ([] if indent else ["--compact"])
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    text = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return (json.loads(text), text) if indent else json.loads(text)


def quote(s):
    return urllib.parse.quote(s, safe="")


@pytest.fixture(scope="module")
def pipeline(bp_env):
    api = bp_env.start_api()
    worker = bp_env.start_worker(BP_TXN_MAX_MS=20)
    bp_env.wait_assigned(worker)
    yield bp_env, api, worker
    assert worker.stop() == 0
    assert api.proc.stop() == 0


def stored_object(api, object_id):
    r = api.get(f"/api/v1/objects/{quote(object_id)}/")
    return r.json() if r.status_code == 200 else None


def wait_batch_count(api, batch_id, count, timeout=60):
    def done():
        r = api.get(f"/api/v1/batches/{quote(batch_id)}/")
        return r.status_code == 200 and r.json()["object_count"] == count
    wait_until(done, timeout, f"batch {batch_id} to hold {count} objects")


def test_large_batch_round_trip(pipeline):
    env, api, _ = pipeline
    # like the original assignment's largest sample: ~1 MB, 2,999 objects, indented
    batch, body = generate(indent=True, objects=3000, pairs=4, vary_pairs=True, seed=11, batch_id="big-batch-1")
    assert len(body) > 700_000
    r = api.post("/api/v1/batches/", body)
    assert r.status_code == 202, r.text
    ack = r.json()
    assert ack["batch_id"] == "big-batch-1" and ack["objects"] == 3000
    assert ack["url"].endswith("/api/v1/batches/big-batch-1/")
    assert r.headers["Location"] == ack["receipt_url"]
    wait_batch_count(api, "big-batch-1", 3000)
    # every object's pairs come back in their original order with their JSON types
    rows = dict(env.query("SELECT object_id, data FROM objects WHERE batch_id = %s", ("big-batch-1",)))
    assert len(rows) == 3000
    for obj in batch["objects"]:
        assert rows[obj["object_id"]] == obj["data"]


def test_misspelled_batch_is_rejected_whole(pipeline):
    env, api, _ = pipeline
    bad = fixture("batch_typos.json")
    r = api.post("/api/v1/batches/", bad)
    assert r.status_code == 400
    assert r.headers["Content-Type"] == "application/problem+json"
    pointers = {e["pointer"] for e in r.json()["errors"]}
    assert "/objects/2/metadta" in pointers
    assert "/objects/4/data/1/kye" in pointers
    assert env.query("SELECT count(*) FROM batches WHERE batch_id = %s", (bad["batch_id"],))[0][0] == 0


def test_resubmission_updates_objects(pipeline):
    env, api, _ = pipeline
    v1, v2 = fixture("batch_v1.json"), fixture("batch_v2.json")
    assert v1["batch_id"] == v2["batch_id"]
    assert api.post("/api/v1/batches/", v1).status_code == 202
    assert api.post("/api/v1/batches/", v2).status_code == 202
    expected = {o["object_id"]: o["data"] for o in v2["objects"]}

    def all_updated():
        return all((stored_object(api, oid) or {}).get("data") == data for oid, data in expected.items())
    wait_until(all_updated, 60, "the resubmitted data to win")
    wait_batch_count(api, v2["batch_id"], len(v2["objects"]))


def test_mixed_value_types_are_kept(pipeline):
    env, api, _ = pipeline
    batch = fixture("mixed_values.json")
    assert api.post("/api/v1/batches/", batch).status_code == 202
    wait_batch_count(api, batch["batch_id"], len(batch["objects"]))
    for obj in batch["objects"]:
        got = stored_object(api, obj["object_id"])
        assert got is not None, obj["object_id"]
        assert [p["key"] for p in got["data"]] == [p["key"] for p in obj["data"]]
        for mine, theirs in zip(obj["data"], got["data"]):
            v, w = mine["value"], theirs["value"]
            if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 2 ** 63:
                # integers beyond int64 are kept as numbers, exactly (docs/TOPIC.md)
                assert isinstance(w, (int, float)) and not isinstance(w, bool) and math.isclose(w, v, rel_tol=1e-15)
            else:
                assert type(w) is type(v) and w == v, (mine, theirs)
    # typed filter: the boolean false is not the string "false"
    r = api.get("/api/v1/objects/", params={"data": json.dumps({"in_stock": False})})
    assert r.status_code == 200


def test_single_object_joins_its_batch(pipeline):
    env, api, _ = pipeline
    obj = fixture("object_single.json")
    obj = dict(obj, batch_id="single-object-batch")
    r = api.post("/api/v1/objects/", obj)
    assert r.status_code == 202, r.text
    wait_batch_count(api, "single-object-batch", 1)
    assert stored_object(api, obj["object_id"])["data"] == obj["data"]


def test_direct_publish_becomes_queryable(pipeline):
    env, api, _ = pipeline
    batch = generate(objects=25, pairs=3, seed=5, batch_id="direct-1", prefix="direct-obj-")
    p = Producer({"bootstrap.servers": BROKERS, "enable.idempotence": True})
    errors = []
    p.produce(env.topic, key=b"direct-1", value=json.dumps(batch).encode(),
              headers={"request-id": b"direct-publish-test"},
              on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(30) == 0 and errors == [None]
    wait_batch_count(api, "direct-1", 25)
    first = batch["objects"][0]
    assert stored_object(api, first["object_id"])["data"] == first["data"]


def test_request_id_reaches_the_worker_log(pipeline):
    env, api, worker = pipeline
    batch = generate(objects=3, pairs=2, seed=9, batch_id="traced-batch")
    r = api.post("/api/v1/batches/", json.dumps(batch), headers={"Content-Type": "application/json",
                                                                 "X-Request-Id": "trace-me-123"})
    assert r.status_code == 202 and r.headers["X-Request-Id"] == "trace-me-123"
    wait_batch_count(api, "traced-batch", 3)
    wait_until(lambda: any(l.get("request_id") == "trace-me-123" for l in worker.log_lines()), 10,
               "the request id in the worker's log")
