"""Reads served by PostgreSQL hot standbys (BP_PG_READ_DSN), against a private primary and a real
streaming standby made with pg_basebackup -R on this machine: GETs go to a standby that keeps up,
writes (DELETE) and ?wait= to the primary; a standby that lags more than BP_MAX_REPLICA_LAG_MS or is
down is skipped without an error to the client; X-Served-By says which database answered."""
import os
import shutil
import uuid

import psycopg2
import pytest

from conftest import Env, free_port, wait_until
from pgcluster import PG_BIN, PgCluster, _as_postgres, private_env


class Standby(PgCluster):
    """A hot standby of primary (a PgCluster), streaming from it through a replication slot; started,
    stopped and destroyed as any private cluster."""

    def __init__(self, primary, slot="bp_test_standby"):
        self.primary = primary
        self.dir = os.path.join(primary.dir, "standby")
        os.mkdir(self.dir)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self.port = free_port()
        r = _as_postgres([f"{PG_BIN}/pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port),
                          "-U", "postgres", "-D", f"{self.dir}/data", "-R", "-X", "stream", "-C", "-S", slot,
                          "--no-sync"])
        assert r.returncode == 0, r.stderr
        self.dsn = f"host=127.0.0.1 port={self.port} dbname=batchpipe user=postgres"
        self.start()

    def sql(self, statement, params=()):
        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()


def primary_and_standby(**standby_args):
    """(env, cluster, standby): a private primary with its environment migrated and a worker assigned,
    and a hot standby of it; everything is stopped and removed when the generator is closed."""
    env, cluster = private_env(Env)
    standby = None
    try:
        env.create()  # migrates the primary; the standby is a copy of it from here on
        standby = Standby(cluster, **standby_args)
        worker = env.start_worker()
        env.wait_assigned(worker)
        yield env, cluster, standby
    finally:
        for p in env.procs:
            if p.alive():
                p.kill9()
        if standby is not None:
            standby.destroy()
        cluster.destroy()


@pytest.fixture(scope="module")
def world():
    yield from primary_and_standby()


def batch(batch_id):
    return {"batch_id": batch_id,
            "objects": [{"object_id": f"{batch_id}-o1", "data": [{"key": "k", "value": batch_id}]}]}


def post_applied(api, batch_id):
    r = api.post("/api/v1/batches/?wait=30", batch(batch_id))
    assert r.status_code == 201, r.text
    return r


def served_by(r):
    return r.headers.get("X-Served-By", "")


def paused(standby):
    return standby.sql("SELECT pg_get_wal_replay_pause_state()")[0][0]


def test_reads_served_by_standby(world):
    env, cluster, standby = world
    api = env.start_api(BP_PG_READ_DSN=standby.dsn, BP_MAX_REPLICA_LAG_MS="60000")
    bid = f"b-{uuid.uuid4().hex[:8]}"
    post_applied(api, bid)
    # replication is asynchronous: the batch shows up on the standby soon after the 201
    # (the first reads may come from the primary until the standby's first lag check is in: wait for it)
    wait_until(lambda: (lambda r: r.status_code == 200 and served_by(r) == "standby-1")(
        api.get(f"/api/v1/batches/{bid}/")), 30, "the batch on the standby")
    for path in (f"/api/v1/batches/{bid}/", f"/api/v1/objects/{bid}-o1/", f"/api/v1/objects/?batch_id={bid}",
                 "/api/v1/batches/", "/api/v1/stats/"):
        r = api.get(path)
        assert r.status_code == 200, (path, r.text)
        assert served_by(r) == "standby-1", (path, r.headers)
    assert standby.sql("SELECT count(*) FROM batches WHERE batch_id = %s", (bid,))[0][0] == 1
    ready = api.get("/readyz").json()
    replicas = ready["checks"]["replicas"]
    assert replicas["standbys"][0]["name"] == "standby-1"
    assert replicas["standbys"][0]["status"] == "up"
    metrics = api.get("/metrics").text
    assert 'bp_pg_replica_up{standby="standby-1"} 1' in metrics
    assert 'bp_pg_replica_lag_seconds{standby="standby-1"}' in metrics


def test_paused_replay_reads_stale_from_standby(world):
    env, cluster, standby = world
    api = env.start_api(BP_PG_READ_DSN=standby.dsn, BP_MAX_REPLICA_LAG_MS="600000")
    standby.sql("SELECT pg_wal_replay_pause()")
    try:
        wait_until(lambda: paused(standby) == "paused", 10, "replay to pause")
        bid = f"b-{uuid.uuid4().hex[:8]}"
        post_applied(api, bid)
        assert env.query("SELECT count(*) FROM batches WHERE batch_id = %s", (bid,))[0][0] == 1
        # without a token, the read is answered at once by the standby, which has not replayed it yet
        r = api.get(f"/api/v1/batches/{bid}/")
        assert r.status_code == 404, r.text
        assert served_by(r) == "standby-1"
    finally:
        standby.sql("SELECT pg_wal_replay_resume()")
    wait_until(lambda: api.get(f"/api/v1/batches/{bid}/").status_code == 200, 30, "the batch after resume")


def test_lagging_standby_is_skipped(world):
    env, cluster, standby = world
    api = env.start_api(BP_PG_READ_DSN=standby.dsn, BP_MAX_REPLICA_LAG_MS="300")
    bid = f"b-{uuid.uuid4().hex[:8]}"
    post_applied(api, bid)
    wait_until(lambda: served_by(api.get(f"/api/v1/batches/{bid}/")) == "standby-1", 30,
               "reads on the standby")
    standby.sql("SELECT pg_wal_replay_pause()")
    try:
        wait_until(lambda: paused(standby) == "paused", 10, "replay to pause")
        late = f"b-{uuid.uuid4().hex[:8]}"
        post_applied(api, late)  # WAL the standby receives but does not replay: its lag grows

        def on_primary():
            r = api.get(f"/api/v1/batches/{late}/")
            return r.status_code == 200 and served_by(r) == "primary"
        wait_until(on_primary, 30, "reads to move to the primary")
        ready = api.get("/readyz")
        assert ready.status_code == 200, ready.text  # a lagging standby does not make the API unready
        s = ready.json()["checks"]["replicas"]["standbys"][0]
        assert s["status"] == "lagging", s
        assert s["lag_ms"] > 300
    finally:
        standby.sql("SELECT pg_wal_replay_resume()")
    wait_until(lambda: served_by(api.get(f"/api/v1/batches/{late}/")) == "standby-1", 30,
               "reads back on the standby once it caught up")


def test_delete_goes_to_primary(world):
    env, cluster, standby = world
    api = env.start_api(BP_PG_READ_DSN=standby.dsn, BP_MAX_REPLICA_LAG_MS="600000")
    standby.sql("SELECT pg_wal_replay_pause()")
    try:
        wait_until(lambda: paused(standby) == "paused", 10, "replay to pause")
        bid = f"b-{uuid.uuid4().hex[:8]}"
        post_applied(api, bid)  # on the primary only
        r = api.delete(f"/api/v1/batches/{bid}/?cascade=true")
        assert r.status_code == 204, r.text
        assert served_by(r) == "primary"
        assert env.query("SELECT count(*) FROM batches WHERE batch_id = %s", (bid,))[0][0] == 0
    finally:
        standby.sql("SELECT pg_wal_replay_resume()")


def test_standby_stopped_reads_answered_by_primary(world):
    env, cluster, standby = world
    api = env.start_api(BP_PG_READ_DSN=standby.dsn, BP_MAX_REPLICA_LAG_MS="60000")
    bid = f"b-{uuid.uuid4().hex[:8]}"
    post_applied(api, bid)
    wait_until(lambda: served_by(api.get(f"/api/v1/batches/{bid}/")) == "standby-1", 30,
               "reads on the standby")
    standby.stop()
    try:
        # every read right after the stop is answered (by the primary), none is an error
        for _ in range(20):
            for path in (f"/api/v1/batches/{bid}/", f"/api/v1/objects/?batch_id={bid}"):
                r = api.get(path)
                assert r.status_code == 200, (path, r.status_code, r.text)
                assert served_by(r) == "primary"

        def reported_down():
            body = api.get("/readyz")
            s = body.json()["checks"]["replicas"]["standbys"][0]
            return body.status_code == 200 and s["status"] == "down"
        wait_until(reported_down, 15, "/readyz to show the standby down while staying ready")
        metrics = api.get("/metrics").text
        assert 'bp_pg_replica_up{standby="standby-1"} 0' in metrics
        assert 'bp_pg_replica_fallbacks_total{standby="standby-1"}' in metrics
    finally:
        standby.start()
    wait_until(lambda: served_by(api.get(f"/api/v1/batches/{bid}/")) == "standby-1", 30,
               "reads back on the restarted standby")
