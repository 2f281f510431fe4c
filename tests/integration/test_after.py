"""Read-your-writes on reads (`after=TOKEN` / BP-After, issue #14) against a private primary and a real
streaming standby: a token read is answered by a database that has applied the token's message
(the standby when it has replayed it, else the primary), 503 with Retry-After when none has by
BP_WAIT_MAX_S, 400 for a bad token; every read says how far its database has applied
(BP-Applied-Through), without a token too."""
import concurrent.futures
import uuid

import pytest

from conftest import receipt_token, wait_until
from test_replicas import batch, paused, primary_and_standby, served_by


@pytest.fixture(scope="module")
def world():
    yield from primary_and_standby(slot="bp_test_after")


def token_of(env, answer):
    """The 202's own token (version 2), checked against the partition, offset and batch it names."""
    body = answer.json()
    assert body["token"] == receipt_token(env.topic, body["partition"], body["offset"], body["batch_id"]), body
    return body["token"]


def applied_through(r):
    """BP-Applied-Through as {partition: last applied offset}."""
    text = r.headers.get("BP-Applied-Through", "")
    return {int(p): int(o) for p, o in (item.split(":") for item in text.split(",") if item)}


def applied_on_primary(env, partition, offset):
    rows = env.query("SELECT next_offset FROM ingest_offsets WHERE group_id = %s AND topic = %s"
                     " AND partition = %s", (env.group, env.topic, partition))
    return bool(rows) and rows[0][0] > offset


def standby_serving(api, env):
    """Wait until reads go to the standby (its first lag check is in)."""
    wait_until(lambda: served_by(api.get("/api/v1/batches/")) == "standby-1", 30, "reads on the standby")


def metric_sum(api, name):
    total = 0.0
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def waiting_reads(api):
    return metric_sum(api, "bp_read_after_waiting")


def test_token_read_after_post_sees_the_batch_on_the_standby(world):
    env, cluster, standby = world
    api = env.start_api(BP_PG_READ_DSN=standby.dsn, BP_MAX_REPLICA_LAG_MS="60000", BP_WAIT_MAX_S="30")
    standby_serving(api, env)
    bid = f"b-{uuid.uuid4().hex[:8]}"
    posted = api.post("/api/v1/batches/", batch(bid))
    assert posted.status_code == 202, posted.text
    token = token_of(env, posted)
    p, o = posted.json()["partition"], posted.json()["offset"]
    r = api.get(f"/api/v1/batches/{bid}/?after={token}")
    assert r.status_code == 200, r.text
    assert r.json()["batch_id"] == bid
    assert served_by(r) == "standby-1"
    assert applied_through(r)[p] >= o, r.headers
    # the same as a header, on the other reads
    for path in (f"/api/v1/objects/{bid}-o1/", f"/api/v1/objects/?batch_id={bid}", "/api/v1/batches/"):
        r = api.get(path, headers={"BP-After": token})
        assert r.status_code == 200, (path, r.text)
        assert served_by(r) == "standby-1", path
        assert applied_through(r)[p] >= o, (path, r.headers)
    assert [x["object_id"] for x in api.get(f"/api/v1/objects/?batch_id={bid}&after={token}").json()["results"]] \
        == [f"{bid}-o1"]
    # a read without a token says how far its database had applied at the monitor's last sample
    wait_until(lambda: applied_through(api.get("/api/v1/batches/")).get(p, -1) >= o, 10,
               "the sampled applied-through of the standby")


def test_paused_replay_token_read_waits_for_the_standby(world):
    env, cluster, standby = world
    api = env.start_api(BP_PG_READ_DSN=standby.dsn, BP_MAX_REPLICA_LAG_MS="600000", BP_WAIT_MAX_S="60")
    standby_serving(api, env)
    warm = api.post("/api/v1/batches/?wait=30", batch(f"b-{uuid.uuid4().hex[:8]}"))
    assert warm.status_code == 201, warm.text
    wp, wo = warm.json()["partition"], warm.json()["offset"]
    wait_until(lambda: applied_through(api.get("/api/v1/batches/")).get(wp, -1) >= wo, 10,
               "the standby's sampled applied-through")
    standby.sql("SELECT pg_wal_replay_pause()")
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        wait_until(lambda: paused(standby) == "paused", 10, "replay to pause")
        bid = f"b-{uuid.uuid4().hex[:8]}"
        stored = api.post("/api/v1/batches/?wait=30", batch(bid))  # applied on the primary
        assert stored.status_code == 201, stored.text
        token = token_of(env, stored)
        p, o = stored.json()["partition"], stored.json()["offset"]
        # without a token: answered at once by the standby, stale, and it says how far it has applied
        r = api.get(f"/api/v1/batches/{bid}/")
        assert r.status_code == 404, r.text
        assert served_by(r) == "standby-1"
        assert applied_through(r)[wp] >= wo, r.headers
        assert applied_through(r).get(p, -1) < o, r.headers
        # with the token: held until the standby has replayed it
        pending = pool.submit(api.get, f"/api/v1/batches/{bid}/?after={token}", timeout=90)
        wait_until(lambda: waiting_reads(api) >= 1, 10, "the token read to wait")
        assert not pending.done()
    finally:
        standby.sql("SELECT pg_wal_replay_resume()")
    r = pending.result(timeout=90)
    pool.shutdown()
    assert r.status_code == 200, r.text
    assert served_by(r) == "standby-1"
    assert applied_through(r)[p] >= o


def test_standby_that_does_not_catch_up_in_time_leaves_the_read_to_the_primary(world):
    env, cluster, standby = world
    api = env.start_api(BP_PG_READ_DSN=standby.dsn, BP_MAX_REPLICA_LAG_MS="600000", BP_WAIT_MAX_S="2")
    standby_serving(api, env)
    standby.sql("SELECT pg_wal_replay_pause()")
    try:
        wait_until(lambda: paused(standby) == "paused", 10, "replay to pause")
        bid = f"b-{uuid.uuid4().hex[:8]}"
        stored = api.post("/api/v1/batches/", batch(bid))
        assert stored.status_code == 202, stored.text
        wait_until(lambda: applied_on_primary(env, stored.json()["partition"], stored.json()["offset"]), 30,
                   "the worker to apply the batch on the primary")
        r = api.get(f"/api/v1/batches/{bid}/", headers={"BP-After": token_of(env, stored)})
        assert r.status_code == 200, r.text
        assert served_by(r) == "primary"
        assert applied_through(r)[stored.json()["partition"]] >= stored.json()["offset"]
    finally:
        standby.sql("SELECT pg_wal_replay_resume()")


def test_token_never_applied_is_503_after_the_bounded_wait(world):
    env, cluster, standby = world
    api = env.start_api(BP_PG_READ_DSN=standby.dsn, BP_MAX_REPLICA_LAG_MS="60000", BP_WAIT_MAX_S="1")
    token = receipt_token(env.topic, 0, 10**12)  # far beyond anything the topic holds
    r = api.get(f"/api/v1/batches/?after={token}")
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] == "1"
    assert r.headers["Content-Type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == 503
    assert body["database"] == "primary"
    assert [(t["token"], t["state"], t["applied"]) for t in body["tokens"]] == [(token, "unknown", False)]


def test_bad_tokens_are_400(world):
    env, cluster, standby = world
    api = env.start_api(BP_PG_READ_DSN=standby.dsn)
    good = receipt_token(env.topic, 0, 1)
    other = receipt_token("another.topic", 0, 1)
    for query, headers in ((f"after=nonsense", {}), (f"after={other}", {}), (f"after={good},", {}),
                           ("after=", {}), ("after=%zz", {}), ("", {"BP-After": "1.0.x.00000000"})):
        for path in ("/api/v1/batches/", "/api/v1/objects/", "/api/v1/batches/x/", "/api/v1/objects/x/"):
            r = api.get(f"{path}?{query}", headers=headers)
            assert r.status_code == 400, (path, query, r.status_code, r.text)
            assert r.headers["Content-Type"].startswith("application/problem+json")
            assert r.json()["invalid-params"][0]["name"] == "after", r.text


def test_worker_stopped_token_is_503_and_says_accepted(world):
    env, cluster, standby = world
    api = env.start_api(BP_PG_READ_DSN=standby.dsn, BP_MAX_REPLICA_LAG_MS="60000", BP_WAIT_MAX_S="1")
    worker = [p for p in env.procs if p.name == "ingest" and p.alive()][0]
    worker.stop()
    try:
        bid = f"b-{uuid.uuid4().hex[:8]}"
        posted = api.post("/api/v1/batches/", batch(bid))
        assert posted.status_code == 202, posted.text
        p, o = posted.json()["partition"], posted.json()["offset"]

        def broker_has_it():  # the API's watermarks cache (every 2 s) has seen the message
            parts = api.get("/api/v1/stats/").json()["topic"]["partitions"]
            return any(x["partition"] == p and (x["high"] or 0) > o for x in parts)
        wait_until(broker_has_it, 30, "the watermarks to include the message")
        r = api.get(f"/api/v1/batches/{bid}/?after={token_of(env, posted)}")
        assert r.status_code == 503, r.text
        assert "Retry-After" in r.headers
        [t] = r.json()["tokens"]
        assert (t["partition"], t["offset"], t["state"], t["applied"]) == (p, o, "accepted", False)
        # the 503 points at the receipt, which says the same
        assert t["receipt_url"] == posted.json()["receipt_url"]
        assert api.session.get(t["receipt_url"], timeout=30).json()["state"] == "accepted"
    finally:
        env.wait_assigned(env.start_worker())


def test_token_read_waits_on_the_primary_for_a_stopped_worker(world):
    """Without standbys the primary is asked, and the read waits (woken by the workers' commit) until
    the worker, stopped when the batch was posted, is back and has applied it."""
    env, cluster, standby = world
    api = env.start_api(BP_WAIT_MAX_S="120")
    worker = [p for p in env.procs if p.name == "ingest" and p.alive()][0]
    worker.stop()
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        bid = f"b-{uuid.uuid4().hex[:8]}"
        posted = api.post("/api/v1/batches/", batch(bid))
        assert posted.status_code == 202, posted.text
        p, o = posted.json()["partition"], posted.json()["offset"]
        pending = pool.submit(api.get, f"/api/v1/objects/{bid}-o1/", headers={"BP-After": token_of(env, posted)},
                              timeout=150)
        wait_until(lambda: waiting_reads(api) >= 1, 10, "the token read to wait")
        # the read waiting on the primary connected the thread's LISTEN (no POST here waited)
        wait_until(lambda: metric_sum(api, "bp_write_wait_listening") >= 1, 10, "LISTEN for the workers' commits")
        assert not pending.done()
    finally:
        env.wait_assigned(env.start_worker())
    r = pending.result(timeout=150)
    pool.shutdown()
    assert r.status_code == 200, r.text
    assert r.json()["object_id"] == f"{bid}-o1"
    assert served_by(r) == "primary"
    assert applied_through(r)[p] >= o
