"""The HTTP subcommands of the batchpipe CLI (post, get, query) against the real API, worker, Kafka and
PostgreSQL: what a user sees on stdout/stderr, the exit status, and that what post reports is what the
API stored."""
import fcntl
import json
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import termios
import time

import pytest
import requests

from conftest import API_BIN, CLI_BIN, FIXTURES, Api, Proc, free_port, wait_until

GEN = os.path.join(FIXTURES, "gen_batch.py")


@pytest.fixture(scope="module")
def stack(bp_env):
    api = bp_env.start_api()
    worker = bp_env.start_worker()
    bp_env.wait_assigned(worker)
    yield bp_env, api
    api.proc.stop()
    worker.stop()


def cli(env, api, *args, **extra):
    extra.setdefault("BP_API_URL", api.url)
    return env.cli(*args, check=False, **extra)


def gen_batch(path, batch_id, objects, seed, prefix):
    with open(path, "w") as f:
        subprocess.run([sys.executable, GEN, "--batch-id", batch_id, "--objects", str(objects), "--pairs", "4",
                        "--seed", str(seed), "--prefix", prefix], stdout=f, check=True, timeout=60)
    with open(path) as f:
        return json.load(f)


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)


def one_line(text):
    """The only line of text (errors are one line)."""
    lines = text.splitlines()
    assert len(lines) == 1, f"expected one line, got: {text!r}"
    return lines[0]


def no_terminal_codes(r):
    assert "\r" not in r.stdout + r.stderr and "\x1b" not in r.stdout + r.stderr


# --- help and usage --------------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", ["post", "get", "query"])
def test_help_on_every_subcommand(stack, cmd):
    env, api = stack
    for flag in ("--help", "-h"):
        r = cli(env, api, cmd, flag)
        assert r.returncode == 0
        assert r.stdout.startswith(f"usage: batchpipe [settings] {cmd}")
        assert r.stderr == ""


@pytest.mark.parametrize("args, says", [
    (["post"], "no files to post"),
    (["post", "--concurrency", "0", "x"], "--concurrency takes a number from 1 to 64"),
    (["post", "--concurrency", "1000", "x"], "--concurrency takes a number from 1 to 64"),
    (["post", "--wait=abc", "x"], "--wait=SECONDS takes a number"),
    (["post", "--retries"], "--retries takes a number"),
    (["post", "/nonexistent/file.json"], "/nonexistent/file.json: No such file or directory"),
    (["post", "--frobnicate", "x"], "unknown option --frobnicate"),
    (["get"], "which object?"),
    (["get", "a", "b"], "takes one OBJECT_ID"),
    (["get", ""], "the OBJECT_ID is empty"),
    (["query", "color"], "\"color\" is not KEY=VALUE or KEY:=JSON"),
    (["query", "=red"], "has an empty key"),
    (["query", "n:=forty"], "n:= takes a JSON number, true, false, null or \"string\""),
    (["query", "n:=[1,2]"], "not an object or array"),
    (["query", "a=1", "a=2"], "the key a is given twice"),
    (["query", "--limit", "0"], "--limit takes a number from 1 to 100000"),
    (["query", "--limit", "1e3"], "--limit takes a number from 1 to 100000"),
    (["query", "--batch"], "--batch takes a batch_id"),
])
def test_usage_errors_are_one_line_and_exit_2(stack, args, says):
    env, api = stack
    r = cli(env, api, *args)
    assert r.returncode == 2, r.stderr
    line = one_line(r.stderr)
    assert line.startswith(f"batchpipe {args[0]}: ") and says in line
    assert r.stdout == ""


# --- post ------------------------------------------------------------------------------------------

def test_post_dir_with_good_and_bad_files(stack, tmp_path):
    env, api = stack
    d = tmp_path / "batches"
    d.mkdir()
    good = gen_batch(d / "a-good.json", "cli-dir-good", 300, 1, "cli-dir-good-")
    shutil.copy(os.path.join(FIXTURES, "valid_batch.json"), d / "b-valid.json")
    shutil.copy(os.path.join(FIXTURES, "batch_typos.json"), d / "c-typos.json")
    shutil.copy(os.path.join(FIXTURES, "cli", "not_json.json"), d / "d-not-json.json")
    (d / "notes.txt").write_text("not a batch: ignored\n")
    (d / "sub").mkdir()
    shutil.copy(os.path.join(FIXTURES, "batch_v1.json"), d / "sub" / "nested.json")  # not recursive

    r = cli(env, api, "post", str(d))
    assert r.returncode == 1, r.stdout + r.stderr
    no_terminal_codes(r)
    lines = r.stdout.splitlines()
    # one line per file in the folder's *.json, then the summary
    assert len(lines) == 5, r.stdout
    by_file = {l.split()[1]: l for l in lines[:4]}
    assert set(by_file) == {str(d / n) for n in ("a-good.json", "b-valid.json", "c-typos.json", "d-not-json.json")}
    assert by_file[str(d / "a-good.json")].startswith("ok ")
    assert "batch_id=cli-dir-good objects=300 " in by_file[str(d / "a-good.json")]
    assert by_file[str(d / "b-valid.json")].startswith("ok ")

    # the rejected file shows every violation the API lists for it
    typos = by_file[str(d / "c-typos.json")]
    assert typos.startswith(f"rejected {d / 'c-typos.json'} (400): ")
    with open(os.path.join(FIXTURES, "batch_typos.json"), "rb") as f:
        problem = api.post("/api/v1/batches/", f.read()).json()
    assert len(problem["errors"]) == 4
    for e in problem["errors"]:
        assert f"{e['pointer']}: {e['message']}" in typos
    not_json = by_file[str(d / "d-not-json.json")]
    assert not_json.startswith(f"rejected {d / 'd-not-json.json'} (400): ")
    assert "JSON" in not_json

    assert lines[4].startswith("4 files: 2 accepted (")
    assert lines[4].endswith(", 2 rejected, 0 failed")
    assert "nested" not in r.stdout

    # the good files become queryable
    valid = fixture("valid_batch.json")
    wait_until(lambda: api.get("/api/v1/batches/cli-dir-good/").status_code == 200
               and api.get("/api/v1/batches/cli-dir-good/").json()["object_count"] == 300, 30, "the good batch")
    wait_until(lambda: api.get(f"/api/v1/batches/{valid['batch_id']}/").status_code == 200, 30, "the valid batch")
    assert api.get(f"/api/v1/objects/{good['objects'][-1]['object_id']}/").status_code == 200


def test_post_wait_makes_every_object_queryable_at_once(stack, tmp_path):
    env, api = stack
    d = tmp_path / "wait"
    d.mkdir()
    batches = [gen_batch(d / f"w{i}.json", f"cli-wait-{i}", 200, 10 + i, f"cli-wait-{i}-") for i in range(4)]
    r = cli(env, api, "post", "--wait=20", "--concurrency", "3", str(d))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert all(l.startswith("ok ") and " status=stored token=2." in l for l in lines[:4]), r.stdout
    assert lines[4].startswith("4 files: 4 accepted (800 objects, ") and lines[4].endswith(", 0 rejected, 0 failed")
    # no waiting here: post --wait returned only once everything was applied
    for b in batches:
        page = api.get(f"/api/v1/objects/?batch_id={b['batch_id']}&page_size=1000").json()
        assert page["count"] == 200
        assert {o["object_id"] for o in page["results"]} == {o["object_id"] for o in b["objects"]}
        last = b["objects"][-1]
        got = api.get(f"/api/v1/objects/{last['object_id']}/")
        assert got.status_code == 200 and got.json()["data"] == last["data"]


def test_resubmission_in_one_run_and_in_two(stack, tmp_path):
    env, api = stack
    v1, v2 = fixture("batch_v1.json"), fixture("batch_v2.json")
    # two runs: the second updates every object
    assert cli(env, api, "post", "--wait", os.path.join(FIXTURES, "batch_v1.json")).returncode == 0
    for o in v1["objects"]:
        assert api.get(f"/api/v1/objects/{o['object_id']}/").json()["data"] == o["data"]
    r = cli(env, api, "post", "--wait", os.path.join(FIXTURES, "batch_v2.json"))
    assert r.returncode == 0, r.stdout + r.stderr
    for o in v2["objects"]:
        assert api.get(f"/api/v1/objects/{o['object_id']}/").json()["data"] == o["data"]
    # one run with both, many at once: the files of one batch_id go in the order given, the last wins
    d = tmp_path / "resub"
    d.mkdir()
    for i in range(6):
        shutil.copy(os.path.join(FIXTURES, "batch_v2.json" if i % 2 else "batch_v1.json"), d / f"{i}.json")
    r = cli(env, api, "post", "--wait", "--concurrency", "8", str(d))
    assert r.returncode == 0, r.stdout + r.stderr
    offsets = [int(l.split("offset=")[1].split()[0]) for l in r.stdout.splitlines()[:6]]
    assert offsets == sorted(offsets)  # same batch_id: same partition, published in file order
    for o in v2["objects"]:
        assert api.get(f"/api/v1/objects/{o['object_id']}/").json()["data"] == o["data"]


def test_post_retries_429_then_succeeds(stack, tmp_path):
    env, _ = stack
    limited = env.start_api(BP_RATE_LIMIT=5, BP_RATE_BURST=2)
    d = tmp_path / "limited"
    d.mkdir()
    for i in range(6):
        gen_batch(d / f"r{i}.json", f"cli-rate-{i}", 5, 30 + i, f"cli-rate-{i}-")
    r = cli(env, limited, "post", "--concurrency", "6", "--retries", "0", str(d))
    assert r.returncode == 1
    failed = [l for l in r.stdout.splitlines() if l.startswith("failed ")]
    assert failed and all("(429)" in l for l in failed), r.stdout
    r = cli(env, limited, "post", "--concurrency", "6", "--retries", "8", str(d))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1].startswith("6 files: 6 accepted (30 objects")
    limited.proc.stop()


def test_progress_bar_on_a_terminal(stack, tmp_path):
    env, api = stack
    d = tmp_path / "tty"
    d.mkdir()
    for i in range(12):
        gen_batch(d / f"t{i:02}.json", f"cli-tty-{i}", 100, 50 + i, f"cli-tty-{i}-")
    shutil.copy(os.path.join(FIXTURES, "batch_typos.json"), d / "zz-typos.json")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 150, 0, 0))
    p = subprocess.Popen([CLI_BIN, "post", str(d)], env=env.environ(BP_API_URL=api.url, TERM="xterm"),
                         stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if not ready:
            if p.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the program exited and closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert p.wait(30) == 1
    text = out.decode("utf-8", "replace")
    assert "\r[" in text and "objects/s" in text
    assert "13/13 files  1200 objects" in text and "1 rejected  0 failed" in text
    assert "\x1b[K" in text  # the bar is cleared before lines and at the end
    lines = [l.split("\r")[-1].replace("\x1b[K", "") for l in text.replace("\r\n", "\n").split("\n")]
    assert not any(l.startswith("ok ") for l in lines)  # a terminal gets the bar instead
    assert any(l.startswith(f"rejected {d / 'zz-typos.json'} (400): /objects/2") for l in lines)
    assert any(l.startswith("13 files: 12 accepted (1200 objects") for l in lines)


# --- get -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mixed(stack):
    env, api = stack
    r = cli(env, api, "post", "--wait", os.path.join(FIXTURES, "mixed_values.json"),
            os.path.join(FIXTURES, "cli", "typed_values.json"))
    assert r.returncode == 0, r.stdout + r.stderr
    return fixture("mixed_values.json")


def test_get_found(stack, mixed):
    env, api = stack
    r = cli(env, api, "get", "strings")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "object_id:  strings"
    assert lines[1] == "batch_id:   mixed-values-2024-06"
    assert lines[2].startswith("created_at: 20") and lines[3].startswith("updated_at: 20")
    assert lines[5].split() == ["KEY", "VALUE"]
    stored = api.get("/api/v1/objects/strings/").json()
    table = lines[6:]
    assert len(table) == len(stored["data"])
    width = lines[5].index("VALUE")
    for line, pair in zip(table, stored["data"]):
        assert line[:width].rstrip() == pair["key"]
        shown = line[width:]
        # strings as they are, unless they could be taken for another type or are empty
        assert shown == pair["value"] or json.loads(shown) == pair["value"]
    assert "empty" in r.stdout and '""' in r.stdout


def test_get_typed_values_are_told_apart(stack, mixed):
    env, api = stack
    number = cli(env, api, "get", "typed-number").stdout
    string = cli(env, api, "get", "typed-string").stdout
    assert any(l.split() == ["n", "42"] for l in number.splitlines())
    assert any(l.split() == ["n", '"42"'] for l in string.splitlines())
    assert any(l.split() == ["flag", "true"] for l in number.splitlines())
    assert any(l.split() == ["flag", '"true"'] for l in string.splitlines())


def test_get_json_is_the_api_answer(stack, mixed):
    env, api = stack
    for oid in ("numbers", "Ünïcödé id/with~slash"):
        r = cli(env, api, "get", "--json", oid)
        assert r.returncode == 0, r.stderr
        answer = api.get("/api/v1/objects/" + requests.utils.quote(oid, safe="") + "/")
        assert answer.status_code == 200
        assert r.stdout == answer.text + "\n"
        assert json.loads(r.stdout)["object_id"] == oid


def test_get_not_found(stack, mixed):
    env, api = stack
    for args in (["get", "no-such-object"], ["get", "--json", "no-such-object"]):
        r = cli(env, api, *args)
        assert r.returncode == 1
        assert r.stderr == "batchpipe get: object no-such-object not found\n"
        assert r.stdout == ""


# --- query -----------------------------------------------------------------------------------------

def api_results(api, **params):
    page = api.get("/api/v1/objects/", params=dict(params, page_size=1000)).json()
    return page["results"], page["count"]


def test_query_table(stack, mixed):
    env, api = stack
    r = cli(env, api, "query", "type=t-shirt")
    assert r.returncode == 0, r.stderr
    no_terminal_codes(r)
    results, count = api_results(api, data='{"type":"t-shirt"}')
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["OBJECT_ID", "BATCH_ID", "DATA"]
    assert len(lines) == 1 + len(results) + 1
    for line, obj in zip(lines[1:], results):
        assert line.startswith(obj["object_id"])
        assert obj["batch_id"] in line and "type=t-shirt" in line
    assert lines[-1] == f"{len(results)} of {count} objects"


def test_query_json_matches_the_api(stack, mixed):
    env, api = stack
    r = cli(env, api, "query", "--json", "--batch", "mixed-values-2024-06")
    assert r.returncode == 0, r.stderr
    results, _ = api_results(api, batch_id="mixed-values-2024-06")
    assert json.loads(r.stdout) == results  # also the integers beyond 64 bits, digit for digit
    assert len(results) == len(mixed["objects"])
    huge = next(o for o in json.loads(r.stdout) if o["object_id"] == "numbers")
    api_huge = api.get("/api/v1/objects/numbers/").json()
    assert huge["data"] == api_huge["data"]


def test_query_typed_values(stack, mixed):
    env, api = stack
    def ids(*args):
        r = cli(env, api, "query", "--json", *args)
        assert r.returncode == 0, r.stderr
        return sorted(o["object_id"] for o in json.loads(r.stdout))
    assert ids("n:=42") == ["typed-number"]
    assert ids("n=42") == ["typed-string"]
    assert ids('n:="42"') == ["typed-string"]
    assert ids("flag:=true", "n:=42.0") == ["typed-number"]
    assert ids("cli_note:=null") == ["typed-plain"]
    table = cli(env, api, "query", "--batch", "cli-typed-values").stdout
    assert 'n="42" flag="true"' in table and "n=42 flag=true" in table and "cli_note=null" in table


def test_query_no_match(stack, mixed):
    env, api = stack
    r = cli(env, api, "query", "type=no-such-type")
    assert r.returncode == 0 and r.stdout == "0 of 0 objects\n"
    r = cli(env, api, "query", "--json", "type=no-such-type")
    assert r.returncode == 0 and json.loads(r.stdout) == []


def test_query_follows_next_links_up_to_the_limit(stack, tmp_path):
    env, api = stack
    b = gen_batch(tmp_path / "big.json", "cli-pages", 2300, 7, "cli-pages-")
    assert cli(env, api, "post", "--wait", str(tmp_path / "big.json")).returncode == 0
    r = cli(env, api, "query", "--json", "--batch", "cli-pages", "--limit", "2100")
    assert r.returncode == 0, r.stderr
    got = [o["object_id"] for o in json.loads(r.stdout)]
    assert got == [o["object_id"] for o in b["objects"]][:2100]
    r = cli(env, api, "query", "--batch", "cli-pages", "--limit", "5")
    assert r.stdout.splitlines()[-1] == "5 of 2300 objects"
    assert len(r.stdout.splitlines()) == 1 + 5 + 1


def test_query_refused_by_the_api_is_one_line(stack):
    env, api = stack
    # each pair passes the CLI, together they exceed the API's 131072 bytes of filter
    r = cli(env, api, "query", "a=" + "x" * 70000, "b=" + "y" * 70000)
    assert r.returncode == 1
    line = one_line(r.stderr)
    assert line.startswith("batchpipe query: the API answered 400: ") and "data" in line
    assert r.stdout == ""


# --- failures of the API and API keys ----------------------------------------------------------------

def test_api_down_is_one_line_naming_the_url(stack):
    env, _ = stack
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["get", "x"], ["query", "a=b"], ["post", "--retries", "0", os.path.join(FIXTURES, "valid_batch.json")]):
        r = env.cli(*args, check=False, BP_API_URL=url)
        assert r.returncode == 1
        text = r.stderr if args[0] != "post" else r.stdout.splitlines()[0]
        if args[0] != "post":
            one_line(r.stderr)
        assert f"cannot reach {url}/api/v1/" in text
        assert "onnect" in text  # libcurl's "Couldn't connect to server" / "Failed to connect"


def test_api_keys(stack, tmp_path):
    env, _ = stack
    key = "cli-admin-key-0123456789"
    hashed = subprocess.run([CLI_BIN, "hash-key", "read,write", "cli"], input=key + "\n", capture_output=True,
                            text=True, timeout=10, check=True).stdout
    keys = tmp_path / "api.keys"
    keys.write_text(hashed)
    port = free_port()
    proc = Proc([API_BIN], env.environ(BP_HTTP_PORT=port, BP_HTTP_HOST="127.0.0.1", BP_API_KEYS_FILE=str(keys)),
                "api-keys")
    env.procs.append(proc)
    secured = Api(proc, f"http://127.0.0.1:{port}")
    wait_until(lambda: requests.get(secured.url + "/healthz", timeout=2).status_code == 200, 30, "the API")
    batch = os.path.join(FIXTURES, "cli", "typed_values.json")

    for args in (["get", "typed-number"], ["query", "n:=42"]):
        r = cli(env, secured, *args)
        assert r.returncode == 1
        line = one_line(r.stderr)
        assert line.startswith(f"batchpipe {args[0]}: the API answered 401: ") and "API key" in line
    r = cli(env, secured, "post", batch)
    assert r.returncode == 1 and r.stdout.startswith(f"rejected {batch} (401): ")

    r = cli(env, secured, "post", "--wait", batch, BP_API_KEY=key)
    assert r.returncode == 0, r.stdout + r.stderr
    r = cli(env, secured, "get", "typed-number", BP_API_KEY=key)
    assert r.returncode == 0 and "object_id:  typed-number" in r.stdout
    r = cli(env, secured, "query", "--json", "n:=42", BP_API_KEY=key)
    assert r.returncode == 0 and [o["object_id"] for o in json.loads(r.stdout)] == ["typed-number"]
    r = cli(env, secured, "get", "typed-number", BP_API_KEY="wrong-key-0123456789")
    assert r.returncode == 1 and "401" in r.stderr
    assert key not in r.stdout + r.stderr and "wrong-key" not in r.stdout + r.stderr
    proc.stop()
