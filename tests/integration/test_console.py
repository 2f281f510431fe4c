"""The web console at /console/ and the stats it reads (GET /api/v1/stats/): the static files' headers
(CSP, media types, ETag, 404s, no way out of the embedded files), the stats' shape, lag going to 0 once
the worker caught up, dead letters counted, Kafka reported as away rather than failing, keys respected,
and the page itself in headless Chromium (tests/browser/console.test.mjs, run with node)."""
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import uuid

import pytest
import requests
from confluent_kafka import Producer

from conftest import API_BIN, BROKERS, FIXTURES, SOURCE, Api, Proc, free_port, wait_until

BROWSER_DIR = os.path.join(SOURCE, "tests", "browser")
CHROMIUM = os.environ.get("BP_CHROMIUM", "/usr/bin/chromium")
READ_KEY = "console-reader-" + uuid.uuid4().hex
ADMIN_KEY = "console-admin-" + uuid.uuid4().hex
CONSOLE_FILES = {"index.html": "text/html; charset=utf-8", "console.js": "text/javascript; charset=utf-8",
                 "console.css": "text/css; charset=utf-8", "favicon.svg": "image/svg+xml"}


def load_fixture(name):
    with open(os.path.join(FIXTURES, "console", name)) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def world(bp_env):
    """A worker and an API (no keys), with tests/fixtures/console/seed.json stored in order."""
    worker = bp_env.start_worker()
    api = bp_env.start_api()
    bp_env.wait_assigned(worker)
    for batch in load_fixture("seed.json"):
        # one at a time and waiting for the workers: objects are stored (and listed) in this order
        r = api.post("/api/v1/batches/?wait=20", batch)
        assert r.status_code == 201, r.text
    api.worker = worker
    yield api
    if api.proc.alive():
        assert api.proc.stop() == 0


@pytest.fixture(scope="module")
def secured(bp_env, world):
    """A second API on the same data with API keys on (started by hand: start_api needs an open /api/v1/)."""
    keys = tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False)
    for key, scopes in ((READ_KEY, "read"), (ADMIN_KEY, "read,write,delete")):
        keys.write(f"{hashlib.sha256(key.encode()).hexdigest()} {scopes} {key.split('-')[1]}\n")
    keys.close()
    port = free_port()
    proc = Proc([API_BIN], bp_env.environ(BP_HTTP_PORT=port, BP_HTTP_HOST="127.0.0.1", BP_HTTP_THREADS=1,
                                          BP_API_KEYS_FILE=keys.name), "api-keys")
    bp_env.procs.append(proc)
    api = Api(proc, f"http://127.0.0.1:{port}")
    wait_until(lambda: requests.get(api.url + "/healthz", timeout=2).status_code == 200, 30, "the API with keys")
    yield api
    assert proc.stop() == 0
    os.unlink(keys.name)


def raw_get(api, path):
    """GET a path exactly as written (no client-side clean-up of dot segments or encodings)."""
    host, port = api.url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), body


# ---- the static files ---------------------------------------------------------------------------

def test_console_files_have_their_types_csp_and_etag(world):
    for name, ctype in CONSOLE_FILES.items():
        r = world.get("/console/" + name)
        assert r.status_code == 200, name
        assert r.headers["Content-Type"] == ctype
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert r.headers["Cache-Control"] == "no-cache"
        etag = r.headers["ETag"]
        assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
        again = world.get("/console/" + name, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert world.get("/console/" + name, headers={"If-None-Match": '"other"'}).status_code == 200
        with open(os.path.join(SOURCE, "api", "console", name), "rb") as f:
            assert r.content == f.read()  # the embedded bytes are the files'
    index = world.get("/console/")
    assert index.status_code == 200 and index.headers["Content-Type"] == "text/html; charset=utf-8"
    assert index.content == world.get("/console/index.html").content
    assert world.session.head(world.url + "/console/console.js", timeout=10).status_code == 200


def test_console_redirects_and_refuses_what_it_does_not_have(world):
    r = world.get("/console", allow_redirects=False)
    assert r.status_code == 301 and r.headers["Location"] == "/console/"
    r = world.get("/console?x=1", allow_redirects=False)
    assert r.headers["Location"] == "/console/?x=1"
    r = world.get("/console/nothing.js")
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/problem+json"
    assert "no such file" in r.json()["detail"]
    assert world.session.put(world.url + "/console/index.html", timeout=10).status_code == 405
    for path in ("/console/../api/v1/", "/console/../../etc/passwd", "/console/%2e%2e/index.html",
                 "/console/..%2f..%2fetc%2fpasswd", "/console/%2fetc%2fpasswd", "/console/index.html%00.js",
                 "/console/.", "/console/console.js/../index.html"):
        status, headers, body = raw_get(world, path)
        assert status == 404, (path, status)
        assert b"root:" not in body and b"<html" not in body


def test_console_page_needs_nothing_from_the_internet():
    html = open(os.path.join(SOURCE, "api", "console", "index.html")).read()
    for url in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert not re.match(r"^[a-z]+:|^//", url), url  # relative: served by the API itself
    assert "<script>" not in html and "style=" not in html and " on" not in re.sub(r"<!--.*?-->", "", html, flags=re.S).split("<body>")[0]
    for name in ("console.js", "console.css"):
        text = open(os.path.join(SOURCE, "api", "console", name)).read()
        assert not re.search(r"https?://", text), name
        assert "innerHTML" not in text and "eval(" not in text


# ---- GET /api/v1/stats/ -------------------------------------------------------------------------

def stats(api, **kw):
    r = api.get("/api/v1/stats/", **kw)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Cache-Control"] == "no-store"
    return r.json()


def caught_up(api, partitions, min_messages=0):
    s = stats(api)
    parts = s["topic"]["partitions"]
    # the watermarks are cached (up to ~2 s old): caught up is when they and the offsets agree
    return (s["kafka"]["status"] == "up" and len(parts) == partitions and s["topic"]["lag"] == 0
            and all(p["lag"] == 0 and p["applied"] in (None, p["high"]) and (p["applied"] is not None or p["high"] == 0)
                    for p in parts) and sum(p["high"] for p in parts) >= min_messages) and s


def test_stats_shape_and_lag_zero_once_applied(bp_env, world):
    seed = load_fixture("seed.json")
    s = wait_until(lambda: caught_up(world, bp_env.partitions, len(seed)), 30, "lag 0 on every partition")
    assert isinstance(s["timestamp_ms"], int) and s["timestamp_ms"] > 1.6e12
    assert s["accepted"] == {"batches": len(seed), "objects": sum(len(b["objects"]) for b in seed)}
    assert s["database"] == {"status": "up"}
    assert 0 <= s["kafka"]["age_ms"] < 30000
    assert s["topic"]["name"] == bp_env.topic
    parts = s["topic"]["partitions"]
    assert [p["partition"] for p in parts] == list(range(bp_env.partitions))
    for p in parts:
        assert set(p) == {"partition", "low", "high", "applied", "lag"}
        assert p["low"] == 0 and p["high"] >= 0
        assert p["applied"] in (None, p["high"]) and (p["applied"] is not None or p["high"] == 0)
    assert sum(p["high"] for p in parts) == len(seed)
    assert s["dead_letters"] == {"topic": bp_env.dlq_topic, "count": 0}
    # PostgreSQL's counters of the objects table (flushed by the workers about once a second)
    applied = wait_until(lambda: (lambda a: a["objects_inserted"] >= 30 and a)(stats(world)["applied"]), 30,
                         "the objects table's counters")
    assert set(applied) == {"objects_inserted", "objects_updated", "objects_deleted", "objects_live"}
    assert applied["objects_live"] >= 0 and applied["objects_deleted"] >= 0

    # a POST moves the accepted counters and the watermark, and the lag comes back to 0
    r = world.post("/api/v1/batches/", {"batch_id": "stats-1", "objects": [
        {"object_id": "stats-1-a", "data": [{"key": "k", "value": 1}]},
        {"object_id": "stats-1-b", "data": [{"key": "k", "value": 2}]}]})
    assert r.status_code == 202
    after = wait_until(lambda: (lambda x: x["accepted"]["batches"] == len(seed) + 1 and x)(stats(world)), 10,
                       "the accepted counters")
    assert after["accepted"]["objects"] == s["accepted"]["objects"] + 2
    assert after["timestamp_ms"] >= s["timestamp_ms"]
    moved = wait_until(lambda: (lambda x: sum(p["high"] for p in x["topic"]["partitions"]) == len(seed) + 1 and x)(
        stats(world)), 15, "the new high watermark")
    wait_until(lambda: caught_up(world, bp_env.partitions, len(seed) + 1), 30, "lag 0 again")
    assert moved["topic"]["partitions"][r.json()["partition"]]["high"] == r.json()["offset"] + 1


def test_lag_seen_while_the_worker_is_paused_then_back_to_zero(bp_env, world):
    wait_until(lambda: caught_up(world, bp_env.partitions, 1), 30, "lag 0")
    world.worker.send(signal.SIGSTOP)  # the worker stands still (well within its group session timeout)
    try:
        posted = [world.post("/api/v1/batches/", {"batch_id": f"paused-{i}", "objects": [
            {"object_id": f"paused-{i}", "data": [{"key": "k", "value": i}]}]}) for i in range(3)]
        assert all(r.status_code == 202 for r in posted)
        s = wait_until(lambda: (lambda x: x["topic"]["lag"] == 3 and x)(stats(world)), 15, "a lag of 3")
        for r in posted:
            part = s["topic"]["partitions"][r.json()["partition"]]
            assert part["lag"] >= 1 and part["high"] > (part["applied"] or 0)
    finally:
        world.worker.send(signal.SIGCONT)
    wait_until(lambda: caught_up(world, bp_env.partitions, 1), 30, "lag 0 once the worker caught up")


def test_dead_letters_counted(bp_env, world):
    before = wait_until(lambda: caught_up(world, bp_env.partitions), 30, "lag 0")["dead_letters"]["count"]
    p = Producer({"bootstrap.servers": BROKERS})
    p.produce(bp_env.topic, key=b"poison", value=b'{"batch_id": "poison", "objects": "not a list"}')
    assert p.flush(10) == 0
    s = wait_until(lambda: (lambda x: x["dead_letters"]["count"] == before + 1 and x)(stats(world)), 30,
                   "the dead letter counted")
    assert s["dead_letters"]["topic"] == bp_env.dlq_topic
    wait_until(lambda: caught_up(world, bp_env.partitions), 30, "lag 0 after the dead letter")


def test_stats_report_kafka_away_instead_of_failing(bp_env, world):
    port = free_port()  # nobody listens there
    api = bp_env.start_api(BP_KAFKA_BROKERS=f"127.0.0.1:{port}", BP_HTTP_THREADS=1)
    s = wait_until(lambda: (lambda x: x["kafka"]["status"] == "down" and x)(stats(api)), 30, "Kafka reported down")
    assert s["kafka"]["detail"] and s["kafka"]["age_ms"] is None
    assert s["database"] == {"status": "up"}
    assert s["dead_letters"]["count"] is None and s["topic"]["lag"] is None
    # what PostgreSQL knows is still there: the applied offsets of the partitions the workers wrote
    known = {p["partition"]: p["applied"] for p in stats(world)["topic"]["partitions"] if p["applied"] is not None}
    assert known and {p["partition"]: p["applied"] for p in s["topic"]["partitions"]} == known
    assert all(p["high"] is None and p["lag"] is None for p in s["topic"]["partitions"])
    # and the thread that waits for the broker does not hold up a graceful stop
    assert api.proc.stop() == 0
    assert any(l.get("msg") == "stopped" for l in api.proc.log_lines())


def test_stats_report_the_database_away_instead_of_failing(bp_env, world):
    port = free_port()  # no PostgreSQL there
    api = bp_env.start_api(BP_PG_DSN=f"host=127.0.0.1 port={port} dbname=none user=postgres", BP_HTTP_THREADS=1)
    s = wait_until(lambda: (lambda x: x["kafka"]["status"] == "up" and x)(stats(api)), 30, "the watermarks")
    assert s["database"] == {"status": "down", "detail": "unreachable"}
    assert set(s["applied"].values()) == {None}
    parts = s["topic"]["partitions"]
    assert len(parts) == bp_env.partitions and s["topic"]["lag"] is None
    assert all(p["high"] is not None and p["applied"] is None and p["lag"] is None for p in parts)
    assert s["dead_letters"]["count"] is not None  # from the broker alone
    assert api.proc.stop() == 0


def test_stats_and_console_with_keys(secured):
    assert secured.get("/api/v1/stats/").status_code == 401
    s = stats(secured, headers={"Authorization": f"Bearer {READ_KEY}"})
    assert s["database"]["status"] == "up"
    # the page's files hold no data: they are served without a key
    for name in CONSOLE_FILES:
        assert secured.get("/console/" + name).status_code == 200
    assert secured.get("/console/").status_code == 200


# ---- the page in headless Chromium ----------------------------------------------------------------

def test_console_in_headless_chromium(bp_env, world, secured):
    assert shutil.which("node"), "node is missing: install Debian's nodejs (ops/lib.sh does)"
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing: install Debian's chromium (ops/lib.sh does)"
    assert os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")), \
        "tests/browser/node_modules is missing: run `npm ci` in tests/browser (ops/test does)"
    env = dict(os.environ, BP_API_URL=world.url, BP_PARTITIONS=str(bp_env.partitions),
               BP_AUTH_API_URL=secured.url, BP_AUTH_API_KEY=ADMIN_KEY)
    r = subprocess.run(["node", os.path.join(BROWSER_DIR, "console.test.mjs")], env=env, capture_output=True,
                       text=True, timeout=180, cwd=BROWSER_DIR)
    print(r.stdout)
    print(r.stderr)
    assert r.returncode == 0, f"the browser test failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    assert re.search(r"^\d+ passed, 0 failed$", r.stdout, re.M)
