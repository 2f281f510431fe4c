"""Counts of the lists come from counters kept by the transactions that change the data (migration
007, docs/QUERIES.md#counting): exact beyond the cap for no filter, batch_id, one pair, key, value and
key+value; right after a few hundred random operations through the real API and workers (new batches,
resubmitted and moved objects, deletes, cascades, dead letters, kill -9 of the worker, an online
rebuild), as `batchpipe counts verify` and a real count(*) both say; and the count of one pair reads
its counter, not the GIN index."""
import json
import random
import re
import urllib.parse

import psycopg2
import pytest

from conftest import Env, wait_until
from test_ingest import FAST, Publisher, wait_all_consumed

CAP = 20  # a small BP_COUNT_CAP: every count of interest here is beyond it

KEYS = {
    "type": ["shoe", "hat", "bag", "car", "sock"],
    "color": ["red", "blue", "green", "black", "white", "gold"],
    "size": [42, "42", 42.5, "L", True, None],
}


@pytest.fixture(scope="module")
def env():
    e = Env()
    e.create()
    yield e
    e.drop()


@pytest.fixture(scope="module")
def api(env):
    a = env.start_api(BP_COUNT_CAP=str(CAP), BP_LOG_LEVEL="debug")  # debug: the SQL of each query
    yield a
    if a.proc.alive():
        a.proc.stop()


def q(**params):
    return "?" + urllib.parse.urlencode(params)


def truth(env, sql, params=()):
    return env.query(sql, params)[0][0]


def contains(env, *alts, batch_id=None):
    """count(*) of objects containing any of alts (lists of pairs), in batch_id if given."""
    cond = " OR ".join(["data @> %s::jsonb"] * len(alts)) or "true"
    params = [json.dumps(a) for a in alts]
    sql = f"SELECT count(*) FROM objects WHERE ({cond})"
    if batch_id is not None:
        sql += " AND batch_id = %s"
        params.append(batch_id)
    return truth(env, sql, params)


def api_count(api, path, query):
    r = api.get(path + query)
    assert r.status_code == 200, r.text
    body = r.json()
    return body["count"], body["count_exact"]


def filter_cases(env):
    """(query string, true count) for every filter kind a counter serves."""
    cases = [("", truth(env, "SELECT count(*) FROM objects"))]
    for (b,) in env.query("SELECT DISTINCT batch_id FROM objects ORDER BY 1 LIMIT 8"):
        cases.append((q(batch_id=b), contains(env, batch_id=b)))
    for key, values in KEYS.items():
        cases.append((q(key=key), contains(env, [{"key": key}])))
        for v in values:
            cases.append((q(data=json.dumps({key: v})), contains(env, [{"key": key, "value": v}])))
    # the typed rule: value=42 is the string "42" or the number 42; value=true the same for true
    cases.append((q(value="shoe"), contains(env, [{"value": "shoe"}])))
    cases.append((q(value="42"), contains(env, [{"value": "42"}], [{"value": 42}])))
    cases.append((q(value="true"), contains(env, [{"value": "true"}], [{"value": True}])))
    cases.append((q(value="null"), contains(env, [{"value": "null"}], [{"value": None}])))
    cases.append((q(key="size", value="42"), contains(env, [{"key": "size", "value": "42"}],
                                                      [{"key": "size", "value": 42}])))
    # a sparse key (a key of unique values, counted through the index): its key, pairs and values
    cases.append((q(key="sku"), contains(env, [{"key": "sku"}])))
    for (v,) in env.query("SELECT e ->> 'value' FROM objects, jsonb_array_elements(data) e "
                          "WHERE e ->> 'key' = 'sku' ORDER BY 1 LIMIT 3"):
        cases.append((q(data=json.dumps({"sku": v})), contains(env, [{"key": "sku", "value": v}])))
        cases.append((q(value=v), contains(env, [{"value": v}])))
    cases.append((q(value="7"), contains(env, [{"value": "7"}], [{"value": 7}])))
    return cases


def assert_counts_exact(env, api):
    for query, want in filter_cases(env):
        got, exact = api_count(api, "/api/v1/objects/", query)
        assert (got, exact) == (want, True), f"GET /api/v1/objects/{query}"
    # several pairs (AND): exact when it is cheap or asked for; an estimate says so
    two = {"type": "shoe", "color": "red"}
    want = contains(env, [{"key": "type", "value": "shoe"}, {"key": "color", "value": "red"}])
    got, exact = api_count(api, "/api/v1/objects/", q(data=json.dumps(two)))
    assert not exact or got == want
    assert api_count(api, "/api/v1/objects/", q(data=json.dumps(two), count="exact")) == (want, True)
    # batches: all of them from a counter; with a filter, exact on request
    assert api_count(api, "/api/v1/batches/", "") == (truth(env, "SELECT count(*) FROM batches"), True)
    want = truth(env, "SELECT count(DISTINCT batch_id) FROM objects WHERE data @> %s::jsonb",
                 (json.dumps([{"key": "type", "value": "shoe"}]),))
    assert api_count(api, "/api/v1/batches/", q(data='{"type":"shoe"}', count="exact")) == (want, True)


def diffs(env):
    return env.query("SELECT kind, key, value::text, counted, actual FROM bp_counts_diff()")


def rand_data(rng):
    data = [{"key": k, "value": rng.choice(vs)} for k, vs in KEYS.items() if rng.random() < 0.85]
    if data and rng.random() < 0.1:
        data.append(dict(data[0]))  # a repeated pair counts its object once
    if rng.random() < 0.1:
        data.append({"key": "sku", "value": f"SKU-{rng.randrange(10 ** 6)}"})
    rng.shuffle(data)
    return data


def post(api, batch_id, objects):
    r = api.post("/api/v1/batches/", {"batch_id": batch_id, "objects": objects})
    assert r.status_code == 202, r.text


def test_counts_beyond_the_cap_are_exact(env, api):
    worker = env.start_worker(**FAST)
    try:
        rng = random.Random(7)
        for i in range(3):
            objects = [{"object_id": f"cap-{i}-{j}", "data": rand_data(rng) + [{"key": "type", "value": "shoe"}]}
                       for j in range(40 + 30 * i)]
            r = api.post("/api/v1/batches/?wait=30", {"batch_id": f"cap-{i}", "objects": objects})
            assert r.status_code == 201, r.text
        assert api_count(api, "/api/v1/objects/", q(batch_id="cap-2")) == (100, True)
        assert api_count(api, "/api/v1/objects/", q(data='{"type":"shoe"}')) == (210, True)
        assert_counts_exact(env, api)
        # the batch's own page and the list of batches show the same object count
        assert api.get("/api/v1/batches/cap-1/").json()["object_count"] == 70
        listed = {b["batch_id"]: b["object_count"] for b in api.get("/api/v1/batches/").json()["results"]}
        assert listed == {"cap-0": 40, "cap-1": 70, "cap-2": 100}
    finally:
        worker.stop()


def logged_statement(api, path):
    """Make the request; return its body and the one statement it sent (SQL and parameters)."""
    before = len(api.proc.log_lines())
    r = api.get(path)
    assert r.status_code == 200, r.text
    queries = [l for l in api.proc.log_lines()[before:] if l.get("msg") == "pg query"]
    assert len(queries) == 1, queries  # the page and its count: one statement
    return r.json(), queries[0]["sql"], queries[0]["params"]


def explain_analyze(env, sql, params):
    """EXPLAIN (ANALYZE, FORMAT JSON) of the statement in a session set up like the API's, with the
    plans of any statement it runs inside functions (auto_explain). Returns (plan, nested plan texts)."""
    conn = psycopg2.connect(env.dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for setting in ("SET enable_seqscan = off", "SET jit = off", "LOAD 'auto_explain'",
                            "SET auto_explain.log_min_duration = 0", "SET auto_explain.log_nested_statements = on",
                            "SET auto_explain.log_level = notice", "SET client_min_messages = notice"):
                cur.execute(setting)
            del conn.notices[:]
            text = re.sub(r"\$(\d+)", r"%(p\1)s", sql.replace("%", "%%"))
            cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + text, {f"p{i + 1}": v for i, v in enumerate(params)})
            plan = cur.fetchone()[0][0]["Plan"]
        nested = [n for n in conn.notices if "Query Text" in n and "EXPLAIN" not in n]
        return plan, nested
    finally:
        conn.close()


def test_the_count_of_one_pair_reads_its_counter_not_the_gin_index(env, api):
    """The default request's statement, EXPLAIN ANALYZEd: its count reads the pair's counter rows,
    no GIN bitmap of the matches, and runs no query of its own."""
    conn = env.db()
    with conn.cursor() as cur:  # 30,000 more objects, one in five a shoe
        cur.execute("INSERT INTO batches (batch_id) VALUES ('gin') ON CONFLICT DO NOTHING")
        cur.execute("""INSERT INTO objects (object_id, batch_id, data, src_ts, src_partition, src_offset)
                       SELECT 'gin-' || g, 'gin', jsonb_build_array(
                           jsonb_build_object('key', 'type', 'value', (ARRAY['shoe','hat','bag','car','sock'])[g % 5 + 1]),
                           jsonb_build_object('key', 'color', 'value', (ARRAY['red','blue','gold'])[g % 3 + 1])), 0, 0, 0
                       FROM generate_series(1, 30000) g""")
        cur.execute("VACUUM ANALYZE objects")
    conn.close()
    want = contains(env, [{"key": "type", "value": "shoe"}])
    body, sql, params = logged_statement(api, "/api/v1/objects/" + q(data='{"type":"shoe"}'))
    assert (body["count"], body["count_exact"]) == (want, True) and want > 6000
    plan, nested = explain_analyze(env, sql, params)
    # no function evaluated inside it reads a table (the term's hash is a parameter)
    assert not any("Scan" in n for n in nested), nested
    # the count: the outer side of the join with the page, reading count_terms only
    count_side = plan if plan["Node Type"] != "Sort" else plan["Plans"][0]
    count_side = count_side["Plans"][0]
    text = json.dumps(count_side)
    assert '"Index Name": "count_terms_pkey"' in text, text
    assert "objects_data_idx" not in text and '"Relation Name": "objects"' not in text, text
    assert sum(n.get("Actual Rows", 0) for n in walk(count_side) if n.get("Index Name") == "count_terms_pkey") <= 64
    # a filter that no counter answers alone (two pairs) goes through the function, which does read
    # the rarest pair's matches through the index: the capture above would have seen it
    _, sql, params = logged_statement(api, "/api/v1/objects/" + q(data='{"type":"shoe","color":"red"}',
                                                                     count="exact"))
    _, nested = explain_analyze(env, sql, params)
    assert any("objects_data_idx" in n for n in nested), nested


def walk(plan):
    yield plan
    for child in plan.get("Plans", []):
        yield from walk(child)


# (key, value) as JSON text written the way a client writes them: each filter's counter is named by a
# hash the API computes itself (docs/QUERIES.md#counting), which must equal migration 007's for the
# value as stored: numbers by value (19.99 is not 19.989999999999998; 1e2 = 100.0), strings by their
# decoded text (escapes, control bytes, quotes), keys by their characters (length() counts characters).
TRICKY = [('"price"', '19.99'), ('"price"', '1e2'), ('"price"', '100.0'), ('"price"', '-0.0'),
          ('"price"', '0.000123'), ('"price"', '123456789012345678901234567890'),
          ('"note"', r'"say \"hi\" \\ C:\\"'), ('"note"', r'"tab\there\u0001"'), ('"note"', r'"\u0041\u00e9"'),
          ('"gr\u00f6\u00dfe"', '"\u00e9t\u00e9 \U0001F45F"'), ('"a:b"', '"c:d"'), ('"e"', '""'),
          ('"flag"', 'true'), ('"flag"', 'false'), ('"flag"', 'null')]


def test_filters_of_tricky_keys_and_values_count_exactly(env, api):
    """Objects holding each tricky pair (stored as jsonb spells it), then data={key: value} as the
    client wrote it, and key= alone: every count equals count(*) with the same containment."""
    BATCH = "tricky-\u00fc\u00df:"  # the batch's counter is named by its id's characters too
    conn = env.db()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO batches (batch_id) VALUES (%s) ON CONFLICT DO NOTHING", (BATCH,))
        for i, (k, v) in enumerate(TRICKY):
            for j in range(i % 3 + 2):
                cur.execute("INSERT INTO objects (object_id, batch_id, data, src_ts, src_partition, src_offset) "
                            "VALUES (%s, %s, %s::jsonb, 0, 0, 0)",
                            (f"tricky-{i}-{j}", BATCH, f'[{{"key": {k}, "value": {v}}}]'))
    conn.close()
    # page_size=1: a short first page holds the whole count, the counter is read only for a longer one
    for k, v in TRICKY:
        want = truth(env, "SELECT count(*) FROM objects WHERE data @> %s::jsonb", (f'[{{"key": {k}, "value": {v}}}]',))
        assert want > 1
        assert api_count(api, "/api/v1/objects/", q(data="{%s: %s}" % (k, v), page_size=1)) == (want, True), (k, v)
        key = json.loads(k)
        assert api_count(api, "/api/v1/objects/", q(key=key, page_size=1)) == (contains(env, [{"key": key}]), True), key
    assert api_count(api, "/api/v1/objects/", q(batch_id=BATCH, page_size=1)) == (contains(env, batch_id=BATCH), True)
    assert diffs(env) == []


def test_a_key_of_unique_values_adds_no_counter_per_object_and_counts_stay_exact(env, api):
    """A key whose values are (nearly) all distinct, like a sku, would add a counter row per object
    and per value: once one statement shows it (migration 011's rule: 200 objects or more, 0.25
    distinct values per object or more), it is counted through the GIN index instead; its counts stay exact,
    also for a value it shares with another key and for the typed rule (value=7: "7" or 7)."""
    def rows():
        return env.query("SELECT count(*) FROM count_terms")[0][0]
    conn = env.db()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO batches (batch_id) VALUES ('uniq') ON CONFLICT DO NOTHING")
        cur.execute("""INSERT INTO objects (object_id, batch_id, data, src_ts, src_partition, src_offset)
                       SELECT 'uniq-' || g, 'uniq', jsonb_build_array(
                           jsonb_build_object('key', 'sku', 'value', 'U-' || g),
                           jsonb_build_object('key', 'type', 'value', (ARRAY['shoe','hat'])[g % 2 + 1])), 0, 0, 0
                       FROM generate_series(1, 400) g""")
    conn.close()
    before = rows()
    worker = env.start_worker(**FAST)
    try:
        objects = [{"object_id": f"uniq-more-{i}", "data": [{"key": "sku", "value": f"U-more-{i}"},
                                                             {"key": "color", "value": "U-7"}]}
                   for i in range(60)]
        objects.append({"object_id": "uniq-seven", "data": [{"key": "sku", "value": 7}, {"key": "size", "value": "7"}]})
        r = api.post("/api/v1/batches/?wait=30", {"batch_id": "uniq-more", "objects": objects})
        assert r.status_code == 201, r.text
    finally:
        worker.stop()
    # the 461 objects left no counter row per sku: the only rows of a "U-..." value are the value
    # and the pair of color="U-7" (a dense key), and the 61 objects posted added the rows of their
    # terms in the worker's slot, not 2 per object
    assert [r[0] for r in env.query("SELECT DISTINCT kind::text || coalesce(key, '') || value::text FROM count_terms "
                                    "WHERE value::text LIKE %s ORDER BY 1", ('"U-%',))] == ['pcolor"U-7"', 'v"U-7"']
    assert rows() - before <= 12, rows() - before  # t, b, B, 3 keys, 2 values, 2 pairs: not 2 per object
    assert api_count(api, "/api/v1/objects/", q(key="sku")) == (contains(env, [{"key": "sku"}]), True)
    assert api_count(api, "/api/v1/objects/", q(data='{"sku":"U-7"}')) == (1, True)
    assert api_count(api, "/api/v1/objects/", q(value="U-7")) == (61, True)  # sku of one, color of 60
    assert api_count(api, "/api/v1/objects/", q(value="7")) == (contains(env, [{"value": "7"}], [{"value": 7}]), True)
    assert api_count(api, "/api/v1/objects/", q(data='{"sku":"U-7","type":"hat"}', count="exact")) == \
        (contains(env, [{"key": "sku", "value": "U-7"}, {"key": "type", "value": "hat"}]), True)
    assert diffs(env) == []
    assert_counts_exact(env, api)
    # an operator's rebuild folds the slots and drops what counts nothing, but not the rows that
    # mark sku sparse (migration 012): the API reads them beside the counter
    env.cli("counts", "rebuild")
    assert api_count(api, "/api/v1/objects/", q(data='{"sku":"U-7"}', page_size=1)) == (1, True)
    assert api_count(api, "/api/v1/objects/", q(value="U-7")) == (61, True)
    # the pages of a sparse key's term are the matches, whichever way the statement reads them
    for query, containment in ((q(data='{"sku":"U-7"}'), '[{"key":"sku","value":"U-7"}]'),
                               (q(value="U-7", page_size=100), '[{"value":"U-7"}]')):
        want = [r[0] for r in env.query("SELECT object_id FROM objects WHERE data @> %s::jsonb ORDER BY id",
                                        (containment,))]
        assert [o["object_id"] for o in api.get("/api/v1/objects/" + query).json()["results"]] == want


def test_a_key_mixing_words_and_many_numbers_becomes_sparse(env, api):
    """A key holding a dozen words and thousands of distinct numbers (about 0.4 distinct values per
    object: bench/ingest.py's default data) is sparse under migration 011's rule (0.25); under 007's
    0.75 it stayed dense and cost a counter row per number. Its counts stay exact."""
    worker = env.start_worker(**FAST)
    try:
        words = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta", "iota", "kappa", "mu", "nu"]
        objects = [{"object_id": f"mixed-{i}",
                    "data": [{"key": "mixed", "value": words[i % 12] if i % 2 else i * 7},
                             {"key": "kind", "value": ["a", "b", "c"][i % 3]}]} for i in range(600)]
        r = api.post("/api/v1/batches/?wait=30", {"batch_id": "mixed", "objects": objects})
        assert r.status_code == 201, r.text
    finally:
        worker.stop()
    assert env.query("SELECT key FROM count_keys WHERE key IN ('mixed', 'kind') ORDER BY key") == [("mixed",)]
    assert env.query("SELECT count(*) FROM count_terms WHERE kind = 'p' AND key = 'mixed'")[0][0] == 0
    assert api_count(api, "/api/v1/objects/", q(data='{"mixed":"alpha"}')) == \
        (contains(env, [{"key": "mixed", "value": "alpha"}]), True)
    assert api_count(api, "/api/v1/objects/", q(data='{"mixed":70}')) == (1, True)
    assert api_count(api, "/api/v1/objects/", q(key="mixed")) == (contains(env, [{"key": "mixed"}]), True)
    assert diffs(env) == []


def test_counts_stay_exact_through_random_operations(env, api):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"\nseed {seed}")
    worker = env.start_worker(**FAST)
    env.wait_assigned(worker)
    pub = Publisher(env.topic)
    batches = {}  # batch_id -> object ids last posted in it
    n_batches = n_objects = kills = 0
    rebuilt = False

    def new_object():
        nonlocal n_objects
        n_objects += 1
        return f"r-{seed}-{n_objects}"

    try:
        for step in range(300):
            op = rng.random()
            if op < 0.35 or not batches:  # a new batch
                n_batches += 1
                bid = f"rb-{seed}-{n_batches}"
                ids = [new_object() for _ in range(rng.randint(1, 12))]
                post(api, bid, [{"object_id": o, "data": rand_data(rng)} for o in ids])
                batches[bid] = ids
            elif op < 0.55:  # the batch again: values change, some objects left out, some added
                bid = rng.choice(sorted(batches))
                ids = [o for o in batches[bid] if rng.random() < 0.7] + [new_object() for _ in range(rng.randint(0, 3))]
                if ids:
                    post(api, bid, [{"object_id": o, "data": rand_data(rng)} for o in ids])
                    batches[bid] = sorted(set(batches[bid]) | set(ids))
            elif op < 0.65:  # an object moves to another batch
                src, dst = rng.choice(sorted(batches)), rng.choice(sorted(batches))
                if batches[src]:
                    o = rng.choice(batches[src])
                    post(api, dst, [{"object_id": o, "data": rand_data(rng)}])
                    batches[dst] = sorted(set(batches[dst]) | {o})
            elif op < 0.77:  # DELETE of an object
                bid = rng.choice(sorted(batches))
                if batches[bid]:
                    o = rng.choice(batches[bid])
                    assert api.delete(f"/api/v1/objects/{o}/").status_code in (204, 404)
            elif op < 0.84:  # a batch and its objects
                bid = rng.choice(sorted(batches))
                assert api.delete(f"/api/v1/batches/{bid}/?cascade=true").status_code in (204, 404, 409)
            elif op < 0.92:  # invalid messages straight to the topic: dead letters
                bad = rng.choice([b"not json", json.dumps({"batch_id": "x", "objects": [{"object_id": 1}]}).encode(),
                                  json.dumps({"batch_id": f"rb-{seed}-bad", "objects": [
                                      {"object_id": new_object(), "data": {"key": "not an array"}}]}).encode()])
                pub.send(bad, key=b"bad")
            else:  # one object alone
                bid = rng.choice(sorted(batches))
                r = api.post("/api/v1/objects/", {"batch_id": bid, "object_id": new_object(), "data": rand_data(rng)})
                assert r.status_code == 202, r.text
            if step % 75 == 74:  # kill -9 between operations
                worker.kill9()
                kills += 1
                worker = env.start_worker(**FAST)
            if step == 150:  # an online rebuild while messages are being applied
                env.cli("counts", "rebuild")
                rebuilt = True
        pub.flush()
        wait_all_consumed(env, timeout=120, workers=[worker])
        assert kills >= 3 and rebuilt
        assert diffs(env) == [], f"seed {seed}"
        r = env.cli("counts", "verify", check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "equals count(*)" in r.stdout
        assert_counts_exact(env, api)
    finally:
        worker.stop(timeout=60)


def test_verify_reports_a_wrong_count_and_rebuild_puts_it_right(env):
    env.query("UPDATE count_terms SET n = n + 3 WHERE h = bp_count_hash('p', 'type', '\"shoe\"') AND slot = "
              "(SELECT min(slot) FROM count_terms WHERE h = bp_count_hash('p', 'type', '\"shoe\"'))")
    r = env.cli("counts", "verify", check=False)
    assert r.returncode == 1
    assert 'pair type="shoe": counted' in r.stdout
    assert "1 difference" in r.stdout
    r = env.cli("counts", "rebuild")
    assert "1 term corrected" in r.stdout
    assert diffs(env) == []
    assert env.cli("counts", "verify").returncode == 0
    # every term is one row again
    assert env.query("SELECT count(*) FROM count_terms WHERE slot <> 0") == [(0,)]
