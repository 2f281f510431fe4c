"""Fixtures for the integration tests: a fresh database and fresh topics per test module, the real
batchpipe binaries started as processes, and polling with deadlines (never bare sleeps).

Every test here runs against the real PostgreSQL and Kafka that ops/test starts."""
import base64
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import psycopg2
import pytest
import requests

BUILD = os.environ.get("BP_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
SOURCE = os.environ.get("BP_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BASE_DSN = os.environ.get("BP_TEST_PG_DSN", "host=127.0.0.1 port=5432 dbname=batchpipe user=postgres")
BROKERS = os.environ.get("BP_KAFKA_BROKERS", "127.0.0.1:9092")

API_BIN = os.path.join(BUILD, "api", "batchpipe-api")
INGEST_BIN = os.path.join(BUILD, "ingest", "batchpipe-ingest")
CLI_BIN = os.path.join(BUILD, "cli", "batchpipe")
FIXTURES = os.path.join(SOURCE, "tests", "fixtures")


def wait_until(predicate, timeout, what, interval=0.05):
    """Poll predicate until it returns a truthy value; fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - report the last failure on timeout
            last_exc = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)


def receipt_token(topic, partition, offset, batch_id=None):
    """The receipt token of (partition, offset) in topic, as shared/bp_token.c writes it
    (tests/unit/test_token.c): without batch_id version 1,
    "1.<partition>.<offset>.<FNV-1a 32 of the topic's name, 8 hex digits>"; with it version 2,
    "2.<partition>.<offset>.<the hash continued over '<partition>.<offset>.' and the batch id>.<base64url
    of the batch id, unpadded>" (what the API hands out for batch ids of up to 255 bytes)."""
    def fnv(data, h=2166136261):
        for b in data:
            h = ((h ^ b) * 16777619) & 0xFFFFFFFF
        return h
    h = fnv(topic.encode("utf-8"))
    if batch_id is None:
        return f"1.{partition}.{offset}.{h:08x}"
    raw = batch_id.encode("utf-8")
    h = fnv(raw, fnv(f"{partition}.{offset}.".encode(), h))
    b64 = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return f"2.{partition}.{offset}.{h:08x}.{b64}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dsn_with_db(dsn, dbname):
    parts = [p for p in dsn.split() if not p.startswith("dbname=")]
    return " ".join(parts + [f"dbname={dbname}"])


class Proc:
    """A batchpipe process with its log captured to a file."""

    def __init__(self, argv, env, name):
        self.name = name
        # a file in a directory of our own: mktemp's free name could be taken before open() (and the
        # log is kept afterwards, as before, for reading after a failure)
        self.log_path = os.path.join(tempfile.mkdtemp(prefix=f"bp-{name}-"), f"{name}.log")
        self.log = open(self.log_path, "wb")
        # setpriv execs the binary with a parent-death signal: if pytest dies (a ctest timeout), the
        # process dies with it instead of lingering
        self.p = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", "--"] + list(argv), env=env, stdout=self.log,
                                  stderr=subprocess.STDOUT)

    def logs(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_lines(self):
        """The JSON log lines, parsed (lines that are not JSON are skipped)."""
        out = []
        for line in self.logs().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def alive(self):
        return self.p.poll() is None

    def send(self, sig):
        if self.alive():
            self.p.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Send sig and wait; returns the exit code."""
        self.send(sig)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise AssertionError(f"{self.name} did not stop within {timeout}s after {sig!r}:\n{self.logs()[-4000:]}")

    def kill9(self):
        if self.alive():
            self.p.kill()
        self.p.wait()


class Env:
    """One test module's world: its own database, topics and consumer group."""

    def __init__(self, partitions=3):
        tag = uuid.uuid4().hex[:10]
        self.dbname = f"bp_test_{tag}"
        self.dsn = dsn_with_db(BASE_DSN, self.dbname)
        self.topic = f"bp-test-{tag}"
        self.dlq_topic = f"bp-test-{tag}.dlq"
        self.group = f"bp-test-group-{tag}"
        self.partitions = partitions
        self.procs = []
        self.vars = {
            "BP_PG_DSN": self.dsn,
            "BP_KAFKA_BROKERS": BROKERS,
            "BP_TOPIC": self.topic,
            "BP_DLQ_TOPIC": self.dlq_topic,
            "BP_GROUP_ID": self.group,
            "BP_PARTITIONS": str(partitions),
            "BP_LOG_LEVEL": "info",
            "BP_HEALTH_PORT": "0",  # workers' probe port: tests that need it pass a free port
        }

    def environ(self, **extra):
        env = dict(os.environ)
        env.update(self.vars)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def cli(self, *args, check=True, **extra):
        r = subprocess.run([CLI_BIN, *args], env=self.environ(**extra), capture_output=True, text=True,
                           timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"batchpipe {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def create(self):
        self.cli("migrate")
        self.cli("topics")

    def drop(self):
        for p in self.procs:
            if p.alive():
                p.kill9()
        conn = psycopg2.connect(BASE_DSN)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        conn.close()

    def db(self):
        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        return conn

    def query(self, sql, params=()):
        conn = self.db()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def start_api(self, **extra):
        """Start an API process; extra: its settings and environment (a preloaded library too: a
        wrapper command that forks would outlive the test's stop)."""
        port = free_port()
        extra.setdefault("BP_HTTP_HOST", "127.0.0.1")
        extra.setdefault("BP_HTTP_THREADS", "2")
        proc = Proc([API_BIN], self.environ(BP_HTTP_PORT=port, **extra), "api")
        self.procs.append(proc)
        api = Api(proc, f"http://127.0.0.1:{port}")

        def answers():
            if not proc.alive():
                raise AssertionError(f"API exited ({proc.p.returncode}):\n{proc.logs()[-4000:]}")
            return requests.get(api.url + "/api/v1/", timeout=2).status_code == 200

        wait_until(answers, 30, "the API to answer GET /api/v1/")
        return api

    def start_worker(self, **extra):
        proc = Proc([INGEST_BIN], self.environ(**extra), "ingest")
        self.procs.append(proc)
        return proc

    def wait_assigned(self, proc, timeout=60):
        """Wait until the worker's log says it was assigned partitions."""
        def assigned():
            if not proc.alive():
                raise AssertionError(f"worker exited ({proc.p.returncode}):\n{proc.logs()[-4000:]}")
            return any(l.get("msg", "").startswith("assigned") for l in proc.log_lines())
        wait_until(assigned, timeout, "the worker to be assigned partitions")


class Api:
    def __init__(self, proc, url):
        self.proc = proc
        self.url = url
        self.session = requests.Session()

    def get(self, path, **kw):
        kw.setdefault("timeout", 30)
        return self.session.get(self.url + path, **kw)

    def post(self, path, body=None, **kw):
        kw.setdefault("timeout", 60)
        if body is not None and "data" not in kw:
            if isinstance(body, str):
                body = body.encode("utf-8")
            kw["data"] = json.dumps(body).encode("utf-8") if not isinstance(body, bytes) else body
            kw.setdefault("headers", {}).setdefault("Content-Type", "application/json")
        return self.session.post(self.url + path, **kw)

    def delete(self, path, **kw):
        kw.setdefault("timeout", 30)
        return self.session.delete(self.url + path, **kw)


@pytest.fixture(scope="module")
def bp_env():
    env = Env()
    env.create()
    yield env
    env.drop()


@pytest.fixture
def api(bp_env):
    a = bp_env.start_api()
    yield a
    if a.proc.alive():
        a.proc.stop()
