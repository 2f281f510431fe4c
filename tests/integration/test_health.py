"""Health and metrics: /healthz answers while the process lives; /readyz is 200 only while PostgreSQL
answers, the producer is healthy and a broker is up, and otherwise 503 naming what failed (a private
PostgreSQL is stopped and started; the shared broker is never touched: an API is pointed at a closed
port instead); /metrics counts requests, produce latencies and pool activity."""
import re
import uuid

import pytest

from conftest import Env, free_port, wait_until
from pgcluster import private_env


def readyz(api):
    r = api.get("/readyz", timeout=10)
    assert r.status_code in (200, 503), r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert set(body["checks"]) >= {"postgresql", "kafka"}
    assert (r.status_code == 200) == (body["status"] == "ready")
    return r, body


def ready(api):
    r, _ = readyz(api)
    return r.status_code == 200


def not_ready_because(api, check):
    """The 503 answer when it names check as down, else None (a Response of a 503 is falsy: wrapped)."""
    r, body = readyz(api)
    return [r] if r.status_code == 503 and body["checks"][check]["status"] == "down" else None


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def scrape(api):
    """{(name, labels text): value} of the Prometheus text at /metrics."""
    r = api.get("/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    out = {}
    for line in r.text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, line
        out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def value(samples, name, **labels):
    want = "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
    return samples.get((name, want), 0.0)


def names(samples):
    return {name for name, _ in samples}


@pytest.fixture(scope="module")
def api(bp_env):
    a = bp_env.start_api()
    yield a
    if a.proc.alive():
        assert a.proc.stop() == 0


# --- readiness ------------------------------------------------------------------------------------

def test_ready_when_postgres_and_kafka_are_up(api):
    wait_until(lambda: ready(api), 20, "/readyz to say ready")
    # the topic's replication comes from the API's background thread (a round every 2 s)
    wait_until(lambda: readyz(api)[1]["checks"]["replication"]["status"] == "up", 20,
               "/readyz to know the topic's replicas")
    r, body = readyz(api)
    assert body == {"status": "ready", "checks": {
        "postgresql": {"status": "up"},
        "kafka": {"status": "up", "brokers_up": body["checks"]["kafka"]["brokers_up"]},
        # the shared broker is a single one: 1 replica, nothing under-replicated
        "replication": {"status": "up", "partitions": 3, "replication_factor": 1, "min_insync_replicas": 1,
                        "under_replicated": 0, "below_min_isr": 0}}}
    assert body["checks"]["kafka"]["brokers_up"] >= 1
    assert "Retry-After" not in r.headers
    assert api.get("/healthz").json() == {"status": "ok"}
    assert api.session.head(api.url + "/readyz", timeout=10).status_code == 200


def test_postgres_down_is_503_naming_it_while_healthz_stays_200():
    env, cluster = private_env(Env)
    try:
        env.create()
        a = env.start_api()
        wait_until(lambda: ready(a), 20, "/readyz to say ready")
        cluster.stop()
        [r] = wait_until(lambda: not_ready_because(a, "postgresql"), 20, "/readyz to name postgresql")
        body = r.json()
        assert body["status"] == "not ready"
        assert body["checks"]["kafka"]["status"] == "up"
        assert int(r.headers["Retry-After"]) >= 1
        for _ in range(3):  # every thread's pool says so, and liveness is not readiness
            assert not_ready_because(a, "postgresql")
            assert a.get("/healthz", timeout=5).status_code == 200
        cluster.start()
        wait_until(lambda: ready(a), 30, "/readyz to say ready again after PostgreSQL came back")
        assert a.proc.stop() == 0
    finally:
        for p in env.procs:
            if p.alive():
                p.kill9()
        cluster.destroy()


def test_no_broker_is_503_naming_kafka(bp_env):
    a = bp_env.start_api(BP_KAFKA_BROKERS=f"127.0.0.1:{free_port()}")
    try:
        def settled():
            """503 naming kafka once the producer's statistics came (not just "no state yet")."""
            answer = not_ready_because(a, "kafka")
            assert answer, readyz(a)[1]
            kafka = answer[0].json()["checks"]["kafka"]
            return answer if kafka["detail"] == "no broker connection is up" else None
        [r] = wait_until(settled, 20, "the producer's statistics to say no broker is up")
        body = r.json()
        assert body["status"] == "not ready"
        assert body["checks"]["postgresql"]["status"] == "up"
        assert body["checks"]["kafka"]["brokers_up"] == 0
        assert int(r.headers["Retry-After"]) >= 1
        assert a.get("/healthz").status_code == 200
    finally:
        assert a.proc.stop() == 0


# --- metrics --------------------------------------------------------------------------------------

def test_metrics_move_with_a_post_and_a_get(api, bp_env):
    wait_until(lambda: ready(api), 20, "/readyz to say ready")
    before = scrape(api)
    batch_id = "m-" + uuid.uuid4().hex
    r = api.post("/api/v1/batches/", {"batch_id": batch_id, "objects": [
        {"object_id": batch_id + "-o", "data": [{"key": "k", "value": "v"}]}]})
    assert r.status_code == 202, r.text
    assert api.get("/api/v1/objects/", params={"page_size": 1}).status_code == 200
    assert api.post("/api/v1/batches/", {"batch_id": 1}).status_code == 400

    post_202 = dict(route="/api/v1/batches/", method="POST", status="202")
    get_200 = dict(route="/api/v1/objects/", method="GET", status="200")

    def moved():
        after = scrape(api)
        return after if (value(after, "bp_http_requests_total", **post_202)
                         > value(before, "bp_http_requests_total", **post_202)
                         and value(after, "bp_http_requests_total", **get_200)
                         > value(before, "bp_http_requests_total", **get_200)) else None
    after = wait_until(moved, 10, "the request counters to move")

    # the broker's ack was timed, and counted
    assert value(after, "bp_produce_latency_seconds_count") >= value(before, "bp_produce_latency_seconds_count") + 1
    assert value(after, "bp_produce_latency_seconds_sum") > 0
    assert value(after, "bp_produce_accepted_total") >= value(before, "bp_produce_accepted_total") + 1
    assert value(after, "bp_produce_rejected_total") >= value(before, "bp_produce_rejected_total") + 1
    assert ("bp_produce_failures_total", '{reason="timeout"}') in after
    # per-thread gauges of both threads, and the pool's query counter
    for thread in ("0", "1"):
        for name in ("bp_produce_pending", "bp_kafka_brokers_up", "bp_pg_pool_in_use", "bp_pg_pool_waiting",
                     "bp_pg_pool_connected", "bp_pg_pool_size", "bp_http_inflight_requests"):
            assert (name, f'{{thread="{thread}"}}') in after, (name, thread)
    assert sum(value(after, "bp_pg_pool_connected", thread=t) for t in ("0", "1")) >= 1
    assert value(after, "bp_pg_queries_total") >= value(before, "bp_pg_queries_total") + 1
    # the GET's query: its wait for a connection and its time in PostgreSQL, apart
    for name in ("bp_pg_query_wait_seconds", "bp_pg_query_seconds"):
        assert value(after, name + "_count") >= value(before, name + "_count") + 1, name
    assert value(after, "bp_pg_query_seconds_sum") > value(before, "bp_pg_query_seconds_sum")
    assert {"bp_pg_query_failures_total", "bp_pg_queries_rejected_total", "bp_pg_connect_failures_total",
            "bp_write_wait_total"} <= names(after)
    # the topics' replication, from the same background thread as /readyz's (-1 until its first round)
    def replication_known():
        now = scrape(api)
        return all(value(now, name, topic=topic) == 0 for topic in (bp_env.topic, bp_env.dlq_topic)
                   for name in ("bp_kafka_partitions_under_replicated", "bp_kafka_partitions_below_min_isr"))
    wait_until(replication_known, 20, "the replication gauges to say 0 for both topics")
