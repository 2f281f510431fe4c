"""Numbers exactly as sent (issue #11 item 1): a number posted through the API (a batch, or one object)
or published straight to the topic is stored with the same decimal value it was written with - no
binary rounding anywhere - in jsonb's numeric form (jsonb writes 1e2 as 100 and -0.0 as 0.0); GET
shows it so, and data= and value= filters find it by any spelling of that value, and not by a near
miss. Requests and the topic are driven as a producer would; bodies are written by hand so that each
number's text is exactly the one under test (Python's json would respell floats)."""
import json
import os
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import BROKERS, SOURCE, Env, wait_until

# name -> (the text sent, the text jsonb gives back, other spellings of the same value)
NUMBERS = {
    "price": ("19.99", "19.99", ["19.990", "1999e-2"]),
    "big": ("12345678901234567890", "12345678901234567890", ["1.234567890123456789e19"]),
    "exp": ("1e2", "100", ["100", "100.0", "1E+2"]),
    "negzero": ("-0.0", "0.0", ["0", "-0"]),
    "tenth": ("0.1", "0.1", ["0.10", "1e-1"]),
    "trailing": ("1.50", "1.50", ["1.5"]),
    "long": ("1234567890.123456789012345678901234567890", "1234567890.123456789012345678901234567890", []),
}
# near misses: a value that must not match the one named (the first is what the API used to store)
NEAR = {
    "price": "19.989999999999998",
    "big": "12345678901234567000",
    "tenth": "0.10000000000000001",
    "long": "1234567890.1234567",
}
PATHS = ("batch", "object", "direct")


def raw_object(object_id, run, lexeme):
    return ('{"object_id": "%s", "data": [{"key": "run", "value": "%s"}, {"key": "v", "value": %s}]}'
            % (object_id, run, lexeme))


def lexemes(text):
    """JSON text parsed with every number kept as its text."""
    return json.loads(text, parse_float=lambda s: ("num", s), parse_int=lambda s: ("num", s))


def oid(path, name, run):
    return f"{path}-{name}-{run}"


@pytest.fixture(scope="module")
def stored(bp_env):
    """Every number of NUMBERS sent the three ways, and the near misses through the API, all applied."""
    api = bp_env.start_api()
    worker = bp_env.start_worker()
    bp_env.wait_assigned(worker)
    run = uuid.uuid4().hex[:10]
    headers = {"Content-Type": "application/json"}

    body = '{"batch_id": "nb-%s", "objects": [%s]}' % (
        run, ", ".join(raw_object(oid("batch", n, run), run, lex) for n, (lex, _, _) in NUMBERS.items()))
    r = api.session.post(api.url + "/api/v1/batches/", data=body.encode(), headers=headers, timeout=60)
    assert r.status_code == 202, r.text
    ack = r.json()
    for name, (lex, _, _) in NUMBERS.items():
        one = ('{"batch_id": "no-%s", "object_id": "%s", "data": [{"key": "run", "value": "%s"}, '
               '{"key": "v", "value": %s}]}' % (run, oid("object", name, run), run, lex))
        r = api.session.post(api.url + "/api/v1/objects/", data=one.encode(), headers=headers, timeout=60)
        assert r.status_code == 202, r.text
    near = '{"batch_id": "nn-%s", "objects": [%s]}' % (
        run, ", ".join(raw_object(oid("near", n, run), run, lex) for n, lex in NEAR.items()))
    r = api.session.post(api.url + "/api/v1/batches/", data=near.encode(), headers=headers, timeout=60)
    assert r.status_code == 202, r.text

    direct = '{"batch_id": "nd-%s", "objects": [%s]}' % (
        run, ", ".join(raw_object(oid("direct", n, run), run, lex) for n, (lex, _, _) in NUMBERS.items()))
    p = Producer({"bootstrap.servers": BROKERS})
    p.produce(bp_env.topic, value=direct.encode(), key=f"nd-{run}".encode())
    assert p.flush(30) == 0

    every = [oid(path, n, run) for path in PATHS for n in NUMBERS] + [oid("near", n, run) for n in NEAR]

    def all_applied():
        return all(api.get(f"/api/v1/objects/{o}/").status_code == 200 for o in every)

    wait_until(all_applied, 60, "every object to be applied")
    yield {"api": api, "run": run, "batch_body": body, "ack": ack}
    api.proc.stop()
    worker.stop()


def value_text(api, object_id):
    r = api.get(f"/api/v1/objects/{object_id}/")
    assert r.status_code == 200, r.text
    data = lexemes(r.text)["data"]
    assert data[0] == {"key": "run", "value": data[0]["value"]}
    return data[1]["value"]


@pytest.mark.parametrize("path", PATHS)
def test_get_gives_back_the_value_sent(stored, path):
    for name, (_, want, _) in NUMBERS.items():
        assert value_text(stored["api"], oid(path, name, stored["run"])) == ("num", want), name


def test_the_api_publishes_the_body_it_was_sent(stored, bp_env):
    ack = stored["ack"]
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "bp-test-numbers-" + uuid.uuid4().hex,
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(bp_env.topic, ack["partition"], ack["offset"])])

        def message():
            m = c.poll(0.5)
            return m if m is not None and m.error() is None and m.offset() == ack["offset"] else None
        msg = wait_until(message, 30, "the published batch")
    finally:
        c.close()
    assert msg.value() == stored["batch_body"].encode()


def found(api, run, **params):
    """object ids matching the filter, within this run."""
    if "data" in params:
        params["data"] = params["data"].replace("{", '{"run": "%s", ' % run, 1)
    else:
        params["data"] = '{"run": "%s"}' % run
    r = api.get("/api/v1/objects/", params={**params, "page_size": 100})
    assert r.status_code == 200, r.text
    return {o["object_id"] for o in r.json()["results"]}


@pytest.mark.parametrize("name", list(NUMBERS))
def test_filters_find_every_spelling_of_the_value(stored, name):
    api, run = stored["api"], stored["run"]
    lex, back, others = NUMBERS[name]
    want = {oid(path, name, run) for path in PATHS}
    for spelling in dict.fromkeys([lex, back] + others):
        assert found(api, run, data='{"v": %s}' % spelling) == want, spelling
        assert found(api, run, key="v", value=spelling) == want, spelling
        assert found(api, run, value=spelling) == want, spelling


@pytest.mark.parametrize("name", list(NEAR))
def test_a_near_miss_matches_neither_way(stored, name):
    api, run = stored["api"], stored["run"]
    near = NEAR[name]
    assert found(api, run, data='{"v": %s}' % near) == {oid("near", name, run)}
    assert found(api, run, key="v", value=near) == {oid("near", name, run)}
    assert value_text(api, oid("near", name, run)) == ("num", near)
    assert oid("near", name, run) not in found(api, run, data='{"v": %s}' % NUMBERS[name][0])
    assert oid("near", name, run) not in found(api, run, key="v", value=NUMBERS[name][0])


def test_migration_005_gives_old_rows_their_shortest_spelling():
    """Rows the old API wrote (17 digits of a double) get the spelling their producer sent; any other
    number, and strings, stay as they are. In a database of its own (the migration rewrites every row
    of the kind, the module's near misses too): migrated, then rows written the old way, then the
    migration run again."""
    env = Env()
    env.create()
    try:
        old = {  # stored text -> text after the migration
            "19.989999999999998": "19.99",
            "0.10000000000000001": "0.1",
            "-2.4500000000000002": "-2.45",
            "9.9999999999999995e-08": "0.0000001",
            "19.989999999999997": "19.989999999999997",  # 17 digits, but not what %.17g writes: a decimal
            "12345678901234567000": "12345678901234567000",  # the old rounding cannot be undone
            "100.0": "100.0",
            "1.50": "1.50",
            "0.30000000000000004": "0.30000000000000004",  # already the shortest spelling of its double
        }
        conn = env.db()
        try:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO batches (batch_id) VALUES ('old')")
                for i, text in enumerate(old):
                    cur.execute("INSERT INTO objects (object_id, batch_id, data, src_ts, src_partition, src_offset)"
                                " VALUES (%s, 'old', %s::jsonb, 0, 0, 0)",
                                (f"old-{i}", '[{"key": "v", "value": %s}, {"key": "s", "value": "%s"}]' % (text, text)))
            with open(os.path.join(SOURCE, "schemas", "migrations", "005_numbers.sql")) as f:
                sql = f.read()
            conn.autocommit = False
            with conn.cursor() as cur:
                cur.execute(sql)
            conn.commit()
        finally:
            conn.close()
        got = dict(env.query("SELECT object_id, data->0->>'value' FROM objects"))
        for i, (text, want) in enumerate(old.items()):
            assert got[f"old-{i}"] == want, text
        strings = [r[0] for r in env.query("SELECT data->1->>'value' FROM objects ORDER BY id")]
        assert strings == list(old)  # strings are never touched
        assert env.query("""SELECT object_id FROM objects WHERE data @> '[{"key": "v", "value": 19.99}]'""") == [("old-0",)]
    finally:
        env.drop()


def test_the_cli_queries_and_shows_numbers_as_sent(stored, bp_env):
    """batchpipe query KEY:=NUMBER sends the number as typed, and the tables show numbers as stored."""
    api, run = stored["api"], stored["run"]
    r = bp_env.cli("query", f"run={run}", "v:=19.99", BP_API_URL=api.url)
    rows = [line for line in r.stdout.splitlines() if line.startswith(("batch-", "object-", "direct-", "near-"))]
    assert sorted(line.split()[0] for line in rows) == sorted(oid(p, "price", run) for p in PATHS)
    assert all("v=19.99" in line.split() for line in rows), r.stdout
    r = bp_env.cli("query", f"run={run}", "v:=1234567890.123456789012345678901234567890", "--json",
                   BP_API_URL=api.url)
    assert {o["object_id"] for o in json.loads(r.stdout)} == {oid(p, "long", run) for p in PATHS}
    r = bp_env.cli("get", oid("object", "big", run), BP_API_URL=api.url)
    assert [line.split() for line in r.stdout.splitlines() if line.startswith("v ")] == [["v",
                                                                                         "12345678901234567890"]]
