"""ops/run as a person uses it on a fresh machine: no broker running, so it starts one itself; Ctrl-C
(SIGINT to its whole process group, as a terminal sends it) stops the API, the worker and that broker,
and ops/run returns. Its own run dir, ports and database (on the shared PostgreSQL); the shared broker
is never touched. BP_NO_BUILD=1: it uses the tree ctest built, never building (or reconfiguring) one."""
import os
import signal
import subprocess
import tempfile
import uuid

import psycopg2
import requests

from conftest import BASE_DSN, BUILD, SOURCE, dsn_with_db, free_port, wait_until

START_TIMEOUT = 240  # formats KRaft storage and starts a JVM broker on a loaded machine


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie of ours counts as gone (ops/run is its parent, or init is)
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def group_gone(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return all(gone(int(p)) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == pgid)


def _pgid(pid):
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_ctrl_c_stops_the_broker_it_started_and_returns():
    run_dir = tempfile.mkdtemp(prefix="bp-opsrun-")
    dbname = "bp_test_opsrun_" + uuid.uuid4().hex[:10]
    http_port = free_port()
    kafka_port = free_port()
    env = dict(os.environ)
    env.update({
        "BP_RUN_DIR": run_dir,
        "BP_BUILD_DIR": BUILD,
        "BP_NO_BUILD": "1",
        "BP_KAFKA_PORT": str(kafka_port),
        "BP_KAFKA_CONTROLLER_PORT": str(free_port()),
        "BP_KAFKA_BROKERS": f"127.0.0.1:{kafka_port}",
        "BP_PG_DSN": dsn_with_db(BASE_DSN, dbname),
        "BP_HTTP_HOST": "127.0.0.1",
        "BP_HTTP_PORT": str(http_port),
        "BP_HTTP_THREADS": "1",
        "BP_HEALTH_PORT": str(free_port()),
        "BP_PARTITIONS": "3",
        "KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m",
    })
    for name in ("BP_TOPIC", "BP_DLQ_TOPIC", "BP_GROUP_ID"):
        env.pop(name, None)
    log = open(os.path.join(run_dir, "ops-run.log"), "wb")
    p = subprocess.Popen([os.path.join(SOURCE, "ops", "run")], env=env, stdin=subprocess.DEVNULL, stdout=log,
                         stderr=subprocess.STDOUT, start_new_session=True)  # its own process group
    pgid = p.pid
    broker_pid = None

    def output():
        with open(os.path.join(run_dir, "ops-run.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")[-4000:]

    try:
        def answers():
            if p.poll() is not None:
                raise AssertionError(f"ops/run exited ({p.returncode}):\n{output()}")
            return requests.get(f"http://127.0.0.1:{http_port}/api/v1/", timeout=2).status_code == 200
        wait_until(answers, START_TIMEOUT, "ops/run's API to answer")
        with open(os.path.join(run_dir, "kafka", "pid")) as f:
            broker_pid = int(f.read())
        assert not gone(broker_pid), "ops/run said it started a broker, but it is not running"

        os.killpg(pgid, signal.SIGINT)  # Ctrl-C in the terminal
        try:
            rc = p.wait(30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"ops/run did not return within 30 s of Ctrl-C:\n{output()}") from None
        assert rc == 0, output()
        assert gone(broker_pid), f"the broker ops/run started (pid {broker_pid}) still runs:\n{output()}"
        wait_until(lambda: group_gone(pgid), 10, "every process of ops/run's group to be gone")
        assert "Kafka: stopping" in output()
    finally:
        if p.poll() is None or not group_gone(pgid):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if broker_pid is not None and not gone(broker_pid):
            os.kill(broker_pid, signal.SIGKILL)
        p.wait(30)
        log.close()
        conn = psycopg2.connect(BASE_DSN)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.close()
        subprocess.run(["rm", "-rf", run_dir], check=False)
