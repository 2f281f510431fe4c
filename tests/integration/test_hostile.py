"""Hostile and careless clients (issue 13): metric labels a client cannot multiply, secure defaults
(loopback without keys, BP_AUTH=off said out loud, links never built from a stranger's Host), a 413
that Python's http.client can read, bounded deep pages and cursors, links and bodies that stay UTF-8
whatever the query string held, and rate-limit buckets per real client."""
import base64
import http.client
import json
import os
import random
import socket
import string
import subprocess
import tempfile
import time

import pytest
import requests

from conftest import API_BIN, CLI_BIN, Api, Proc, free_port, wait_until


def start_raw(bp_env, name, **env):
    """Start the API with exactly these settings (no default BP_HTTP_HOST); returns (proc, port)."""
    port = free_port()
    proc = Proc([API_BIN], bp_env.environ(BP_HTTP_PORT=port, BP_HTTP_THREADS=1, **env), name)
    bp_env.procs.append(proc)
    return proc, port


def wait_healthy(proc, url):
    def up():
        if not proc.alive():
            raise AssertionError(f"API exited ({proc.p.returncode}):\n{proc.logs()[-4000:]}")
        return requests.get(url + "/healthz", timeout=2).status_code == 200
    wait_until(up, 30, "the API to answer /healthz")


def keys_file(keys):
    """keys: list of (key, scopes, name or None). Returns the path of a keys file of their hashes."""
    lines = []
    for key, scopes, name in keys:
        args = [CLI_BIN, "hash-key", scopes] + ([name] if name else [])
        r = subprocess.run(args, input=key + "\n", capture_output=True, text=True, timeout=10, check=True)
        lines.append(r.stdout)
    f = tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False)
    f.write("".join(lines))
    f.close()
    return f.name


def strict_json(raw):
    """The body parsed as JSON from strict UTF-8 (a UnicodeDecodeError fails the test)."""
    return json.loads(raw.decode("utf-8", "strict"))


# ---- 1. metrics: a fixed label set whatever the clients send -------------------------------------

def random_requests(port, n, seed):
    """n requests with random 12-letter methods and random paths on one keep-alive connection."""
    rng = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for i in range(n):
        method = "".join(rng.choice(string.ascii_uppercase) for _ in range(12))
        kind = i % 3
        if kind == 0:
            path = "/" + "".join(rng.choice(string.ascii_lowercase) for _ in range(16))
        elif kind == 1:
            path = "/api/v1/objects/" + "".join(rng.choice(string.ascii_lowercase) for _ in range(10)) + "/"
        else:
            path = "/api/v1/nothing/" + str(rng.randrange(10 ** 9)) + "?q=" + str(rng.randrange(10 ** 9))
        conn.request(method, path)
        r = conn.getresponse()
        r.read()
        if r.getheader("connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()


def test_random_methods_and_paths_do_not_grow_metrics(api):
    port = int(api.url.rsplit(":", 1)[1])
    random_requests(port, 300, seed=1)  # every (route, method, status) these requests can reach
    before = api.get("/metrics").text
    random_requests(port, 10000, seed=2)
    after = api.get("/metrics").text
    # only the counters' digits may differ: 10,000 more requests add at most a few digits per line
    assert len(after) - len(before) < 2000, (len(before), len(after))
    assert "method=\"OTHER\"" in after
    for line in after.splitlines():
        assert not ("method=" in line and "method=\"OTHER\"" not in line and "method=\"GET\"" not in line
                    and "method=\"HEAD\"" not in line), line
    assert "bp_metrics_series_dropped_total 0" in after
