"""The read path against the real PostgreSQL: GET/DELETE of objects and batches, every filter form with
typed values, page and cursor pagination walked to the end (also while rows are inserted), counting
beyond the cap, cascade deletes, index use on a realistic table, a slow query next to fast ones, the
pool's limits, and PostgreSQL restarting under load (in a private cluster).

Rows are inserted straight into the tables (the ingest workers are another module's business); each
test tags its rows with a unique pair or batch id so that tests sharing the module's database do not
see each other's rows."""
import base64
import json
import re
import socket
import subprocess
import threading
import uuid

import psycopg2
import pytest
import requests

from conftest import Env, wait_until
from pgcluster import private_env

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
COUNT_CAP = 50
INLINE = 5


# ---------------------------------------------------------------------------------------------
# helpers

def tag():
    return uuid.uuid4().hex[:12]


def pairs(d):
    """{"k": v} -> [{"key": "k", "value": v}] (insertion order)."""
    return [{"key": k, "value": v} for k, v in d.items()]


def insert_batch(env, batch_id, objects):
    """objects: [(object_id, data-as-list-of-pairs)] in insertion order, in one transaction."""
    conn = psycopg2.connect(env.dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO batches (batch_id) VALUES (%s) ON CONFLICT DO NOTHING", (batch_id,))
            for object_id, data in objects:
                cur.execute("INSERT INTO objects (object_id, batch_id, data, src_ts, src_partition, src_offset)"
                            " VALUES (%s, %s, %s::jsonb, 0, 0, 0)", (object_id, batch_id, json.dumps(data)))
    finally:
        conn.close()


def get_json(api, path, status=200, **params):
    r = api.get(path, params=params)
    assert r.status_code == status, (r.status_code, r.text[:500])
    return r.json()


def ids(page):
    return [o["object_id"] for o in page["results"]]


def assert_problem(r, status, param=None):
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["Content-Type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if param is not None:
        assert [p["name"] for p in body["invalid-params"]] == [param], body
        assert param in body["detail"]
    return body


def walk(api, first_url, session=None, limit=1000):
    """Follow next links from first_url; returns the list of pages."""
    s = session or api.session
    pages, url = [], first_url
    while url is not None and len(pages) < limit:
        r = s.get(url, timeout=30)
        assert r.status_code == 200, r.text[:500]
        pages.append(r.json())
        url = pages[-1]["next"]
    return pages


@pytest.fixture(scope="module")
def api(bp_env):
    """One API for most tests: a small count cap and inline limit, debug logs (the SQL of each query)."""
    a = bp_env.start_api(BP_COUNT_CAP=COUNT_CAP, BP_BATCH_INLINE_OBJECTS=INLINE, BP_PAGE_SIZE_MAX=100,
                         BP_LOG_LEVEL="debug")
    yield a
    if a.proc.alive():
        a.proc.stop()


# ---------------------------------------------------------------------------------------------
# single objects

def test_object_is_returned_as_stored(api, bp_env):
    t = tag()
    data = [{"key": "type", "value": "shoe"}, {"key": "size", "value": 42}, {"key": "price", "value": 0.1},
            {"key": "demo", "value": False}, {"key": "gone", "value": None}, {"key": "type", "value": "boot"},
            {"key": "big", "value": 12345678901234567890}, {"key": "név", "value": "ünïcode \"q\" \\ \n"}]
    insert_batch(bp_env, f"b-{t}", [(f"o-{t}", data)])
    for path in (f"/api/v1/objects/o-{t}/", f"/api/v1/objects/o-{t}"):
        r = api.get(path)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "application/json"
        body = r.json()
        assert body["object_id"] == f"o-{t}" and body["batch_id"] == f"b-{t}"
        assert body["data"] == data  # order, repeated keys and types kept
        assert type(body["data"][1]["value"]) is int and type(body["data"][3]["value"]) is bool
        assert body["data"][6]["value"] == 12345678901234567890  # beyond int64, exact
        assert ISO.match(body["created_at"]) and ISO.match(body["updated_at"])


def test_object_ids_are_percent_decoded(api, bp_env):
    t = tag()
    oid = f"a/b c?&é-{t}"
    insert_batch(bp_env, f"b-{t}", [(oid, [])])
    r = api.get("/api/v1/objects/" + requests.utils.quote(oid, safe="") + "/")
    assert r.status_code == 200 and r.json()["object_id"] == oid


def test_unknown_object_is_404_problem(api):
    assert_problem(api.get("/api/v1/objects/no-such-object/"), 404)
    assert_problem(api.get("/api/v1/objects/%FF%FE/"), 404)  # not UTF-8: cannot exist
    assert_problem(api.delete("/api/v1/objects/no-such-object/"), 404)


def test_delete_object(api, bp_env):
    t = tag()
    insert_batch(bp_env, f"b-{t}", [(f"o-{t}", []), (f"p-{t}", [])])
    r = api.delete(f"/api/v1/objects/o-{t}/")
    assert r.status_code == 204 and r.content == b""
    assert_problem(api.get(f"/api/v1/objects/o-{t}/"), 404)
    assert_problem(api.delete(f"/api/v1/objects/o-{t}/"), 404)
    assert api.get(f"/api/v1/objects/p-{t}/").status_code == 200  # the other object stays


def test_wrong_method_is_405_and_unknown_path_404(api):
    r = api.session.put(api.url + "/api/v1/objects/x/", data="{}", timeout=10)
    body = assert_problem(r, 405)
    assert set(m.strip() for m in r.headers["Allow"].split(",")) == {"GET", "HEAD", "DELETE"}
    assert "PUT" in body["detail"]
    r = api.session.patch(api.url + "/api/v1/batches/x/", data="{}", timeout=10)
    assert_problem(r, 405)
    assert_problem(api.get("/api/v1/objects/x/y/"), 404)
    assert_problem(api.get("/api/v1/things/"), 404)


# ---------------------------------------------------------------------------------------------
# filters

@pytest.fixture(scope="module")
def typed(bp_env):
    """Objects whose values differ only by JSON type, under one run tag."""
    t = tag()
    rows = {
        "bool-false": {"demo": False},
        "str-false": {"demo": "false"},
        "int-42": {"n": 42},
        "str-42": {"n": "42"},
        "null": {"x": None},
        "str-null": {"x": "null"},
        "real": {"p": 1.5},
        "point-one": {"p": 0.1},
        "shoe-red": {"type": "shoe", "color": "red"},
        "shoe-blue": {"type": "shoe", "color": "blue"},
        "hat-red": {"type": "hat", "color": "red"},
        "quote": {"q": "say \"hi\" & bye"},
    }
    insert_batch(bp_env, f"typed-{t}", [(f"{name}-{t}", pairs({"run": t, **d})) for name, d in rows.items()])
    insert_batch(bp_env, f"other-{t}", [(f"elsewhere-{t}", pairs({"run": t, "type": "shoe", "color": "red"}))])
    # 0.1 as jansson writes it (17 digits): what the API stored before migration 005, or what a direct
    # publisher sends; a decimal of its own now, found by its own value only
    bp_env.query("INSERT INTO objects (object_id, batch_id, data, src_ts, src_partition, src_offset) VALUES"
                 " (%s, %s, %s::jsonb, 0, 0, 0)", (f"point-one-17-{t}", f"other-{t}",
                                                   '[{"key": "run", "value": "%s"}, {"key": "p", "value": '
                                                   '0.10000000000000001}]' % t))
    return t


def matching(api, t, **params):
    """object names (tag stripped) matching the filter within run t; data= gets the run pair added."""
    if "data" in params:
        # the run pair is added to the text: parsing and writing it again would respell its numbers
        inner = params["data"].strip()[1:].strip()
        params["data"] = '{"run": %s%s %s' % (json.dumps(t), "" if inner == "}" else ",", inner)
    else:
        params["data"] = json.dumps({"run": t})
    body = get_json(api, "/api/v1/objects/", page_size=100, **params)
    assert body["count"] == len(body["results"]) and body["count_exact"] is True
    return {i[: -len(t) - 1] for i in ids(body)}


def test_data_filter_every_pair_with_types(api, typed):
    t = typed
    assert matching(api, t, data='{"type":"shoe","color":"red"}') == {"shoe-red", "elsewhere"}
    assert matching(api, t, data='{"type":"shoe"}') == {"shoe-red", "shoe-blue", "elsewhere"}
    assert matching(api, t, data='{"demo": false}') == {"bool-false"}
    assert matching(api, t, data='{"demo": "false"}') == {"str-false"}
    assert matching(api, t, data='{"n": 42}') == {"int-42"}
    assert matching(api, t, data='{"n": 42.0}') == {"int-42"}  # numbers compare by value
    assert matching(api, t, data='{"n": "42"}') == {"str-42"}
    assert matching(api, t, data='{"x": null}') == {"null"}
    # numbers compare by exact decimal value: 0.1 is not 0.10000000000000001; 1.5 is 1.50
    assert matching(api, t, data='{"p": 0.1}') == {"point-one"}
    assert matching(api, t, data='{"p": 0.10000000000000001}') == {"point-one-17"}
    assert matching(api, t, data='{"p": 1.5}') == {"real"}
    assert matching(api, t, data='{"p": 1.50}') == {"real"}
    assert matching(api, t, data='{"q": "say \\"hi\\" & bye"}') == {"quote"}
    assert matching(api, t, data='{"type":"shoe","color":"green"}') == set()
    # an empty object filters nothing
    assert get_json(api, "/api/v1/objects/", data="{}", page_size=1)["count"] > 0


def test_key_and_value_filters_typed_rule(api, typed):
    t = typed
    assert matching(api, t, key="n") == {"int-42", "str-42"}
    assert matching(api, t, key="nope") == set()
    # value=V: the string V, plus the typed value when V is a JSON number/true/false/null
    assert matching(api, t, value="42") == {"int-42", "str-42"}
    assert matching(api, t, value='"42"') == {"str-42"}
    assert matching(api, t, value="false") == {"bool-false", "str-false"}
    assert matching(api, t, value='"false"') == {"str-false"}
    assert matching(api, t, value="null") == {"null", "str-null"}
    assert matching(api, t, value="1.50") == {"real"}
    assert matching(api, t, key="p", value="0.1") == {"point-one"}
    assert matching(api, t, key="p", value="1e-1") == {"point-one"}
    assert matching(api, t, value="red") == {"shoe-red", "hat-red", "elsewhere"}
    # key and value: the same pair
    assert matching(api, t, key="n", value="42") == {"int-42", "str-42"}
    assert matching(api, t, key="n", value='"42"') == {"str-42"}
    assert matching(api, t, key="color", value="shoe") == set()
    # combined with data= and batch_id=
    assert matching(api, t, data='{"type":"shoe"}', key="color", value="red") == {"shoe-red", "elsewhere"}
    assert matching(api, t, data='{"type":"shoe"}', key="color", value="red",
                    batch_id=f"typed-{t}") == {"shoe-red"}
    assert matching(api, t, batch_id=f"other-{t}") == {"elsewhere", "point-one-17"}
    assert matching(api, t, batch_id="no-such-batch") == set()


@pytest.mark.parametrize("params,param", [
    ({"data": '{"type":'}, "data"),
    ({"data": "type=shoe"}, "data"),
    ({"data": '[{"key":"type","value":"shoe"}]'}, "data"),
    ({"data": "42"}, "data"),
    ({"data": '{"a":{"b":1}}'}, "data"),
    ({"data": '{"a":[1,2]}'}, "data"),
    ({"data": '{"a":1,"a":2}'}, "data"),
    ({"data": '{"":1}'}, "data"),
    ({"data": json.dumps({f"k{i}": i for i in range(65)})}, "data"),
    ({"data": json.dumps({"a": "x" * 140000})}, "data"),
    ({"key": ""}, "key"),
    ({"value": "x" * 140000}, "value"),
    ({"batch_id": ""}, "batch_id"),
    ({"page": "0"}, "page"),
    ({"page": "-1"}, "page"),
    ({"page": "abc"}, "page"),
    ({"page": "1.5"}, "page"),
    ({"page": str(10 ** 12)}, "page"),
    ({"page_size": "0"}, "page_size"),
    ({"page_size": "101"}, "page_size"),
    ({"page_size": "-5"}, "page_size"),
    ({"page_size": "ten"}, "page_size"),
    ({"page_size": str(10 ** 12)}, "page_size"),
    ({"count": "maybe"}, "count"),
    ({"cursor": "garbage"}, "cursor"),
    ({"cursor": base64.urlsafe_b64encode(b'\x01{"k":"b","d":"n","t":1,"b":"x"}').decode().rstrip("=")},
     "cursor"),  # a well-formed cursor, but of the batches list
])
def test_bad_parameters_are_400_naming_them(api, params, param):
    assert_problem(api.get("/api/v1/objects/", params=params), 400, param)


def test_broken_percent_encoding_is_400(api):
    assert_problem(api.get("/api/v1/objects/?data=%7"), 400, "data")


def test_bad_parameters_on_batches_too(api, bp_env):
    assert_problem(api.get("/api/v1/batches/", params={"data": "[1]"}), 400, "data")
    assert_problem(api.get("/api/v1/batches/", params={"page_size": "0"}), 400, "page_size")
    t = tag()
    insert_batch(bp_env, f"b-{t}", [(f"o1-{t}", []), (f"o2-{t}", [])])
    r = api.get("/api/v1/objects/", params={"page_size": 1, "batch_id": f"b-{t}"})
    objects_cursor = re.search(r"cursor=([^&]+)", r.json()["next"]).group(1)
    assert_problem(api.get("/api/v1/batches/", params={"cursor": objects_cursor}), 400, "cursor")


# ---------------------------------------------------------------------------------------------
# pagination

@pytest.fixture(scope="module")
def run57(bp_env):
    """57 objects over three batches, in a known insertion order."""
    t = tag()
    names = [f"o{i:03d}-{t}" for i in range(57)]
    for b in range(3):
        insert_batch(bp_env, f"b{b}-{t}", [(n, pairs({"run": t, "i": i})) for i, n in enumerate(names)
                                           if i % 3 == b])
    # insertion order is batch by batch: the order the API must show
    order = [n for b in range(3) for i, n in enumerate(names) if i % 3 == b]
    return t, order


def test_page_numbers_walk_to_the_end(api, run57):
    t, order = run57
    first = api.url + "/api/v1/objects/?" + requests.compat.urlencode(
        {"data": json.dumps({"run": t}), "page_size": 10, "page": 1, "count": "exact"})
    pages = walk(api, first)
    assert len(pages) == 6
    assert [i for p in pages for i in ids(p)] == order  # no gaps, no duplicates, insertion order
    assert all(p["count"] == 57 and p["count_exact"] for p in pages)
    assert pages[0]["previous"] is None and pages[-1]["next"] is None
    for n, p in enumerate(pages[:-1], start=1):
        assert f"page={n + 1}" in p["next"] and "page_size=10" in p["next"] and "data=" in p["next"]
        assert p["next"].startswith(api.url + "/api/v1/objects/?") and "count=exact" in p["next"]
    assert "page=2" in pages[2]["previous"]
    # previous link gives the previous page
    r = api.session.get(pages[3]["previous"], timeout=30)
    assert ids(r.json()) == ids(pages[2])
    # past the last page: 404, DRF-style
    assert_problem(api.get("/api/v1/objects/", params={"data": json.dumps({"run": t}), "page_size": 10,
                                                      "page": 7}), 404)


def test_default_page_size_and_cursor_links(api, run57):
    t, order = run57
    body = get_json(api, "/api/v1/objects/", data=json.dumps({"run": t}))
    assert len(body["results"]) == 10  # BP_PAGE_SIZE_DEFAULT
    assert "cursor=" in body["next"] and "page=" not in body["next"]


def test_cursor_walk_forward_then_back(api, run57):
    t, order = run57
    first = api.url + "/api/v1/objects/?" + requests.compat.urlencode({"data": json.dumps({"run": t}),
                                                                       "page_size": 8})
    pages = walk(api, first)
    assert [i for p in pages for i in ids(p)] == order
    assert [len(p["results"]) for p in pages] == [8] * 7 + [1]
    assert pages[0]["previous"] is None and pages[-1]["next"] is None
    # a page given by cursor ignores page=
    r = api.session.get(pages[1]["next"] + "&page=5", timeout=30)
    assert ids(r.json()) == ids(pages[2])
    # back from the last page via previous links: the same pages in reverse
    back, url = [], pages[-1]["previous"]
    while url is not None:
        back.append(api.session.get(url, timeout=30).json())
        url = back[-1]["previous"]
    assert [ids(p) for p in reversed(back)] == [ids(p) for p in pages[:-1]]


def test_cursor_walk_while_rows_are_inserted(api, bp_env):
    t = tag()
    initial = [f"init{i:03d}-{t}" for i in range(40)]
    insert_batch(bp_env, f"w-{t}", [(n, pairs({"run": t})) for n in initial])
    url = api.url + "/api/v1/objects/?" + requests.compat.urlencode({"data": json.dumps({"run": t}),
                                                                     "page_size": 7})
    seen, added, k = [], [], 0
    while url is not None:
        body = api.session.get(url, timeout=30).json()
        seen += ids(body)
        # between pages, other writers add rows (some in the same batch, some in new ones)
        new = [(f"new{k + j:03d}-{t}", pairs({"run": t})) for j in range(3)]
        insert_batch(bp_env, f"w{k % 2}-{t}", new)
        added += [n for n, _ in new]
        k += 3
        url = body["next"]
        assert k < 300, "the walk never ends"
    assert len(seen) == len(set(seen)), "duplicates"
    assert [s for s in seen if s.startswith("init")] == initial, "gaps among the rows present at the start"
    assert set(seen) <= set(initial) | set(added)


def test_counts_beyond_the_cap_come_exact_from_the_counters(api, bp_env):
    t = tag()
    conn = bp_env.db()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO batches (batch_id) VALUES (%s)", (f"c-{t}",))
        cur.execute("INSERT INTO objects (object_id, batch_id, data, src_ts, src_partition, src_offset)"
                    " SELECT 'c' || g || '-' || %s, %s, jsonb_build_array(jsonb_build_object('key', 'run', 'value', %s),"
                    " jsonb_build_object('key', 'half-' || %s, 'value', g %% 2)), 0, 0, 0 FROM generate_series(1, 120) g",
                    (t, f"c-{t}", t, t))
        cur.execute("ANALYZE objects")
    conn.close()
    flt = json.dumps({"run": t})
    for count in ("auto", "exact", "estimate"):  # one pair: its counter, exact at any size
        body = get_json(api, "/api/v1/objects/", data=flt, count=count)
        assert (body["count"], body["count_exact"]) == (120, True), count
        assert len(body["results"]) == 10
    body = get_json(api, "/api/v1/objects/", data=flt, count="none")
    assert body["count"] is None and body["count_exact"] is False and len(body["results"]) == 10
    body = get_json(api, "/api/v1/objects/", data=flt, page=11, page_size=10)
    assert (body["count"], body["count_exact"]) == (120, True) and len(body["results"]) == 10
    body = get_json(api, "/api/v1/objects/", batch_id=f"c-{t}", page_size=3)
    assert (body["count"], body["count_exact"]) == (120, True)
    body = get_json(api, "/api/v1/objects/", data=flt, batch_id="nothing-here")
    assert body["count"] == 0 and body["count_exact"] is True and body["results"] == []
    # two pairs whose rarest counter (60) is beyond the cap: an estimate from the counters (pairs taken
    # as independent: these two are not, so it is low), said so, never above the rarest counter nor
    # below what the page proves; count=exact reads them (within BP_COUNT_EXACT_MAX)
    two = json.dumps({"run": t, f"half-{t}": 0})
    body = get_json(api, "/api/v1/objects/", data=two)
    assert body["count_exact"] is False and 11 <= body["count"] <= 60, body["count"]
    body = get_json(api, "/api/v1/objects/", data=two, count="exact")
    assert (body["count"], body["count_exact"]) == (60, True)
    # the unfiltered list: the counter of all objects
    body = get_json(api, "/api/v1/objects/", page_size=3)
    total = bp_env.query("SELECT count(*) FROM objects")[0][0]
    assert (body["count"], body["count_exact"]) == (total, True) and len(body["results"]) == 3


# ---------------------------------------------------------------------------------------------
# batches

def test_batches_list_filter_and_cursor_walk(api, bp_env):
    t = tag()
    for i in range(12):  # one transaction each: increasing created_at
        insert_batch(bp_env, f"bl{i:02d}-{t}", [(f"bl{i:02d}-o{j}-{t}", pairs({"run": t, "even": i % 2 == 0}))
                                               for j in range(i % 3 + 1)])
    first = api.url + "/api/v1/batches/?" + requests.compat.urlencode({"data": json.dumps({"run": t}),
                                                                       "page_size": 5})
    pages = walk(api, first)
    got = [b["batch_id"] for p in pages for b in p["results"]]
    assert got == [f"bl{i:02d}-{t}" for i in range(12)]  # creation order, no gaps or duplicates
    assert pages[0]["count"] == 12 and pages[0]["count_exact"]
    b = pages[0]["results"][2]
    assert b["object_count"] == 3 and ISO.match(b["created_at"]) and ISO.match(b["updated_at"])
    assert b["url"] == f"{api.url}/api/v1/batches/bl02-{t}/"
    assert api.session.get(b["url"], timeout=30).json()["batch_id"] == f"bl02-{t}"
    # keeps batches with at least one object matching every pair (typed)
    body = get_json(api, "/api/v1/batches/", data=json.dumps({"run": t, "even": True}), page_size=100)
    assert [x["batch_id"] for x in body["results"]] == [f"bl{i:02d}-{t}" for i in range(0, 12, 2)]
    body = get_json(api, "/api/v1/batches/", key="even", value="false", page_size=100,
                    data=json.dumps({"run": t}))
    assert len(body["results"]) == 6
    # page numbers too, and previous cursors back
    pages = walk(api, first + "&page=1")
    assert [b["batch_id"] for p in pages for b in p["results"]] == got
    back = api.session.get(walk(api, first)[-1]["previous"], timeout=30).json()
    assert [x["batch_id"] for x in back["results"]] == got[5:10]


def test_batch_detail_inline_objects_and_link(api, bp_env):
    t = tag()
    insert_batch(bp_env, f"big-{t}", [(f"big{i}-{t}", pairs({"i": i})) for i in range(INLINE + 3)])
    insert_batch(bp_env, f"small-{t}", [(f"small{i}-{t}", pairs({"i": i})) for i in range(2)])
    insert_batch(bp_env, f"empty-{t}", [])
    body = get_json(api, f"/api/v1/batches/big-{t}/")
    assert body["object_count"] == INLINE + 3
    assert [o["object_id"] for o in body["objects"]] == [f"big{i}-{t}" for i in range(INLINE)]
    assert body["objects"][1]["data"] == [{"key": "i", "value": 1}]
    assert body["url"] == f"{api.url}/api/v1/batches/big-{t}/"
    listed = walk(api, body["objects_url"])
    assert [i for p in listed for i in ids(p)] == [f"big{i}-{t}" for i in range(INLINE + 3)]
    body = get_json(api, f"/api/v1/batches/small-{t}")
    assert body["object_count"] == 2 and len(body["objects"]) == 2 and "objects_url" not in body
    body = get_json(api, f"/api/v1/batches/empty-{t}/")
    assert body["object_count"] == 0 and body["objects"] == []
    assert_problem(api.get("/api/v1/batches/no-such-batch/"), 404)


def test_delete_batch_conflict_then_cascade(api, bp_env):
    t = tag()
    insert_batch(bp_env, f"d-{t}", [(f"d{i}-{t}", []) for i in range(4)])
    body = assert_problem(api.delete(f"/api/v1/batches/d-{t}/"), 409)
    assert "has 4 objects" in body["detail"] and "cascade=true" in body["detail"]
    assert body["object_count"] == 4
    assert_problem(api.delete(f"/api/v1/batches/d-{t}/?cascade=false"), 409)
    # the refused delete left everything
    assert get_json(api, f"/api/v1/batches/d-{t}/")["object_count"] == 4
    assert_problem(api.delete(f"/api/v1/batches/d-{t}/?cascade=maybe"), 400, "cascade")
    r = api.delete(f"/api/v1/batches/d-{t}/?cascade=true")
    assert r.status_code == 204
    assert_problem(api.get(f"/api/v1/batches/d-{t}/"), 404)
    assert bp_env.query("SELECT count(*) FROM objects WHERE batch_id = %s", (f"d-{t}",))[0][0] == 0
    assert_problem(api.delete(f"/api/v1/batches/d-{t}/?cascade=true"), 404)
    # an empty batch goes without cascade
    insert_batch(bp_env, f"e-{t}", [])
    assert api.delete(f"/api/v1/batches/e-{t}/").status_code == 204
    assert_problem(api.delete(f"/api/v1/batches/e-{t}/"), 404)


def test_cascade_delete_is_atomic_for_concurrent_readers(api, bp_env):
    t, n = tag(), 30000
    conn = bp_env.db()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO batches (batch_id) VALUES (%s)", (f"atomic-{t}",))
        cur.execute("INSERT INTO objects (object_id, batch_id, data, src_ts, src_partition, src_offset)"
                    " SELECT 'a' || g || '-' || %s, %s, '[]', 0, 0, 0 FROM generate_series(1, %s) g",
                    (t, f"atomic-{t}", n))
    conn.close()
    seen, api_seen, stop = set(), set(), threading.Event()

    def reader():
        c = bp_env.db()
        with c.cursor() as cur:
            while not stop.is_set():
                cur.execute("SELECT (SELECT count(*) FROM batches WHERE batch_id = %s),"
                            " (SELECT count(*) FROM objects WHERE batch_id = %s)", (f"atomic-{t}",) * 2)
                seen.add(cur.fetchone())
        c.close()

    def api_reader():
        s = requests.Session()
        while not stop.is_set():
            r = s.get(f"{api.url}/api/v1/batches/atomic-{t}/", timeout=30)
            api_seen.add(r.json()["object_count"] if r.status_code == 200 else r.status_code)

    threads = [threading.Thread(target=reader), threading.Thread(target=api_reader)]
    for th in threads:
        th.start()
    wait_until(lambda: (1, n) in seen and n in api_seen, 30, "readers to see the whole batch")
    r = api.delete(f"/api/v1/batches/atomic-{t}/?cascade=true")
    wait_until(lambda: (0, 0) in seen and 404 in api_seen, 30, "readers to see the batch gone")
    stop.set()
    for th in threads:
        th.join()
    assert r.status_code == 204
    assert seen == {(1, n), (0, 0)}, "a reader saw a half-deleted batch"
    assert api_seen == {n, 404}


# ---------------------------------------------------------------------------------------------
# index use on a realistic table

@pytest.fixture(scope="module")
def big(bp_env):
    """200,000 objects in 2,000 batches; a "rare" key on one object in a thousand; ANALYZEd."""
    conn = bp_env.db()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO batches (batch_id) SELECT 'big' || g FROM generate_series(1, 2000) g")
        cur.execute("""
            INSERT INTO objects (object_id, batch_id, data, src_ts, src_partition, src_offset)
            SELECT 'big-o' || g, 'big' || (g % 2000 + 1),
                   jsonb_build_array(
                       jsonb_build_object('key', 'type', 'value', (ARRAY['shoe','hat','shirt','sock'])[g % 4 + 1]),
                       jsonb_build_object('key', 'size', 'value', g % 50),
                       jsonb_build_object('key', 'serial', 'value', 's' || g))
                   || CASE WHEN g % 1000 = 0 THEN '[{"key": "rare", "value": true}]'::jsonb ELSE '[]' END,
                   0, 0, 0
            FROM generate_series(1, 200000) g""")
        cur.execute("VACUUM ANALYZE objects")
        cur.execute("ANALYZE batches")
    conn.close()


def plan_of_request(api, bp_env, path, analyze=False, **params):
    """Make the request, take the statement(s) it logged, and EXPLAIN (with analyze: EXPLAIN ANALYZE)
    them with their parameters in a session set up like the API's (enable_seqscan off, jit off).
    Returns the plan texts."""
    before = len(api.proc.log_lines())
    r = api.get(path, params=params)
    assert r.status_code == 200, r.text[:300]
    lines = api.proc.log_lines()[before:]
    queries = [l for l in lines if l.get("msg") == "pg query" and not l["sql"].startswith("EXPLAIN")]
    assert queries, "the request logged no query"
    plans = []
    conn = bp_env.db()
    with conn.cursor() as cur:
        cur.execute("SET enable_seqscan = off; SET jit = off")
        for q in queries:
            sql = re.sub(r"\$(\d+)", r"%(p\1)s", q["sql"].replace("%", "%%"))
            cur.execute(("EXPLAIN (ANALYZE, COSTS OFF) " if analyze else "EXPLAIN ") + sql,
                        {f"p{i + 1}": v for i, v in enumerate(q["params"])})
            plans.append("\n".join(row[0] for row in cur.fetchall()))
    conn.close()
    return plans


@pytest.mark.parametrize("params,index", [
    ({"data": '{"serial":"s777"}'}, "objects_data_idx"),
    ({"data": '{"type":"shoe","serial":"s4"}'}, "objects_data_idx"),
    ({"key": "rare"}, "objects_data_idx"),
    ({"value": "s777"}, "objects_data_idx"),
    ({"key": "serial", "value": "s777"}, "objects_data_idx"),
    ({"key": "size", "value": "7", "data": '{"serial":"s7"}'}, "objects_data_idx"),
    ({"batch_id": "big7"}, "objects_batch_id_idx"),
])
def test_object_filters_use_their_index(api, bp_env, big, params, index):
    for plan in plan_of_request(api, bp_env, "/api/v1/objects/", **params):
        assert index in plan, plan
        assert "Seq Scan on objects" not in plan, plan


def test_deep_cursor_pages_use_the_id_index(api, bp_env, big):
    body = get_json(api, "/api/v1/objects/", page_size=100)
    for _ in range(3):
        body = api.session.get(body["next"], timeout=30).json()
    cursor = re.search(r"cursor=([^&]+)", body["next"]).group(1)
    (plan,) = plan_of_request(api, bp_env, "/api/v1/objects/", page_size=100, cursor=cursor)
    assert re.search(r"Index Scan using objects_id_key on objects o\b.*\n\s+Index Cond: \(id > ", plan), plan
    assert "Seq Scan" not in plan, plan
    # a common filter pages through an index as well, never a sequential scan
    for plan in plan_of_request(api, bp_env, "/api/v1/objects/", data='{"type":"shoe"}', cursor=cursor):
        assert "Seq Scan on objects" not in plan and "Index" in plan, plan


def test_batch_filter_uses_the_gin_index(api, bp_env, big):
    (plan,) = plan_of_request(api, bp_env, "/api/v1/batches/", data='{"serial":"s777"}')
    assert "objects_data_idx" in plan and "Seq Scan on objects" not in plan, plan
    body = get_json(api, "/api/v1/batches/", data='{"serial":"s777"}')
    assert [b["batch_id"] for b in body["results"]] == ["big778"]


def test_batch_pages_use_the_creation_order_index(api, bp_env, big):
    body = get_json(api, "/api/v1/batches/", page_size=50)
    cursor = re.search(r"cursor=([^&]+)", body["next"]).group(1)
    (plan,) = plan_of_request(api, bp_env, "/api/v1/batches/", page_size=50, cursor=cursor)
    assert re.search(r"Index (Only )?Scan using batches_created_at_idx on batches b\b.*\n\s+Index Cond: "
                     r"\(ROW\(created_at, batch_id\) > ", plan), plan
    assert "Seq Scan" not in plan, plan


def test_count_of_a_broad_filter_is_exact_in_the_page_statement(api, bp_env, big):
    """One statement, no planner estimate, no count(*) of the matches: 50,000 matches (the cap is 50)
    counted exactly by the pair's counter."""
    before = len(api.proc.log_lines())
    body = get_json(api, "/api/v1/objects/", data='{"type":"shoe"}')
    sqls = [l["sql"] for l in api.proc.log_lines()[before:] if l.get("msg") == "pg query"]
    assert len(sqls) == 1 and re.search(r"FROM count_terms x WHERE x.h IN \(\$\d+::uuid", sqls[0]), sqls
    assert "count(*)" not in sqls[0], sqls[0]
    shoes = bp_env.query("""SELECT count(*) FROM objects WHERE data @> '[{"key":"type","value":"shoe"}]'""")[0][0]
    assert shoes >= 50000 and (body["count"], body["count_exact"]) == (shoes, True)
    assert len(body["results"]) == 10 and body["next"]
    # a result that fits on one page is its own exact count
    for count in ("auto", "estimate"):
        body = get_json(api, "/api/v1/objects/", data='{"type":"shoe","serial":"s4"}', count=count)
        assert body["count"] == 1 and body["count_exact"] is True, (count, body)


def truth_ids(bp_env, containment, where="", order="ASC", limit=10, offset=0):
    return [r[0] for r in bp_env.query(f"SELECT object_id FROM objects WHERE data @> %s::jsonb {where} "
                                        f"ORDER BY id {order} LIMIT {limit} OFFSET {offset}", (containment,))]


@pytest.mark.parametrize("params,containment,frequent", [
    ({"data": '{"type":"shoe"}'}, '[{"key":"type","value":"shoe"}]', True),   # 50,000 of 200,000
    ({"key": "rare"}, '[{"key":"rare"}]', False),                              # 200
    ({"value": "s777"}, '[{"value":"s777"}]', False),                          # 1
])
def test_one_term_is_read_the_way_its_count_says(api, bp_env, big, params, containment, frequent):
    """The page of one term is one prepared statement with two ways to read it, chosen as it runs by
    the term's exact count against all objects': a frequent term in id order (a few rows tested per
    match), a rare one from the GIN index. Only that branch runs, and the pages are the same whichever
    it is: forward, backward and by page number."""
    plans = plan_of_request(api, bp_env, "/api/v1/objects/", analyze=True, **params)
    assert len(plans) == 1, plans
    scan = re.search(r"Index Scan using objects_id_key on objects o \(actual time=[^)]*\)\n\s+Filter: "
                     r"jsonb_contains", plans[0])
    gin = re.search(r"Bitmap Index Scan on objects_data_idx \(actual time", plans[0])
    assert (bool(scan), bool(gin)) == (frequent, not frequent), plans[0]
    assert "never executed" in plans[0], plans[0]
    first = get_json(api, "/api/v1/objects/", **params)
    assert ids(first) == truth_ids(bp_env, containment)
    pages = walk(api, first["next"], limit=2) if first["next"] else []
    for i, page in enumerate(pages):
        assert ids(page) == truth_ids(bp_env, containment, offset=10 * (i + 1)), i
    if pages:
        back = api.session.get(pages[-1]["previous"], timeout=30).json()
        assert ids(back) == truth_ids(bp_env, containment, offset=10 * (len(pages) - 1))
        assert ids(get_json(api, "/api/v1/objects/", page=3, **params)) == truth_ids(bp_env, containment, offset=20)
    assert ids(get_json(api, "/api/v1/objects/", count="none", **params)) == ids(first)


# ---------------------------------------------------------------------------------------------
# a slow query, the pool's bounds

def lock_waiters(bp_env):
    rows = bp_env.query("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND application_name = 'batchpipe-api' AND wait_event_type = 'Lock'")
    return rows[0][0]


def test_slow_query_does_not_stall_others_and_the_queue_is_bounded(bp_env):
    a = bp_env.start_api(BP_HTTP_THREADS=1, BP_PG_POOL_SIZE=1, BP_PG_QUEUE_MAX=1, BP_PG_TIMEOUT_MS=8000)
    locker = psycopg2.connect(bp_env.dsn)
    try:
        assert a.get("/api/v1/objects/", params={"page_size": 1}).status_code == 200  # connected
        cur = locker.cursor()
        cur.execute("LOCK TABLE batches IN ACCESS EXCLUSIVE MODE")  # holds until rollback
        results = {}

        def fetch(name, path):
            results[name] = requests.get(a.url + path, timeout=30)

        # the list (its page and count in one statement) waits on the lock, holding the connection
        slow = threading.Thread(target=fetch, args=("slow", "/api/v1/batches/"))
        slow.start()
        wait_until(lambda: lock_waiters(bp_env) == 1, 15, "the batches query to wait on the lock")
        # the loop is free: requests that need no database answer at once
        for _ in range(20):
            assert requests.get(a.url + "/api/v1/", timeout=5).status_code == 200
        assert "slow" not in results
        # the only connection is busy: one more query waits, the next one is refused (queue of 1)
        waiters = [threading.Thread(target=fetch, args=(f"q{i}", "/api/v1/objects/?page_size=1")) for i in range(2)]
        for w in waiters:
            w.start()
        wait_until(lambda: any(k in results for k in ("q0", "q1")), 15, "one query to be refused")
        refused = [results[k] for k in ("q0", "q1") if k in results]
        assert len(refused) == 1
        body = assert_problem(refused[0], 503)
        assert "waiting" in body["detail"] and int(refused[0].headers["Retry-After"]) >= 1
        assert "slow" not in results
        locker.rollback()  # the slow query goes on; the waiting one after it
        slow.join(30)
        for w in waiters:
            w.join(30)
        assert results["slow"].status_code == 200
        assert sorted(results[k].status_code for k in ("q0", "q1")) == [200, 503]
    finally:
        locker.close()
        a.proc.stop()


def curl_has_http2():
    try:
        out = subprocess.run(["curl", "--version"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return False
    return "HTTP2" in out


@pytest.mark.parametrize("http2", [False, True])
def test_client_gone_while_its_query_runs(bp_env, http2):
    """Requests disappear while their queries wait on a lock (HTTP/1: the client closes; HTTP/2: the
    streams go with the connection): nothing answers into freed memory, HTTP/2 streams' queries are
    abandoned (the running one's result dropped, the queued ones dropped), the connection is reused
    afterwards, and shutdown does not wait for the dead requests."""
    if http2 and not curl_has_http2():
        pytest.skip("curl without HTTP/2")
    a = bp_env.start_api(BP_HTTP_THREADS=1, BP_PG_POOL_SIZE=1, BP_LOG_LEVEL="debug", BP_HTTP2_CLEARTEXT=1)
    locker = psycopg2.connect(bp_env.dsn)
    try:
        locker.cursor().execute("LOCK TABLE batches IN ACCESS EXCLUSIVE MODE")
        clients = []
        for _ in range(3):  # one runs (and waits on the lock), two wait in the pool's queue
            if http2:
                clients.append(subprocess.Popen(["curl", "-s", "--http2-prior-knowledge", "--max-time", "1",
                                                 a.url + "/api/v1/batches/"], stdout=subprocess.DEVNULL))
            else:
                host, port = a.url.split("//")[1].split(":")
                s = socket.create_connection((host, int(port)), timeout=5)
                s.sendall(b"GET /api/v1/batches/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                clients.append(s)
        wait_until(lambda: lock_waiters(bp_env) == 1, 15, "the query to wait on the lock")
        for c in clients:
            c.wait(30) if http2 else c.close()
        if http2:
            def abandoned():
                return sorted(l["msg"] for l in a.proc.log_lines() if l.get("msg", "").startswith("pg query abandoned"))
            wait_until(lambda: len(abandoned()) == 3, 15, "the server to abandon the three queries")
            assert abandoned() == ["pg query abandoned: dropped from the queue"] * 2 + [
                "pg query abandoned: running, its result will be dropped"]
        locker.rollback()
        for _ in range(3):
            assert a.get("/api/v1/batches/", params={"page_size": 1}, timeout=10).status_code == 200
        assert a.proc.stop() == 0, a.proc.logs()[-3000:]
        assert not any("still in flight" in l.get("msg", "") for l in a.proc.log_lines())
    finally:
        locker.close()
        if a.proc.alive():
            a.proc.kill9()


def test_statement_timeout_answers_503(bp_env):
    a = bp_env.start_api(BP_PG_TIMEOUT_MS=1000)
    locker = psycopg2.connect(bp_env.dsn)
    try:
        locker.cursor().execute("LOCK TABLE objects IN ACCESS EXCLUSIVE MODE")
        r = a.get("/api/v1/objects/", timeout=30)
        body = assert_problem(r, 503)
        assert "did not finish within 1000 ms" in body["detail"] and r.headers["Retry-After"]
        locker.rollback()
        assert a.get("/api/v1/objects/").status_code == 200  # the connection is still good
    finally:
        locker.close()
        a.proc.stop()


# ---------------------------------------------------------------------------------------------
# PostgreSQL going away and coming back (a private cluster; the shared server is never touched)

def test_postgres_restart_under_load():
    env, cluster = private_env(Env)
    try:
        env.create()
        insert_batch(env, "restart", [("restart-o1", pairs({"k": "v"}))])
        a = env.start_api(BP_PG_POOL_SIZE=2)
        assert a.get("/api/v1/objects/restart-o1/").status_code == 200
        statuses, stop = [], threading.Event()

        def load():
            s = requests.Session()
            while not stop.is_set():
                try:
                    r = s.get(a.url + "/api/v1/objects/", params={"page_size": 2}, timeout=5)
                    statuses.append(r.status_code)
                except requests.RequestException as exc:  # a hang or a reset is a failure
                    statuses.append(repr(exc))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for th in threads:
            th.start()
        wait_until(lambda: statuses.count(200) > 20, 20, "load to run")
        cluster.stop()
        n = len(statuses)
        wait_until(lambda: 503 in statuses[n:], 20, "503 while PostgreSQL is down")
        # down: quick 503 problem+json with Retry-After, and routes without the database still work
        for _ in range(5):
            r = a.get("/api/v1/objects/restart-o1/", timeout=5)
            assert_problem(r, 503)
            assert int(r.headers["Retry-After"]) >= 1
            assert a.get("/api/v1/", timeout=5).status_code == 200
        cluster.start()
        wait_until(lambda: a.get("/api/v1/objects/restart-o1/", timeout=5).status_code == 200, 30,
                   "reads to work again after PostgreSQL came back")
        n = len(statuses)
        wait_until(lambda: statuses[n:].count(200) > 20, 20, "the load to be served again")
        stop.set()
        for th in threads:
            th.join()
        assert set(statuses) <= {200, 503}, [s for s in statuses if s not in (200, 503)][:5]
        msgs = [l.get("msg", "") for l in a.proc.log_lines()]
        assert any(m.startswith("PostgreSQL unreachable") for m in msgs)
        assert any(m == "PostgreSQL reachable again" for m in msgs)
        assert a.proc.stop() == 0, a.proc.logs()[-3000:]
    finally:
        for p in env.procs:
            if p.alive():
                p.kill9()
        cluster.destroy()


def test_prepared_statements_survive_a_lost_connection(bp_env, big):
    """Lookups run as prepared statements, one per connection: a new connection prepares them again."""
    a = bp_env.start_api(BP_HTTP_THREADS=1, BP_PG_POOL_SIZE=1,
                         BP_PG_DSN=bp_env.dsn + " application_name=bp-prepared-test")
    for i in (1, 2, 3):  # the first call prepares the statement, the others only execute it
        r = a.get(f"/api/v1/objects/big-o{i}/")
        assert r.status_code == 200 and r.json()["object_id"] == f"big-o{i}"
    assert a.get("/api/v1/batches/big7/").status_code == 200
    killed = bp_env.query("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                          "datname = current_database() AND application_name = 'bp-prepared-test'")
    assert killed[0][0] == 1
    statuses = []

    def answers():
        r = a.get("/api/v1/objects/big-o4/")
        statuses.append(r.status_code)
        return r.status_code == 200

    wait_until(answers, 15, "the object to be served on a new connection")
    assert set(statuses) <= {200, 503}, statuses  # never a 500 for a statement the new session lacks
    assert a.get("/api/v1/batches/big7/").status_code == 200
    assert a.get("/api/v1/objects/big-o5/").json()["object_id"] == "big-o5"


def test_lists_without_a_data_filter_run_prepared(bp_env, run57):
    """A list without data= has one good plan whatever its parameters: it runs as a prepared statement
    (planned once per connection; parsing and planning cost more than the page); so does one term
    (its two ways to read it are in the plan). Any other data= is planned for its values each time.
    The pages are the same either way, also once the connection was cut (the statements are prepared
    again on the new one)."""
    t, order = run57
    a = bp_env.start_api(BP_LOG_LEVEL="debug", BP_PG_POOL_SIZE="1", BP_PAGE_SIZE_MAX=100)
    try:
        def lists():
            out = []
            for b in range(3):  # each batch by cursor, then one by page number, with and without a count
                out.append([ids(p) for p in walk(a, a.url + f"/api/v1/objects/?batch_id=b{b}-{t}&page_size=4")])
            out.append([ids(p) for p in walk(a, a.url + f"/api/v1/objects/?batch_id=b1-{t}&page_size=5&page=1")])
            out.append(ids(get_json(a, "/api/v1/objects/", batch_id=f"b2-{t}", count="none", page_size=3)))
            batches = walk(a, a.url + "/api/v1/batches/?page_size=100")
            out.append(sorted(x["batch_id"] for p in batches for x in p["results"] if x["batch_id"].endswith(t)))
            return out
        before = len(a.proc.log_lines())
        first = lists()
        assert first[0] == [order[:19][i:i + 4] for i in range(0, 19, 4)]  # batch 0: the first 19 of order
        assert first[-1] == [f"b{b}-{t}" for b in range(3)]
        assert ids(get_json(a, "/api/v1/objects/", data=json.dumps({"run": t}), page_size=3)) == order[:3]
        assert ids(get_json(a, "/api/v1/objects/", data=json.dumps({"run": t, "i": 4}))) == [order[order.index(
            f"o004-{t}")]]
        logged = [l for l in a.proc.log_lines()[before:] if l.get("msg") == "pg query" and
                  ("count_terms" in l["sql"] or "bp_count_objects" in l["sql"])]
        assert len(logged) >= 21
        plain = [l["prepared"] for l in logged if "bp_count_objects" not in l["sql"]]
        assert len(plain) >= 20 and all(plain), [l["sql"][:200] for l in logged if not l["prepared"]]
        assert [l["prepared"] for l in logged if "bp_count_objects" in l["sql"]] == [False]  # two pairs
        # the server forgets prepared statements with the session: cut it, the lists still answer
        bp_env.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE application_name = 'batchpipe-api' AND datname = current_database()")
        wait_until(lambda: a.get("/api/v1/objects/", params={"batch_id": f"b0-{t}"}).status_code == 200, 30,
                   "the list answering after its connection was cut")
        assert lists() == first
    finally:
        a.proc.stop()
