"""batchpipe lag and batchpipe dlq list|show|replay against the real broker and PostgreSQL: lag shows
what was published and not yet applied on the right partitions, catches up to 0 with the member that
owns each partition once a worker runs, and falls back to Kafka's committed offsets without PostgreSQL;
dlq list/show show the reasons and sources of dead letters (text and JSON) and mark duplicates; dlq
replay publishes a letter back so that a batch refused for a limit is applied once the limit is raised,
and refuses unknown letters; every subcommand has --help and fails in one line when the brokers are
unreachable."""
import json
import subprocess
import time
import uuid

import pytest
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, TopicPartition

from conftest import BROKERS, CLI_BIN, Env, free_port, wait_until
from test_ingest import FAST, Publisher, high_watermarks, make_batch

COMMANDS = [["lag"], ["dlq"], ["dlq", "list"], ["dlq", "show"], ["dlq", "replay"]]


@pytest.fixture(scope="module")
def lag_env():
    env = Env()
    env.create()
    yield env
    env.drop()


@pytest.fixture(scope="module")
def dlq_env():
    env = Env()
    env.create()
    yield env
    env.drop()


def one_line_error(r, prefix):
    """The command failed with exit 1 and said why in exactly one line starting with prefix."""
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), r.stderr
    return lines[0]


def lag_json(env, *args, **extra):
    r = env.cli("lag", "--json", *args, **extra)
    return json.loads(r.stdout)


def dlq_list(env, *args):
    r = env.cli("dlq", "list", "--json", "--limit", "0", *args)
    return [json.loads(line) for line in r.stdout.splitlines()]


def read_message(topic, partition, offset):
    """The message at partition@offset of topic, read with a consumer that joins no group."""
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "bp-test-read-" + uuid.uuid4().hex,
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                return m
        raise AssertionError(f"no message at {topic} {partition}@{offset}")
    finally:
        c.close()


# ------------------------------------------------------------------------------------------------
# help and failures

@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: "-".join(c))
def test_every_subcommand_has_help(lag_env, cmd):
    r = lag_env.cli(*cmd, "--help")
    assert r.stdout.startswith("usage: batchpipe [settings] " + " ".join(cmd)), r.stdout
    assert r.stderr == ""
    if cmd[-1] == "replay":
        assert "dead-lettered again" in r.stdout  # still invalid: it comes back


@pytest.mark.parametrize("cmd", [["lag"], ["dlq", "list"], ["dlq", "show", "0:0"], ["dlq", "replay", "0:0"]],
                         ids=lambda c: "-".join(c))
def test_unreachable_brokers_fail_in_one_line(lag_env, cmd):
    brokers = f"127.0.0.1:{free_port()}"  # nothing listens there
    # bounded: the subprocess deadline fails the test if the command hangs
    r = subprocess.run([CLI_BIN, "--kafka-brokers", brokers, *cmd, "--timeout", "2"], env=lag_env.environ(),
                       capture_output=True, text=True, timeout=30)
    line = one_line_error(r, f"batchpipe {' '.join(cmd[:2] if cmd[0] == 'dlq' else cmd[:1])}: ")
    assert brokers in line, line
    assert r.stdout == ""


def test_missing_topic_fails_in_one_line(lag_env):
    line = one_line_error(lag_env.cli("--topic", "bp-test-missing-" + uuid.uuid4().hex, "lag", check=False),
                          "batchpipe lag: ")
    assert "does not exist" in line
    line = one_line_error(lag_env.cli("--dlq-topic", "bp-test-missing-" + uuid.uuid4().hex, "dlq", "list",
                                      check=False), "batchpipe dlq list: ")
    assert "does not exist" in line


@pytest.mark.parametrize("args", [["dlq", "show"], ["dlq", "show", "1"], ["dlq", "show", "a:1"],
                                  ["dlq", "replay"], ["dlq", "replay", "0:1", "--all"], ["dlq", "list", "--limit"],
                                  ["dlq", "list", "--limit", "-1"], ["dlq", "frobnicate"], ["lag", "--watch", "0"],
                                  ["lag", "extra"], ["dlq", "list", "--bogus"]], ids=lambda a: " ".join(a))
def test_usage_errors_exit_2_in_one_line(lag_env, args):
    r = lag_env.cli(*args, check=False)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("batchpipe "), r.stderr


# ------------------------------------------------------------------------------------------------
# lag

def test_lag_counts_what_is_not_applied_then_catches_up_with_a_worker(lag_env):
    env = lag_env
    pub = Publisher(env.topic)
    n = 30
    for i in range(n):
        doc, value = make_batch(2, seed=f"lag-{i}", batch_id=f"lag-{i}")
        pub.send(value, key=doc["batch_id"].encode())
    where = pub.flush()
    per_part = {p: 0 for p in range(env.partitions)}
    for p, _ in where.values():
        per_part[p] += 1
    assert sum(per_part.values()) == n

    # no worker has run: every message published is lag, on its partition
    rep = lag_json(env)
    assert rep["group"] == env.group and rep["topic"] == env.topic
    assert rep["total_lag"] == n
    assert rep["members"] == []
    for part in rep["partitions"]:
        p = part["partition"]
        assert part["lag"] == per_part[p], rep
        assert part["high_watermark"] == per_part[p]
        assert part["committed"] is None and part["applied"] is None and part["member"] is None
    text = env.cli("lag").stdout
    assert f"total lag {n} messages on {env.partitions} partitions" in text
    assert "no worker has consumed it yet" in text

    # a worker applies everything: lag 0, the member shows up owning every partition, and Kafka's
    # committed offsets (up to ~1 s behind) never pass PostgreSQL's and then reach them
    worker = env.start_worker(**FAST)

    def caught_up():
        if not worker.alive():
            raise AssertionError(f"worker exited:\n{worker.logs()[-3000:]}")
        r = lag_json(env)
        for part in r["partitions"]:
            if part["committed"] is not None and part["applied"] is not None:
                assert part["committed"] <= part["applied"], r
        return r if r["total_lag"] == 0 and all(p["member"] for p in r["partitions"]) else None

    rep = wait_until(caught_up, 60, "lag 0 with every partition owned")
    for part in rep["partitions"]:
        assert part["applied"] == part["high_watermark"] == per_part[part["partition"]]
    assert len(rep["members"]) == 1
    member = rep["members"][0]
    assert member["client_id"] == "batchpipe-ingest"
    assert member["partitions"] == list(range(env.partitions))
    assert all(p["member"] == member["consumer_id"] for p in rep["partitions"])
    rep = wait_until(lambda: (r := lag_json(env)) and all(p["committed"] == p["applied"] for p in r["partitions"])
                     and r, 30, "Kafka's committed offsets to reach PostgreSQL's")
    assert rep["state"] == "Stable"
    text = env.cli("lag").stdout
    assert "total lag 0 messages" in text
    assert f"batchpipe-ingest@{member['host']}" in text and "Stable" in text

    # without members the group still shows its offsets
    assert worker.stop() == 0
    rep = wait_until(lambda: (r := lag_json(env)) and r["members"] == [] and r, 30, "the member to leave")
    assert rep["total_lag"] == 0
    assert [p["applied"] for p in rep["partitions"]] == [per_part[p] for p in range(env.partitions)]
    assert [p["committed"] for p in rep["partitions"]] == [per_part[p] for p in range(env.partitions)]


def test_lag_without_postgresql_uses_kafkas_committed_offsets(lag_env):
    env = lag_env
    hw = high_watermarks(env.topic, env.partitions)
    committed = {p["partition"]: p["committed"] for p in lag_json(env)["partitions"]}
    # one more message, not applied (no worker runs now)
    pub = Publisher(env.topic)
    pub.send(make_batch(1, seed="lag-more", batch_id="lag-more")[1], key=b"lag-more")
    (part, _), = pub.flush().values()

    dead_dsn = f"host=127.0.0.1 port={free_port()} dbname=nothing user=postgres"
    r = env.cli("lag", "--json", BP_PG_DSN=dead_dsn)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("batchpipe lag: PostgreSQL unreachable"), r.stderr
    rep = json.loads(r.stdout)
    assert rep["postgresql_error"]
    for p in rep["partitions"]:
        assert p["applied"] is None
        assert p["committed"] == committed[p["partition"]]
        assert p["lag"] == (hw[p["partition"]] + (p["partition"] == part)) - committed[p["partition"]]
    assert rep["total_lag"] == 1
    text = env.cli("lag", BP_PG_DSN=dead_dsn).stdout
    assert "total lag 1 message on" in text and "from Kafka's committed offsets" in text


# ------------------------------------------------------------------------------------------------
# dlq

def test_dlq_list_show_and_replay(dlq_env):
    env = dlq_env
    # a worker that refuses batches of more than 2 objects: the third batch is dead-lettered only
    # because of that limit
    worker = env.start_worker(BP_MAX_OBJECTS="2", **FAST)
    big_doc, big = make_batch(3, seed="dlq-big", batch_id="dlq-big-" + uuid.uuid4().hex[:8])
    not_json = b'{"batch_id": "nj", "objects": ['
    schema = json.dumps({"batch_id": "sv", "objects": [{"object_id": "sv-1"}]}).encode()
    pub = Publisher(env.topic)
    pub.send(not_json, key=b"nj", headers=[("request-id", b"req-nj")])
    pub.send(schema, key=b"sv", headers=[("request-id", b"req-sv")])
    pub.send(big, key=big_doc["batch_id"].encode(), headers=[("request-id", b"req-big")])
    where = pub.flush()

    letters = wait_until(lambda: (ls := dlq_list(env)) and len(ls) >= 3 and ls, 60, "three dead letters")
    assert len(letters) == 3, letters
    by_key = {l["key"]: l for l in letters}
    for i, (key, rid) in enumerate([("nj", "req-nj"), ("sv", "req-sv"), (big_doc["batch_id"], "req-big")]):
        l = by_key[key]
        assert l["source"] == {"topic": env.topic, "partition": where[i][0], "offset": where[i][1]}, l
        assert l["request_id"] == rid
        assert l["duplicate_of"] is None
    assert by_key["nj"]["reason"].startswith("invalid JSON")
    assert by_key["sv"]["reason"].startswith("schema violation") and '"data"' in by_key["sv"]["reason"]
    assert "objects" in by_key[big_doc["batch_id"]]["reason"], by_key[big_doc["batch_id"]]
    assert by_key["sv"]["value_bytes"] == len(schema)
    ref = {k: f"{l['partition']}:{l['offset']}" for k, l in by_key.items()}

    # the table: one line per letter with its source, key, request-id and reason
    text = env.cli("dlq", "list").stdout.splitlines()
    assert text[0].split() == ["LETTER", "SOURCE", "KEY", "REQUEST-ID", "DUP-OF", "REASON"]
    row = next(line for line in text if line.startswith(ref["sv"] + " "))
    assert f"{env.topic}/{where[1][0]}@{where[1][1]}" in row and "req-sv" in row and "schema violation" in row
    assert text[-1] == "3 letters"

    # a duplicate letter (at-least-once delivery) is marked, or left out with --unique
    sv_raw = read_message(env.dlq_topic, by_key["sv"]["partition"], by_key["sv"]["offset"])
    dup = Publisher(env.dlq_topic)
    dup.send(sv_raw.value(), key=sv_raw.key(), headers=sv_raw.headers())
    dup.flush()
    letters = dlq_list(env)
    assert len(letters) == 4
    dups = [l for l in letters if l["duplicate_of"] is not None]
    assert len(dups) == 1 and dups[0]["duplicate_of"] == ref["sv"] and dups[0]["key"] == "sv"
    assert len(dlq_list(env, "--unique")) == 3
    text = env.cli("dlq", "list").stdout
    assert "4 letters (1 duplicate of an earlier letter's source)" in text
    limited = env.cli("dlq", "list", "--limit", "1").stdout.splitlines()
    assert len(limited) == 4 and limited[2] == "1 letter" and limited[3].startswith("more letters follow")

    # show: every header, the full reason, the value (indented when JSON)
    shown = env.cli("dlq", "show", ref["sv"], ref["nj"]).stdout
    for header in ("dlq-reason: schema violation", f"dlq-source-topic: {env.topic}",
                   f"dlq-source-partition: {where[1][0]}", f"dlq-source-offset: {where[1][1]}",
                   "request-id: req-sv", "request-id: req-nj", "dlq-reason: invalid JSON"):
        assert header in shown, shown
    assert '\n  "objects": [\n' in shown  # the schema violation's value, indented
    assert not_json.decode() in shown  # not JSON: as it is
    cut = env.cli("dlq", "show", ref["sv"], "--max-bytes", "5").stdout
    assert f"the first 5 of {len(schema)} bytes are shown" in cut
    got = json.loads(env.cli("dlq", "show", ref["sv"], "--json").stdout)
    assert got["value"] == schema.decode() and got["key"] == "sv"
    assert {h["name"]: h["value"] for h in got["headers"]}["dlq-reason"] == by_key["sv"]["reason"]

    # an unknown letter: one clear line, nothing published
    hw = high_watermarks(env.topic, env.partitions)
    line = one_line_error(env.cli("dlq", "replay", ref["sv"], "0:999999", check=False), "batchpipe dlq replay: ")
    assert "no letter at 0:999999" in line and "nothing was replayed" in line
    line = one_line_error(env.cli("dlq", "show", "99:0", check=False), "batchpipe dlq show: ")
    assert "no letter at 99:0" in line
    # --all --dry-run: one per source (the duplicate is skipped), nothing published
    dry = env.cli("dlq", "replay", "--all", "--dry-run").stdout
    assert dry.count("would replay ") == 3 and "(1 duplicate letter skipped)" in dry, dry
    assert high_watermarks(env.topic, env.partitions) == hw

    # with the limit raised, replaying the big batch's letter applies it
    assert worker.stop() == 0
    worker = env.start_worker(**FAST)
    r = env.cli("dlq", "replay", ref[big_doc["batch_id"]])
    assert r.stdout.startswith(f"replayed {ref[big_doc['batch_id']]} "), r.stdout
    assert "1 replayed to " + env.topic + ", 0 failed" in r.stdout
    dest = r.stdout.split(" -> ")[1].split()[1]  # "TOPIC P@OFFSET"
    part, off = (int(x) for x in dest.split("@"))
    wait_until(lambda: env.query("SELECT count(*) FROM objects WHERE batch_id = %s", (big_doc["batch_id"],))
               == [(3,)], 60, "the replayed batch to be applied")
    m = read_message(env.topic, part, off)
    headers = dict(m.headers())
    assert m.key() == big_doc["batch_id"].encode() and m.value() == big
    assert headers["request-id"] == b"req-big"
    assert headers["dlq-replayed-from"] == f"{env.dlq_topic}/{ref[big_doc['batch_id']].replace(':', '@')}".encode()

    # a message still invalid comes back to the dead-letter topic, from where the replay put it
    r = env.cli("dlq", "replay", ref["nj"])
    dest = r.stdout.split(" -> ")[1].split()[1]
    part, off = (int(x) for x in dest.split("@"))
    back = wait_until(lambda: [l for l in dlq_list(env) if l["source"] == {"topic": env.topic, "partition": part,
                                                                          "offset": off}], 60,
                      "the replayed invalid message to be dead-lettered again")
    assert back[0]["reason"].startswith("invalid JSON") and back[0]["request_id"] == "req-nj"
    # the new letter says which letter it was replayed from, and keeps its original's timestamp: the
    # replayed message's, which the broker set (the topic has message.timestamp.type=LogAppendTime)
    again = read_message(env.dlq_topic, back[0]["partition"], back[0]["offset"])
    replayed = read_message(env.topic, part, off)
    assert dict(again.headers())["dlq-replayed-from"] == f"{env.dlq_topic}/{ref['nj'].replace(':', '@')}".encode()
    assert replayed.timestamp()[0] == TIMESTAMP_LOG_APPEND_TIME
    assert again.timestamp()[1] == replayed.timestamp()[1]
    assert worker.stop() == 0


# --- batchpipe topics: as durable as the cluster allows ------------------------------------------

def topic_configs(admin, topic, names=("min.insync.replicas", "message.timestamp.type", "retention.ms")):
    from confluent_kafka.admin import ConfigResource
    [f] = admin.describe_configs([ConfigResource("topic", topic)]).values()
    return {k: v.value for k, v in f.result(30).items() if k in names}


def test_topics_on_one_broker_use_rf_1_and_say_it_is_not_durable(lag_env):
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": BROKERS})
    topic = "bp-test-rf1-" + uuid.uuid4().hex[:10]
    try:
        r = lag_env.cli("topics", BP_TOPIC=topic, BP_DLQ_TOPIC=topic + ".dlq")
        warnings = [l for l in r.stderr.splitlines() if "warning" in l]
        assert len(warnings) == 1, r.stderr  # said once, not once per topic
        assert "1 broker" in warnings[0] and "one broker" in warnings[0]
        assert f"topic {topic}: created with 3 partitions, replication factor 1, min.insync.replicas 1" in r.stdout
        md = wait_until(lambda: (lambda m: m if topic in m and topic + ".dlq" in m else None)(
            admin.list_topics(timeout=10).topics), 15, "both topics in the metadata")
        assert all(len(p.replicas) == 1 for p in md[topic].partitions.values())
        assert topic_configs(admin, topic)["message.timestamp.type"] == "LogAppendTime"
        assert topic_configs(admin, topic + ".dlq")["message.timestamp.type"] == "CreateTime"
        # more replicas than brokers: refused in one line, nothing half done
        r = lag_env.cli("topics", "--replication-factor", "3", check=False,
                        BP_TOPIC=topic + "-x", BP_DLQ_TOPIC=topic + "-x.dlq")
        assert r.returncode == 1 and "replication factor 3 needs 3 brokers; the cluster has 1" in r.stderr
        r = lag_env.cli("topics", "--replication-factor", "1", "--min-insync-replicas", "2", check=False,
                        BP_TOPIC=topic, BP_DLQ_TOPIC=topic + ".dlq")
        assert r.returncode == 2 and "--min-insync-replicas 2 is more than the replication factor 1" in r.stderr
        r = lag_env.cli("topics", "--replication-factor", "zero", check=False)
        assert r.returncode == 2 and "--replication-factor" in r.stderr
    finally:
        admin.delete_topics([topic, topic + ".dlq"])


def test_topics_fixes_an_existing_topic_and_keeps_its_other_settings(lag_env):
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": BROKERS})
    topic = "bp-test-fix-" + uuid.uuid4().hex[:10]
    # made by hand before: CreateTime, 2 partitions, a retention of its own
    for f in admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1,
                                           config={"retention.ms": "123456789"})]).values():
        f.result(30)
    try:
        r = lag_env.cli("topics", BP_TOPIC=topic, BP_DLQ_TOPIC=topic + ".dlq")
        assert f"topic {topic}: has 2 partitions, BP_PARTITIONS is 3: left as is" in r.stdout
        assert f"topic {topic}: message.timestamp.type CreateTime, setting LogAppendTime" in r.stdout
        assert f"topic {topic}: ready" in r.stdout
        assert topic_configs(admin, topic) == {"min.insync.replicas": "1", "message.timestamp.type": "LogAppendTime",
                                               "retention.ms": "123456789"}
        # twice: nothing left to fix, nothing changed
        r = lag_env.cli("topics", BP_TOPIC=topic, BP_DLQ_TOPIC=topic + ".dlq")
        assert "setting" not in r.stdout and f"topic {topic}: ready" in r.stdout, r.stdout
        assert topic_configs(admin, topic)["retention.ms"] == "123456789"
    finally:
        admin.delete_topics([topic, topic + ".dlq"])
