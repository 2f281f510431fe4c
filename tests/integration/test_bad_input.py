"""Hostile requests against a real API (docs/RELIABILITY.md, "Bad input"): a catalogue of what clients
get wrong or do on purpose, each with the answer it must get, and after every one the API must still
answer GET /api/v1/ (it did not crash or wedge).

Most rows of CASES are one request sent over a raw socket, so that every byte (NUL, broken UTF-8,
1,000 headers, a 1 MB URL) reaches the server exactly as written. The streaming cases (a 100 MB body
with and without Content-Length, a slow-loris client) are tests of their own. Rows are inserted
straight into the tables for the filter cases; no worker is needed."""
import base64
import collections
import json
import re
import select
import socket
import threading
import time
import urllib.parse

import psycopg2
import pytest
import requests

from conftest import wait_until

HOST = b"127.0.0.1"
PROBLEM = "application/problem+json"
BATCH_ID = "bad-input-batch"
CLOSED = "closed"  # in a case's statuses: the server may also close the connection without an answer


# ---------------------------------------------------------------------------------------------
# a minimal HTTP/1.1 client over a raw socket

class Reply:
    def __init__(self, status, headers, body, raw_head):
        self.status = status
        self.headers = headers  # lower-case names; the last value wins
        self.body = body
        self.raw_head = raw_head

    def json(self):
        return json.loads(self.body.decode("utf-8"))  # strict: the body must be UTF-8

    def __repr__(self):
        return f"Reply({self.status}, {self.headers.get('content-type')!r}, {self.body[:300]!r})"


def read_reply(sock, deadline):
    """Read one response from sock; None if the server closed the connection first."""
    buf = b""

    def more():
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no complete answer before the deadline; got {buf[:300]!r}")
        sock.settimeout(left)
        try:
            return sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return b""

    while b"\r\n\r\n" not in buf:
        chunk = more()
        if not chunk:
            if buf:
                raise AssertionError(f"connection closed in the middle of an answer: {buf[:300]!r}")
            return None
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        want = int(headers["content-length"])
        while len(body) < want:
            chunk = more()
            if not chunk:
                raise AssertionError("connection closed before the end of the body")
            body += chunk
        body = body[:want]
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while not body.endswith(b"0\r\n\r\n"):
            chunk = more()
            if not chunk:
                raise AssertionError("connection closed before the last chunk")
            body += chunk
        out, rest = b"", body
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2:]
        body = out
    else:
        while True:
            chunk = more()
            if not chunk:
                break
            body += chunk
    return Reply(status, headers, body, head)


def exchange(port, data, timeout=20):
    """Send data on a new connection, then read one answer (None: closed without one)."""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may stop reading early (e.g. after too many headers); its answer counts
        return read_reply(sock, deadline)


def request(method, target, body=None, headers=(), version=b"HTTP/1.1", host=HOST):
    """The bytes of one request. target and header values are bytes, sent as they are."""
    lines = [method + b" " + target + b" " + version]
    if host is not None:
        lines.append(b"Host: " + host)
    lines += list(headers)
    if body is not None:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def get(target, **kw):
    return request(b"GET", target, **kw)


def post_json(body, path=b"/api/v1/batches/", content_type=b"application/json"):
    return request(b"POST", path, body=body, headers=[b"Content-Type: " + content_type])


def q(path, **params):
    """GET path?params, percent-encoded the usual way (the values are text)."""
    return get(path.encode() + b"?" + urllib.parse.urlencode(params).encode())


def batch(data=None, batch_id="b", object_id="o"):
    return json.dumps({"batch_id": batch_id, "objects": [{"object_id": object_id, "data": data or []}]}).encode()


def raw_batch(pair=b"", batch_id=b"b"):
    """A batch written byte by byte (for bytes json.dumps would never write): one object, one pair."""
    return b'{"batch_id":"' + batch_id + b'","objects":[{"object_id":"o","data":[' + pair + b"]}]}"


def cursor_text(raw):
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# ---------------------------------------------------------------------------------------------
# checks a case may add (reply, ctx) -> None; ctx has .port and .api

def violation(pointer, *words):
    """The problem lists a violation at pointer whose message has every word (case-insensitive)."""
    def check(r, ctx):
        errs = r.json()["errors"]
        hits = [e for e in errs if e["pointer"] == pointer and all(w.lower() in e["message"].lower() for w in words)]
        assert hits, f"no violation at {pointer!r} mentioning {words}: {errs}"
    return check


def names_param(param):
    def check(r, ctx):
        body = r.json()
        assert [p["name"] for p in body["invalid-params"]] == [param], body
        assert param in body["detail"], body
    return check


def readable_detail(*words):
    """The detail says why, in text (not the placeholder the API falls back to when it cannot)."""
    def check(r, ctx):
        body = r.json()
        assert "not valid UTF-8)" not in body["detail"], body
        assert all(w in body["detail"] for w in words), body
        for p in body.get("invalid-params", []):
            assert p["reason"] != "invalid", body
    return check


def no_rows(r, ctx):
    """The filter matched nothing, and the seeded rows are still there (no table was dropped)."""
    body = r.json()
    assert body["results"] == [] and body["count"] == 0, body
    shoe = ctx.api.get("/api/v1/objects/", params={"data": '{"type":"shoe"}'})
    assert shoe.status_code == 200 and [o["object_id"] for o in shoe.json()["results"]] == ["bi-shoe"], shoe.text


def some_rows(r, ctx):
    assert r.json()["results"], r.body[:300]


def allow(*methods):
    def check(r, ctx):
        got = {m.strip() for m in r.headers["allow"].split(",")}
        assert got == set(methods), r.headers
    return check


def links_usable(r, ctx):
    """A 200 list or index whose links are all there and the body strict UTF-8 JSON."""
    if r.status == 200:
        body = r.json()
        links = [body[k] for k in ("batches", "objects", "openapi")] if "results" not in body \
            else [body["next"]]
        # absolute from a Host that names the server, relative from any other (docs/SECURITY.md)
        assert all(isinstance(u, str) and (u.startswith("http") or u.startswith("/")) for u in links), body


def closes_after(r, ctx):
    assert r.headers.get("connection", "").lower() == "close", r.headers


# ---------------------------------------------------------------------------------------------
# the catalogue

Case = collections.namedtuple("Case", "id data statuses problem check")


def case(id, data, statuses, problem=True, check=None):
    """statuses: one status or a tuple of the acceptable ones (CLOSED: no answer is fine too).
    problem: an error answer with a body must be application/problem+json (h2o's own parser errors are
    written before any request exists, so they cannot be: those rows say problem=False)."""
    if not isinstance(statuses, tuple):
        statuses = (statuses,)
    return pytest.param(Case(id, data, statuses, problem, check), id=id)


DEEP = 100_000
SHOE = '{"type":"shoe"}'
VALID_CURSOR = cursor_text(b'\x01{"k":"o","d":"n","id":0}')

CASES = [
    # ---- request bodies (POST /api/v1/batches/ unless said) ----
    case("truncated-json", post_json(b'{"batch_id":"b","objects":[{"object_id":"o","da'), 400,
         check=violation("", "invalid JSON")),
    case("empty-body", post_json(b""), 400, check=readable_detail("empty")),
    case("wrong-content-type", post_json(batch(), content_type=b"text/plain"), 415),
    case("nesting-100000-arrays", post_json(b"[" * DEEP + b"]" * DEEP), 400, check=violation("", "nesting")),
    case("nesting-100000-objects", post_json(b'{"a":' * DEEP + b"1" + b"}" * DEEP), 400,
         check=violation("", "nesting")),
    case("nesting-100000-single-object", post_json(b"[" * DEEP, path=b"/api/v1/objects/"), 400,
         check=violation("", "nesting")),
    case("invalid-utf8-in-id", post_json(raw_batch(batch_id=b"b\xc3\x28")), 400, check=violation("", "invalid JSON")),
    case("invalid-utf8-overlong-slash", post_json(raw_batch(b'{"key":"k","value":"\xc0\xaf"}')), 400,
         check=violation("", "invalid JSON")),
    case("invalid-utf8-lone-surrogate-escape", post_json(raw_batch(batch_id=b"\\ud800")), 400),
    case("nul-escape-in-batch-id", post_json(raw_batch(batch_id=b"b\\u0000x")), 400),
    case("nul-escape-in-value", post_json(batch([{"key": "k", "value": "a\u0000b"}])), 400),
    case("nul-raw-in-string", post_json(raw_batch(batch_id=b"b\x00x")), 400),
    case("nul-raw-after-document", post_json(batch() + b"\x00"), 400),
    # jansson reads "1\0" as 1; the body is published as sent, so the NUL is refused before
    case("nul-raw-after-number", post_json(raw_batch(b'{"key":"n","value":1\x00}')), 400,
         check=violation("", "NUL byte")),
    case("pairs-10000-in-one-object", post_json(batch([{"key": f"k{i}", "value": i} for i in range(10_000)])), 400,
         check=violation("/objects/0/data", "1000")),
    case("number-1e400", post_json(raw_batch(b'{"key":"n","value":1e400}')), 400),
    case("number-beyond-postgresql-numeric", post_json(raw_batch(b'{"key":"n","value":1e-20000}')), 400,
         check=violation("", "PostgreSQL cannot store")),
    case("integer-400-digits", post_json(raw_batch(b'{"key":"n","value":' + b"9" * 400 + b"}")), 400),
    # documented in shared/bp_payload.h: beyond int64 it is published and stored with every digit
    case("integer-300-digits-accepted",
         post_json(raw_batch(b'{"key":"n","value":' + b"9" * 300 + b"}", batch_id=b"bi-300digits")), 202,
         problem=False),
    case("duplicate-keys-top", post_json(b'{"batch_id":"a","batch_id":"b","objects":[]}'), 400,
         check=violation("", "duplicate")),
    case("duplicate-keys-in-pair", post_json(raw_batch(b'{"key":"a","key":"b","value":1}')), 400,
         check=violation("", "duplicate")),

    # ---- filters that look like SQL: plain values that match nothing ----
    case("sql-in-data-value", q("/api/v1/objects/", data='{"type":"shoe\' OR 1=1 --"}'), 200, problem=False,
         check=no_rows),
    case("sql-in-data-key", q("/api/v1/objects/", data='{"type\' OR \'1\'=\'1":"shoe"}'), 200, problem=False,
         check=no_rows),
    case("sql-in-key", q("/api/v1/objects/", key="' OR '1'='1"), 200, problem=False, check=no_rows),
    case("sql-drop-in-value", q("/api/v1/objects/", value="shoe'; DROP TABLE objects; --"), 200, problem=False,
         check=no_rows),
    case("sql-drop-in-data", q("/api/v1/objects/", data='{"type":"shoe\\"; DROP TABLE objects; --"}'), 200,
         problem=False, check=no_rows),
    case("sql-in-batch-id", q("/api/v1/objects/", batch_id="' OR ''='"), 200, problem=False, check=no_rows),
    case("sql-in-batches-filter", q("/api/v1/batches/", data='{"type":"shoe\' OR 1=1 --"}'), 200, problem=False,
         check=no_rows),

    # ---- page parameters ----
    case("page-size-10e12", q("/api/v1/objects/", page_size=str(10 ** 12)), 400, check=names_param("page_size")),
    case("page-size-minus-1", q("/api/v1/objects/", page_size="-1"), 400, check=names_param("page_size")),
    case("page-size-1e3", q("/api/v1/objects/", page_size="1e3"), 400, check=names_param("page_size")),
    case("page-minus-5", q("/api/v1/objects/", page="-5"), 400, check=names_param("page")),
    case("page-0", q("/api/v1/objects/", page="0"), 400, check=names_param("page")),
    case("page-abc", q("/api/v1/objects/", page="abc"), 400, check=names_param("page")),
    case("page-19-digits-overflow", q("/api/v1/objects/", page="9999999999999999999"), 400,
         check=names_param("page")),
    case("page-size-19-digits-on-batches", q("/api/v1/batches/", page_size="9999999999999999999"), 400,
         check=names_param("page_size")),
    case("unknown-parameter-ignored", q("/api/v1/objects/", colour="red", page_size="1"), 200, problem=False,
         check=some_rows),

    # ---- cursors ----
    case("cursor-valid-control", q("/api/v1/objects/", cursor=VALID_CURSOR), 200, problem=False, check=some_rows),
    case("cursor-random-base64", q("/api/v1/objects/", cursor=cursor_text(bytes(range(7, 250, 5)))), 400,
         check=names_param("cursor")),
    case("cursor-truncated", q("/api/v1/objects/", cursor=VALID_CURSOR[:-5]), 400, check=names_param("cursor")),
    case("cursor-base64-of-garbage", q("/api/v1/objects/", cursor=cursor_text(b"\x01garbage{]\"\x00")), 400,
         check=names_param("cursor")),
    case("cursor-with-padding", q("/api/v1/objects/", cursor=VALID_CURSOR + "=" * (-len(VALID_CURSOR) % 4)), 400,
         check=names_param("cursor")),
    case("cursor-negative-id", q("/api/v1/objects/", cursor=cursor_text(b'\x01{"k":"o","d":"n","id":-1}')), 400,
         check=names_param("cursor")),
    case("cursor-on-batches-garbage", q("/api/v1/batches/", cursor="!!not-base64!!"), 400, check=names_param("cursor")),

    # ---- other query-string values ----
    case("data-invalid-utf8", get(b"/api/v1/objects/?data=%7B%22a%22%3A%22%FF%22%7D"), 400, check=names_param("data")),
    case("key-nul", get(b"/api/v1/objects/?key=a%00b"), 400, check=names_param("key")),
    case("value-invalid-utf8", get(b"/api/v1/objects/?value=%C3%28"), 400, check=names_param("value")),
    case("batch-id-nul", get(b"/api/v1/objects/?batch_id=%00"), 400, check=names_param("batch_id")),
    case("broken-percent-encoding", get(b"/api/v1/objects/?data=%E"), 400, check=names_param("data")),
    case("key-over-128-kib", q("/api/v1/objects/", key="k" * 140_000), 400, check=names_param("key")),
    case("key-100-kb-matches-nothing", q("/api/v1/objects/", key="k" * 100_000), 200, problem=False, check=no_rows),
    # the message quotes the key cut at 64 bytes: here inside a two-byte character
    case("data-long-non-ascii-key", q("/api/v1/objects/", data='{"a' + "\u00e9" * 40 + '":{}}'), 400,
         check=readable_detail("data")),
    # jansson's error text quotes the bytes read so far: here the first byte of a two-byte character
    case("data-broken-escape-before-non-ascii", q("/api/v1/objects/", data='{"\\u0\u00e9"}'), 400,
         check=readable_detail("data", "not valid JSON")),

    # ---- ids in paths ----
    case("path-traversal-encoded", get(b"/api/v1/objects/..%2F..%2Fetc%2Fpasswd/"), 404),
    case("path-traversal-encoded-batches", get(b"/api/v1/batches/..%2F..%2Fetc%2Fpasswd/"), 404),
    case("path-traversal-raw", get(b"/api/v1/objects/../../etc/passwd"), 404),
    case("id-nul-encoded", get(b"/api/v1/objects/a%00b/"), 404),
    case("id-invalid-utf8", get(b"/api/v1/objects/%FF%FE/"), 404),
    case("id-broken-percent", get(b"/api/v1/batches/%G1/"), 400),
    case("id-raw-nul-in-request-line", get(b"/api/v1/objects/a\x00b/"), (400, CLOSED), problem=False),

    # ---- sizes of the request head ----
    case("url-100-kb", get(b"/api/v1/objects/" + b"a" * 100_000 + b"/"), 404),
    case("url-1-mb", get(b"/api/v1/objects/" + b"a" * 1_000_000 + b"/"), (400, 413, 414, 431, CLOSED), problem=False),
    case("headers-1000", get(b"/api/v1/", headers=[b"X-H%d: v" % i for i in range(1000)]), (400, 431, CLOSED),
         problem=False),
    # within h2o's limit on a request head (8192 + 4096 x 100 bytes): served
    case("header-100-kb", get(b"/api/v1/", headers=[b"X-Big: " + b"a" * 100_000]), 200, problem=False),
    case("header-1-mb", get(b"/api/v1/", headers=[b"X-Big: " + b"a" * 1_000_000]), (400, 413, 431, CLOSED),
         problem=False),

    # ---- methods, versions, hosts ----
    case("put-collection", request(b"PUT", b"/api/v1/objects/", body=b"{}"), 405, check=allow("GET", "HEAD", "POST")),
    case("patch-batch", request(b"PATCH", b"/api/v1/batches/x/", body=b"{}"), 405,
         check=allow("GET", "HEAD", "DELETE")),
    case("put-object", request(b"PUT", b"/api/v1/objects/x/", body=b"{}"), 405, check=allow("GET", "HEAD", "DELETE")),
    # a method that is not text: a known path answers 405 (the detail cannot quote the method)
    case("method-garbage", request(b"G\xffT", b"/api/v1/"), 405, check=allow("GET", "HEAD")),
    case("request-line-garbage", b"\x00\x01\x02 hello\r\n\r\n", (400, CLOSED), problem=False),
    case("http10-without-host", get(b"/api/v1/", version=b"HTTP/1.0", host=None), 200, problem=False,
         check=closes_after),
    case("content-length-negative", request(b"POST", b"/api/v1/batches/", headers=[b"Content-Type: application/json",
                                                                                   b"Content-Length: -1"]),
         (400, 411, CLOSED)),
    case("chunk-size-garbage", request(b"POST", b"/api/v1/batches/", headers=[b"Content-Type: application/json",
                                                                              b"Transfer-Encoding: chunked"])
         + b"zz\r\n{}\r\n0\r\n\r\n", (400, CLOSED)),
    # a Host that is not text: links are built from it; the answer must still be UTF-8 JSON with its links
    case("host-invalid-utf8-index", get(b"/api/v1/", host=b"h\xff\xfe"), (200, 400), check=links_usable),
    case("host-invalid-utf8-list-links", get(b"/api/v1/objects/?page_size=1", host=b"h\xff\xfe"), (200, 400),
         check=links_usable),
]


# ---------------------------------------------------------------------------------------------
# fixtures

class Ctx:
    """The API under test. A case that kills it fails on its own; the next case gets a new one, so that
    one crash is reported once rather than as a failure of every later row."""

    def __init__(self, env):
        self.env = env
        self.api = None
        self.port = None
        self.deaths = []

    def ready(self):
        if self.api is not None and self.api.proc.alive():
            return self
        if self.api is not None:
            self.deaths.append(self.api.proc.logs()[-4000:])
        self.api = self.env.start_api()
        self.port = int(self.api.url.rsplit(":", 1)[1])
        return self


@pytest.fixture(scope="module")
def server(bp_env):
    """The API for the whole catalogue (default limits: 16 MiB bodies, 1,000 pairs), and two objects
    that a filter leaking through SQL would return."""
    conn = psycopg2.connect(bp_env.dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO batches (batch_id) VALUES (%s)", (BATCH_ID,))
            for object_id, data in (("bi-shoe", [{"key": "type", "value": "shoe"}]),
                                    ("bi-red", [{"key": "color", "value": "red"}])):
                cur.execute("INSERT INTO objects (object_id, batch_id, data, src_ts, src_partition, src_offset)"
                            " VALUES (%s, %s, %s::jsonb, 0, 0, 0)", (object_id, BATCH_ID, json.dumps(data)))
    finally:
        conn.close()
    c = Ctx(bp_env)
    yield c
    if c.api is not None and c.api.proc.alive():
        c.api.proc.stop()


@pytest.fixture
def ctx(server):
    return server.ready()


def assert_alive(ctx):
    assert ctx.api.proc.alive(), f"the API exited ({ctx.api.proc.p.returncode}):\n{ctx.api.proc.logs()[-4000:]}"
    r = requests.get(ctx.api.url + "/api/v1/", timeout=5)
    assert r.status_code == 200, r.text


def assert_problem(r, status):
    assert r.headers.get("content-type") == PROBLEM, r
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"], body


# ---------------------------------------------------------------------------------------------
# the catalogue, one request per row

@pytest.mark.parametrize("c", CASES)
def test_hostile_request(ctx, c):
    r = exchange(ctx.port, c.data)
    try:
        if r is None:
            assert CLOSED in c.statuses, f"closed without an answer; expected {c.statuses}"
            return
        assert r.status in c.statuses, r
        if c.problem and r.body and r.status >= 400:
            assert_problem(r, r.status)
        if c.check is not None:
            c.check(r, ctx)
    finally:
        assert_alive(ctx)


# ---------------------------------------------------------------------------------------------
# streaming cases

def stream_body(port, head, piece, total):
    """Send head, then piece repeatedly up to total bytes, watching for an answer before each send.
    Returns (reply or None, bytes of body sent). Never holds more than one piece in memory."""
    deadline = time.monotonic() + 60
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        sent = 0
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break  # an answer (or a close) before the end of the body
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        try:
            return read_reply(sock, deadline), sent
        except ConnectionResetError:
            return None, sent


MB = 1 << 20


def test_body_of_100_mb_with_content_length(ctx):
    head = (b"POST /api/v1/batches/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (100 * MB))
    r, sent = stream_body(ctx.port, head, b" " * MB, 100 * MB)
    try:
        if r is not None:
            assert r.status == 413, r
            assert_problem(r, 413)
            assert "BP_MAX_BODY_BYTES" in r.json()["detail"]
        assert sent < 100 * MB, "the server read a 100 MB body it must refuse"
    finally:
        assert_alive(ctx)


def test_body_of_100_mb_chunked(ctx):
    head = (b"POST /api/v1/batches/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    piece = b"%x\r\n" % MB + b" " * MB + b"\r\n"
    r, sent = stream_body(ctx.port, head, piece, 100 * len(piece))
    try:
        if r is not None:
            assert r.status == 413, r
            assert_problem(r, 413)
        assert sent < 100 * len(piece), "the server read a 100 MB body it must refuse"
    finally:
        assert_alive(ctx)


def test_slow_loris_is_dropped_while_others_are_served(ctx):
    """A client sending its request head one byte per 0.5 s: h2o's request timeout (10 s for the whole
    head, not per byte) drops it, and meanwhile everyone else is served."""
    head = b"GET /api/v1/ HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    outcome = {}

    def slow_client():
        with socket.create_connection(("127.0.0.1", ctx.port), timeout=5) as sock:
            for byte in head:
                try:
                    sock.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    outcome["dropped"] = "reset"
                    return
                readable, _, _ = select.select([sock], [], [], 0.5)
                if readable:
                    try:
                        data = sock.recv(4096)
                    except ConnectionResetError:
                        data = b""
                    outcome["dropped"] = "closed" if data == b"" else data
                    return
            outcome["dropped"] = None  # sent the whole head (100 s): never dropped

    t = threading.Thread(target=slow_client, daemon=True)
    t.start()
    served = 0
    session = requests.Session()
    try:
        def dropped():
            nonlocal served
            r = session.get(ctx.api.url + "/api/v1/", timeout=2)
            assert r.status_code == 200, r.text
            served += 1
            return "dropped" in outcome
        wait_until(dropped, 15, "the slow client to be dropped", interval=0.2)
        assert served >= 5, f"only {served} other requests were answered while the slow client was connected"
        got = outcome["dropped"]
        # closed, or a 4xx answer (408): never a response to the request it never finished
        assert got in ("closed", "reset") or re.match(rb"HTTP/1\.1 4\d\d ", got), got
    finally:
        t.join(timeout=1)
        assert_alive(ctx)
