"""Security of the HTTP API: API keys with scopes (401/403 problem bodies, keys stored only as hashes),
rate limiting (429 with Retry-After, then recovery), and TLS on the listener."""
import os
import subprocess
import tempfile

import pytest
import requests

from conftest import API_BIN, CLI_BIN, wait_until

KEYS = {"reader-key-0123456789": "read", "writer-key-0123456789": "write",
        "admin-key-0123456789": "read,write,delete"}


def keys_file():
    lines = []
    for key, scopes in KEYS.items():
        r = subprocess.run([CLI_BIN, "hash-key", scopes, key.split("-")[0]], input=key + "\n",
                           capture_output=True, text=True, timeout=10, check=True)
        assert key not in r.stdout  # only the hash is written
        lines.append(r.stdout)
    f = tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False)
    f.write("# batchpipe API keys\n" + "".join(lines))
    f.close()
    return f.name


@pytest.fixture(scope="module")
def secured(bp_env):
    path = keys_file()
    # start_api waits for GET /api/v1/ to answer 200, which now needs a key: start it by hand
    from conftest import Api, Proc, free_port
    port = free_port()
    proc = Proc([API_BIN], bp_env.environ(BP_HTTP_PORT=port, BP_HTTP_HOST="127.0.0.1",
                                          BP_API_KEYS_FILE=path), "api-secured")
    bp_env.procs.append(proc)
    api = Api(proc, f"http://127.0.0.1:{port}")
    wait_until(lambda: requests.get(api.url + "/healthz", timeout=2).status_code == 200, 30, "the API")
    yield api
    proc.stop()
    os.unlink(path)


def test_no_key_is_401_with_problem_body(secured):
    r = secured.get("/api/v1/")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert r.headers["Content-Type"] == "application/problem+json"
    assert "API key" in r.json()["detail"]


def test_unknown_key_is_401(secured):
    r = secured.get("/api/v1/", headers={"Authorization": "Bearer not-a-key"})
    assert r.status_code == 401


def test_scopes(secured):
    reader = {"Authorization": "Bearer reader-key-0123456789"}
    writer = {"X-API-Key": "writer-key-0123456789"}
    assert secured.get("/api/v1/", headers=reader).status_code == 200
    r = secured.post("/api/v1/batches/", b"{}", headers=dict(reader, **{"Content-Type": "application/json"}))
    assert r.status_code == 403 and "write" in r.json()["detail"]
    # the writer may post (its body is checked after the key: an empty batch is a 400, not a 403)
    r = secured.post("/api/v1/batches/", b"{}", headers=dict(writer, **{"Content-Type": "application/json"}))
    assert r.status_code == 400
    assert secured.get("/api/v1/", headers=writer).status_code == 403
    r = secured.delete("/api/v1/objects/nothing-here/", headers=reader)
    assert r.status_code == 403 and "delete" in r.json()["detail"]
    admin = {"Authorization": "bearer admin-key-0123456789"}
    assert secured.delete("/api/v1/objects/nothing-here/", headers=admin).status_code == 404


def test_probes_need_no_key(secured):
    assert secured.get("/healthz").status_code == 200
    assert secured.get("/metrics").status_code == 200


def test_bad_keys_file_stops_the_api(bp_env):
    f = tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False)
    f.write("not-a-hash read\n")
    f.close()
    r = subprocess.run([API_BIN], env=bp_env.environ(BP_API_KEYS_FILE=f.name, BP_HTTP_PORT="1"),
                       capture_output=True, text=True, timeout=30)
    os.unlink(f.name)
    assert r.returncode != 0
    assert "BP_API_KEYS_FILE" in r.stderr and "line 1" in r.stderr


def test_rate_limit_then_recovery(bp_env):
    api = bp_env.start_api(BP_RATE_LIMIT=2, BP_RATE_BURST=3)
    statuses = [api.get("/api/v1/").status_code for _ in range(8)]
    # start_api's readiness probe may have used a token; at most the burst passes at once
    assert statuses.count(429) >= 4
    r = api.get("/api/v1/")
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert r.json()["status"] == 429
    assert api.get("/healthz").status_code == 200  # probes are not limited
    wait_until(lambda: api.get("/api/v1/").status_code == 200, 10, "the rate limit to let a request through")
    api.proc.stop()


def test_tls(bp_env, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    from conftest import Api, Proc, free_port
    port = free_port()
    proc = Proc([API_BIN], bp_env.environ(BP_HTTP_PORT=port, BP_HTTP_HOST="127.0.0.1", BP_TLS_CERT=cert,
                                          BP_TLS_KEY=key), "api-tls")
    bp_env.procs.append(proc)
    url = f"https://localhost:{port}"
    wait_until(lambda: requests.get(url + "/healthz", verify=str(cert), timeout=2).status_code == 200, 30,
               "the HTTPS listener")
    r = requests.get(url + "/api/v1/", verify=str(cert), timeout=5)
    assert r.status_code == 200 and r.json()["objects"].startswith("https://")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://localhost:{port}/healthz", timeout=5)
    # HTTP/2 (many bodies per connection that the body budget does not see) only when asked for
    assert alpn(port, cert) == "http/1.1"
    assert proc.stop() == 0
    proc = Proc([API_BIN], bp_env.environ(BP_HTTP_PORT=port, BP_HTTP_HOST="127.0.0.1", BP_TLS_CERT=cert,
                                          BP_TLS_KEY=key, BP_HTTP2_TLS="1"), "api-tls-h2")
    bp_env.procs.append(proc)
    wait_until(lambda: requests.get(url + "/healthz", verify=str(cert), timeout=2).status_code == 200, 30,
               "the HTTPS listener")
    assert alpn(port, cert) == "h2"
    assert proc.stop() == 0


def alpn(port, cert):
    """The protocol the API picks for a TLS client that offers h2 and http/1.1."""
    import socket
    import ssl
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return s.selected_alpn_protocol()


def test_tls_needs_cert_and_key(bp_env):
    r = subprocess.run([API_BIN], env=bp_env.environ(BP_TLS_CERT="/nonexistent.pem"), capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and "BP_TLS_KEY" in r.stderr


def test_least_privilege_roles(bp_env):
    import psycopg2
    conn = bp_env.db()
    cur = conn.cursor()
    cur.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE tablename IN ('batches', 'objects', 'ingest_offsets')")
    owners = {r[0] for r in cur.fetchall()}
    assert not owners & {"batchpipe_api", "batchpipe_ingest"}

    def as_role(role, sql, params=()):
        cur.execute("BEGIN")
        cur.execute(f"SET LOCAL ROLE {role}")
        try:
            cur.execute(sql, params)
            return True
        except psycopg2.errors.InsufficientPrivilege:
            return False
        finally:
            cur.execute("ROLLBACK")

    insert_batch = "INSERT INTO batches (batch_id) VALUES ('role-test')"
    insert_object = ("WITH b AS (INSERT INTO batches (batch_id) VALUES ('role-test2') RETURNING batch_id) "
                     "INSERT INTO objects (object_id, batch_id, data, src_ts, src_partition, src_offset) "
                     "SELECT 'role-obj', batch_id, '[]', 0, 0, 0 FROM b")
    assert as_role("batchpipe_ingest", insert_batch)
    assert as_role("batchpipe_ingest", insert_object)
    assert as_role("batchpipe_ingest", "UPDATE ingest_offsets SET next_offset = next_offset")
    # deletes go through the topic: both apply them with the same SQL functions (migration 006)
    for role in ("batchpipe_ingest", "batchpipe_api"):
        assert as_role(role, "SELECT bp_delete_object('none', 0, 0, 0)")
        assert as_role(role, "SELECT bp_delete_batch('none', true, 0, 0, 0)")
    assert as_role("batchpipe_api", "SELECT count(*) FROM objects")
    assert as_role("batchpipe_api", "DELETE FROM objects WHERE object_id = 'none'")
    assert as_role("batchpipe_api", "SELECT * FROM ingest_offsets")
    assert not as_role("batchpipe_api", insert_batch)
    assert not as_role("batchpipe_api", "UPDATE objects SET data = '[]'")
    conn.close()


def test_a_readyz_flood_does_not_starve_authenticated_reads(bp_env):
    """/readyz is public: anyone may call it as fast as they like. Its answer comes from a state
    refreshed at most once a second, so a flood never fills the PostgreSQL pool's queue that
    authenticated reads need (a small pool and queue here make that easy to see)."""
    import threading
    import time
    from conftest import Api, Proc, free_port
    path = keys_file()
    port = free_port()
    proc = Proc([API_BIN], bp_env.environ(BP_HTTP_PORT=port, BP_HTTP_HOST="127.0.0.1", BP_API_KEYS_FILE=path,
                                          BP_HTTP_THREADS=1, BP_PG_POOL_SIZE=1, BP_PG_QUEUE_MAX=4), "api-flood")
    bp_env.procs.append(proc)
    api = Api(proc, f"http://127.0.0.1:{port}")
    reader = {"Authorization": "Bearer reader-key-0123456789"}
    try:
        wait_until(lambda: requests.get(api.url + "/readyz", timeout=2).status_code == 200, 30, "the API to be ready")
        stop = threading.Event()
        flooded = []

        def flood():
            n = 0
            with requests.Session() as s:
                deadline = time.monotonic() + 60  # bounded, whatever happens to the test
                while not stop.is_set() and time.monotonic() < deadline and n < 20000:
                    try:
                        s.get(api.url + "/readyz", timeout=5)
                    except requests.RequestException:
                        pass
                    n += 1
            flooded.append(n)

        threads = [threading.Thread(target=flood, daemon=True) for _ in range(12)]
        for t in threads:
            t.start()
        statuses = []
        try:
            with requests.Session() as s:
                for _ in range(40):
                    statuses.append(s.get(api.url + "/api/v1/objects/", params={"page_size": 1}, headers=reader,
                                          timeout=10).status_code)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        print(f"{sum(flooded)} /readyz calls alongside {len(statuses)} reads")
        assert statuses == [200] * len(statuses), statuses
    finally:
        proc.stop()
        os.unlink(path)


def test_public_routes_have_a_rate_limit_of_their_own(bp_env):
    """/healthz, /readyz and /metrics need no key, so they get their own limit per client address
    (BP_PUBLIC_RATE_LIMIT): a client past it gets 429 with Retry-After, and API routes are not charged."""
    from conftest import Api, Proc, free_port
    path = keys_file()
    port = free_port()
    proc = Proc([API_BIN], bp_env.environ(BP_HTTP_PORT=port, BP_HTTP_HOST="127.0.0.1", BP_API_KEYS_FILE=path,
                                          BP_PUBLIC_RATE_LIMIT=2), "api-public-limit")
    bp_env.procs.append(proc)
    api = Api(proc, f"http://127.0.0.1:{port}")
    reader = {"Authorization": "Bearer reader-key-0123456789"}
    try:
        wait_until(lambda: requests.get(api.url + "/healthz", timeout=2).status_code in (200, 429), 30, "the API")
        answers = [api.get(path) for path in ("/healthz", "/readyz", "/metrics") * 4]
        limited = [r for r in answers if r.status_code == 429]
        assert limited, [r.status_code for r in answers]  # 12 at once against a burst of 4
        assert int(limited[0].headers["Retry-After"]) >= 1
        assert limited[0].headers["Content-Type"] == "application/problem+json"
        # the API's own routes are not charged for it
        assert api.get("/api/v1/", headers=reader).status_code == 200
    finally:
        proc.stop()
        os.unlink(path)
