"""The OpenAPI document at /api/v1/openapi.json: OpenAPI 3.1 served as JSON, in step with the routes the
server answers (both ways: the listed routes answer, the spec lists exactly them, and for every path
the methods the server allows are the methods the spec documents), with the payload schemas that the
validator uses inlined."""
import json
import os

import pytest

from conftest import SOURCE

# Every (method, path) the API answers. A new route goes here and into schemas/openapi.json.
ROUTES = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/v1/batches/"),
    ("POST", "/api/v1/batches/"),
    ("GET", "/api/v1/batches/{batch_id}/"),
    ("GET", "/api/v1/receipts/{token}/"),
    ("DELETE", "/api/v1/batches/{batch_id}/"),
    ("GET", "/api/v1/objects/"),
    ("POST", "/api/v1/objects/"),
    ("GET", "/api/v1/objects/{object_id}/"),
    ("DELETE", "/api/v1/objects/{object_id}/"),
    ("GET", "/api/v1/stats/"),
    ("GET", "/console/"),
    ("GET", "/console/{file}"),
}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
ROUTER_404 = "no route matches this path"


@pytest.fixture(scope="module")
def server(bp_env):
    a = bp_env.start_api()
    yield a
    if a.proc.alive():
        a.proc.stop()


@pytest.fixture(scope="module")
def spec(server):
    r = server.get("/api/v1/openapi.json")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    return r.json()


def concrete(path):
    return path.replace("{batch_id}", "no-such-batch").replace("{object_id}", "no-such-object").replace(
        "{file}", "index.html").replace("{token}", "no-such-token")


def spec_routes(spec):
    return {(m.upper(), p) for p, item in spec["paths"].items() for m in item if m in METHODS}


def test_is_openapi_31(server, spec):
    assert spec["openapi"].startswith("3.1.")
    assert spec["info"]["title"] and spec["info"]["version"]
    # the trailing slash is optional here too, and the index links to the document
    assert server.get("/api/v1/openapi.json/").json() == spec
    assert server.get("/api/v1/").json()["openapi"].endswith("/api/v1/openapi.json")


def test_spec_lists_exactly_the_routes(spec):
    assert spec_routes(spec) == ROUTES


def test_every_route_answers(server):
    for method, path in sorted(ROUTES):
        kw = {"data": "{}", "headers": {"Content-Type": "application/json"}} if method == "POST" else {}
        r = server.session.request(method, server.url + concrete(path), timeout=30, **kw)
        assert r.status_code != 405, (method, path, r.text)
        assert not (r.status_code == 404 and ROUTER_404 in r.text), (method, path, r.text)
        # /readyz may still say 503 in the first second (no broker statistics yet): a documented answer
        ok = r.status_code < 500 or (path == "/readyz" and r.status_code == 503 and "checks" in r.json())
        assert ok, (method, path, r.status_code, r.text)


def test_server_allows_exactly_the_documented_methods(server, spec):
    for path, item in spec["paths"].items():
        r = server.session.request("PUT", server.url + concrete(path), data="{}", timeout=30)
        assert r.status_code == 405, (path, r.status_code)
        allowed = {m.strip() for m in r.headers["Allow"].split(",")} - {"HEAD"}
        assert allowed == {m.upper() for m in item if m in METHODS}, path
    # and a path the spec does not have is not served
    assert ROUTER_404 in server.get("/api/v1/nothing/").text
    assert set(spec["components"]["securitySchemes"]) == {"bearerAuth", "apiKeyHeader"}


def resolve(doc, pointer):
    node = doc
    for part in pointer.lstrip("#/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def refs(node, scope, out):
    """(ref, the schema resource it is relative to) for every $ref; a schema with $id starts a scope."""
    if isinstance(node, dict):
        if "$id" in node:
            scope = node
        if isinstance(node.get("$ref"), str):
            out.append((node["$ref"], scope))
        for v in node.values():
            refs(v, scope, out)
    elif isinstance(node, list):
        for v in node:
            refs(v, scope, out)
    return out


def test_every_reference_resolves(spec):
    found = refs(spec, spec, [])
    assert len(found) > 30
    for ref, scope in found:
        assert ref.startswith("#/"), ref
        resolve(scope, ref)  # raises if dangling


def test_operations_document_their_answers(spec):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            codes = set(op["responses"])
            assert op.get("operationId") and op.get("summary"), (method, path)
            if path.startswith("/api/v1/batches") or path.startswith("/api/v1/objects"):
                assert "503" in codes, (method, path)  # the database or the broker may be away
            if method == "get" and path in ("/api/v1/batches/", "/api/v1/objects/"):
                assert {"200", "400"} <= codes, (method, path)
                names = {resolve(spec, p["$ref"])["name"] for p in op["parameters"]}
                assert {"page", "page_size", "cursor", "count", "data", "key", "value"} <= names
            if method == "post":
                assert {"202", "400", "413", "415", "503"} <= codes, (method, path)
            if "{" in path and method in ("get", "delete"):
                assert "404" in codes, (method, path)
            public = op.get("security") == [{}]  # probes, the scraper and the console's files need no key
            assert public == (path in ("/healthz", "/readyz", "/metrics") or path.startswith("/console/")), (method, path)
            if not public:
                assert {"401", "403", "429"} <= codes, (method, path)
    assert "409" in spec["paths"]["/api/v1/batches/{batch_id}/"]["delete"]["responses"]


@pytest.mark.parametrize("name,file", [("Batch", "batch.schema.json"), ("Object", "object.schema.json")])
def test_payload_schemas_are_the_validators(spec, name, file):
    with open(os.path.join(SOURCE, "schemas", file)) as f:
        assert spec["components"]["schemas"][name] == json.load(f)


def test_examples_in_the_spec_parse(spec):
    ex = spec["components"]["parameters"]["data"]["examples"]["pairs"]["value"]
    assert isinstance(json.loads(ex), dict)
