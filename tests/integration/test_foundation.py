"""Foundation: the binaries start against the real services, answer, join the consumer group, stop
cleanly on SIGINT and SIGTERM, and refuse bad configuration with one clear line."""
import json
import signal
import subprocess

from confluent_kafka.admin import AdminClient

from conftest import API_BIN, BROKERS, CLI_BIN, INGEST_BIN, wait_until


def test_api_lists_endpoints(api):
    r = api.get("/api/v1/")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["batches"].endswith("/api/v1/batches/")
    assert body["objects"].endswith("/api/v1/objects/")
    # trailing slash is optional
    assert api.get("/api/v1").status_code == 200


def test_unknown_route_is_a_json_404(api):
    r = api.get("/api/v2/nothing")
    assert r.status_code == 404
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["status"] == 404


def test_wrong_method_is_405_with_allow(api):
    r = api.session.put(api.url + "/api/v1/", data="{}", timeout=10)
    assert r.status_code == 405
    assert "GET" in r.headers["Allow"]
    assert r.json()["title"] == "Method Not Allowed"


def test_api_stops_cleanly_on_sigint_and_sigterm(bp_env):
    for sig in (signal.SIGINT, signal.SIGTERM):
        a = bp_env.start_api()
        assert a.proc.stop(sig) == 0
        assert any(l.get("msg") == "stopped" for l in a.proc.log_lines())


def test_worker_joins_group_logs_assignment_and_stops(bp_env):
    for sig in (signal.SIGTERM, signal.SIGINT):
        w = bp_env.start_worker()
        bp_env.wait_assigned(w)
        lines = w.log_lines()
        assigned = [l for l in lines if l.get("msg", "").startswith("assigned")]
        assert bp_env.topic in assigned[0]["msg"]
        assert w.stop(sig) == 0
        assert any(l.get("msg", "").startswith("leaving group") for l in w.log_lines())


def test_bad_setting_stops_with_one_clear_line(bp_env):
    for binary in (API_BIN, INGEST_BIN, CLI_BIN):
        r = subprocess.run([binary, "config"] if binary == CLI_BIN else [binary],
                           env=bp_env.environ(BP_LOG_LEVEL="chatty"), capture_output=True, text=True, timeout=30)
        assert r.returncode == 2
        assert "BP_LOG_LEVEL" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_help_on_every_binary(bp_env):
    for binary in (API_BIN, INGEST_BIN, CLI_BIN):
        r = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0
        assert "BP_PG_DSN" in r.stdout


def test_migrate_twice_is_harmless(bp_env):
    r = bp_env.cli("migrate")
    assert "0 applied" in r.stdout
    rows = bp_env.query("SELECT count(*) FROM bp_schema_migrations")
    assert rows[0][0] >= 1


def test_configuration_doc_matches_the_settings_table():
    import os
    from conftest import SOURCE
    r = subprocess.run([CLI_BIN, "settings"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0
    with open(os.path.join(SOURCE, "docs", "CONFIGURATION.md")) as f:
        doc = f.read()
    generated = doc.split("<!-- generated: begin -->\n")[1].split("<!-- generated: end -->")[0]
    assert generated == r.stdout, "docs/CONFIGURATION.md is stale: run ops/gen-config-doc"


def test_healthz(api):
    r = api.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_worker_refuses_to_start_when_its_health_port_is_taken(bp_env):
    import socket
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen(1)
        port = s.getsockname()[1]
        w = bp_env.start_worker(BP_HEALTH_PORT=port)
        assert w.p.wait(30) == 1
        assert any("BP_HEALTH_PORT" in l.get("msg", "") for l in w.log_lines())


def test_setup_subcommands_have_help_and_refuse_stray_arguments(bp_env):
    for cmd in ("migrate", "topics", "config", "hash-key", "settings"):
        r = bp_env.cli(cmd, "--help")
        assert r.stdout.startswith("usage: batchpipe") and cmd in r.stdout.splitlines()[0], r.stdout
    for cmd in ("migrate", "topics", "config"):
        r = bp_env.cli(cmd, "extra", check=False)
        assert r.returncode == 2 and r.stderr.strip().splitlines() == [
            f"batchpipe {cmd}: takes no arguments (see batchpipe {cmd} --help)"]


def test_config_shows_the_effective_settings_with_secrets_masked(bp_env):
    dsn = bp_env.dsn + " password=s3cret-pw"
    r = bp_env.cli("config", BP_PG_DSN=dsn, BP_API_KEY="k3y-0123456789", BP_API_URL="http://api.example:9000")
    shown = json.loads(r.stdout)
    assert shown["BP_API_URL"] == "http://api.example:9000" and shown["BP_TOPIC"] == bp_env.topic
    assert shown["BP_API_KEY"] == "****" and "password=****" in shown["BP_PG_DSN"]
    assert "s3cret" not in r.stdout and "k3y-" not in r.stdout


def test_topics_creates_missing_topics_and_is_harmless_twice(bp_env):
    topic = bp_env.topic + "-extra"
    admin = AdminClient({"bootstrap.servers": BROKERS})
    assert topic not in admin.list_topics(timeout=10).topics
    for _ in range(2):
        r = bp_env.cli("topics", BP_TOPIC=topic, BP_DLQ_TOPIC=topic + ".dlq", BP_PARTITIONS="5")
        assert f"topic {topic}: ready" in r.stdout and f"topic {topic}.dlq: ready" in r.stdout
        def both_listed():  # the broker's metadata may lag its create acknowledgement a moment
            m = admin.list_topics(timeout=10).topics
            return topic in m and topic + ".dlq" in m and m

        meta = wait_until(both_listed, 15, "both topics in the broker's metadata")
        assert len(meta[topic].partitions) == 5 and len(meta[topic + ".dlq"].partitions) == 5
    admin.delete_topics([topic, topic + ".dlq"])
