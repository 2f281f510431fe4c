"""bench/benchlib.py - what the benchmarks share: the test harness's Env (a fresh database and topics,
the real binaries), machine load and CPU accounting per phase, peak RSS, wrk and pgbench runners.

A benchmark's main() parses its arguments (arg_parser() has the shared options) and calls setup()
before anything else here that needs the harness. Benchmarks measure; they never assert a time.
Everything talks to 127.0.0.1 only."""
import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))

# The integration tests' harness (tests/integration/conftest.py: Env, Proc, wait_until, ...), imported
# by setup(): it reads the build directory and the services' addresses from the environment when it is
# imported, so setup() sets those first. Importing benchlib itself changes nothing.
conftest = None
Env = None
wait_until = None


# The options several benchmarks take, each defined once: arg_parser(__doc__, "quiet-wait", ...).
SHARED_OPTIONS = {
    "quiet-wait": dict(type=int, default=30, metavar="S",
                       help="before each timed phase, wait up to S seconds for other work on the machine to "
                            "calm down"),
    "partitions": dict(type=int, default=12, help="partitions of the bench's topic"),
    "api-threads": dict(type=int, default=2, help="the API's HTTP threads (BP_HTTP_THREADS)"),
    "api-env": dict(action="append", default=[], metavar="BP_X=V",
                    help="extra API setting, e.g. BP_PG_POOL_SIZE=8 (repeatable)"),
    "worker-env": dict(action="append", default=[], metavar="BP_X=V",
                       help="extra worker setting, e.g. BP_TXN_MAX_BYTES=1MiB (repeatable)"),
}


def arg_parser(doc, *shared):
    """An ArgumentParser (description: the script's doc) with --build-dir, which every benchmark takes,
    and the SHARED_OPTIONS named in shared; the script adds its own."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", metavar="DIR",
                    help="the build whose binaries are measured (default: $BP_BUILD_DIR, else build/)")
    for name in shared:
        ap.add_argument("--" + name, **SHARED_OPTIONS[name])
    return ap


def settings(pairs):
    """--api-env / --worker-env values ("BP_X=V" strings) as a dict."""
    return dict(kv.split("=", 1) for kv in pairs)


def setup(args=None):
    """Call once from a benchmark's main(), after parsing its arguments: point the harness at the build
    (args.build_dir, else $BP_BUILD_DIR, else build/) and at this machine's services (BP_KAFKA_BROKERS,
    BP_TEST_PG_DSN: 127.0.0.1 only, anything else is refused), import it (benchlib.conftest, Env,
    wait_until) and check that the binaries are there."""
    global conftest, Env, wait_until
    sys.dont_write_bytecode = True  # do not leave __pycache__ in tests/integration
    build = getattr(args, "build_dir", None) or os.environ.get("BP_BUILD_DIR") or os.path.join(ROOT, "build")
    os.environ["BP_BUILD_DIR"] = os.path.abspath(build)
    os.environ.setdefault("BP_SOURCE_DIR", ROOT)
    # the harness reads BP_KAFKA_BROKERS and BP_TEST_PG_DSN; a benchmark only ever talks to this machine
    os.environ.setdefault("BP_KAFKA_BROKERS", "127.0.0.1:9092")
    os.environ.setdefault("BP_TEST_PG_DSN", "host=127.0.0.1 port=5432 dbname=batchpipe user=postgres")
    for h in (os.environ["BP_KAFKA_BROKERS"], os.environ["BP_TEST_PG_DSN"]):
        if "127.0.0.1" not in h and "localhost" not in h:
            sys.exit(f"benchmarks only talk to 127.0.0.1; refusing {h!r}")
    harness_dir = os.path.join(ROOT, "tests", "integration")
    if harness_dir not in sys.path:
        sys.path.insert(0, harness_dir)
    import conftest as harness
    conftest, Env, wait_until = harness, harness.Env, harness.wait_until
    check_binaries()


PGBENCH = os.environ.get("BP_PGBENCH", "/usr/lib/postgresql/15/bin/pgbench")
NCPU = os.cpu_count() or 1
TICK = os.sysconf("SC_CLK_TCK")


def check_binaries():
    for b in (conftest.API_BIN, conftest.INGEST_BIN, conftest.CLI_BIN):
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} is missing: build first, e.g.\n  cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=RelWithDebInfo"
                     f" && cmake --build build-bench -j2\nand run with --build-dir build-bench")
    cache = os.path.join(os.environ["BP_BUILD_DIR"], "CMakeCache.txt")
    if os.path.exists(cache):
        with open(cache) as f:
            m = re.search(r"^CMAKE_BUILD_TYPE:\w+=(.*)$", f.read(), re.M)
        bt = m.group(1) if m else ""
        if bt not in ("Release", "RelWithDebInfo"):
            print(f"WARNING: {os.environ['BP_BUILD_DIR']} is a {bt or 'unoptimized'} build; benchmark an optimized "
                  f"one (-DCMAKE_BUILD_TYPE=RelWithDebInfo)", flush=True)


def need_wrk():
    if shutil.which("wrk"):
        return "wrk"
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: apt-get install -y wrk", flush=True)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, stdout=subprocess.DEVNULL)
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: install it with `apt-get install -y wrk` (Debian package)")
    return "wrk"


def machine():
    """One line describing the machine, for the report."""
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    return f"{NCPU} CPUs ({model}), {mem / 1024:.1f} GiB RAM, kernel {os.uname().release}"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def note(msg):
    print(f"[{time.strftime('%H:%M:%S')} load {loadavg()}] {msg}", flush=True)


# ---- CPU accounting: who used the two cores during a phase ----

def _machine_jiffies():
    """busy, total (user..steal) and steal: time the hypervisor gave this VM's CPUs to others while
    they had work (here it comes as whole 100 ms pauses of a CPU once the VM has spent its quota)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v[:8]) - idle, sum(v[:8]), v[7]


def proc_cpu(pid):
    """(seconds on a CPU, seconds runnable but waiting for one) of a live process, all its threads
    (from /proc/<pid>/task/*/schedstat), or None."""
    run = wait = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                r, w, _ = f.read().split()
        except (OSError, ValueError):
            continue  # a thread that just ended
        run += int(r)
        wait += int(w)
    return run / 1e9, wait / 1e9


def _status_kib(pid, field):
    """A "Field:   N kB" line of /proc/<pid>/status in KiB, or None (no such process)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def vm_hwm_kib(pid):
    """Peak resident set (VmHWM) of a live process in KiB, or None."""
    return _status_kib(pid, "VmHWM")


def vm_rss_kib(pid):
    """Resident set (VmRSS) of a live process in KiB, or None."""
    return _status_kib(pid, "VmRSS")


def kafka_pid():
    p = os.path.join(ROOT, "run", "kafka", "pid")
    try:
        with open(p) as f:
            pid = int(f.read().strip())
        return pid if os.path.exists(f"/proc/{pid}") else None
    except (OSError, ValueError):
        return None


def pg_backend_pids(conn, dbname):
    """PostgreSQL processes working for a benchmark's database: its backends (not the monitoring one)
    and the server's shared helpers (WAL writer, checkpointer, background writer, autovacuum)."""
    with conn.cursor() as cur:
        cur.execute("SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND "
                    "(datname = %s OR backend_type IN ('walwriter', 'checkpointer', 'background writer', "
                    "'autovacuum launcher', 'autovacuum worker'))", (dbname,))
        return [r[0] for r in cur.fetchall()]


def busy_pct(seconds=1.0):
    """How busy the machine was over the next `seconds` (100% = one core)."""
    b0, t0, _ = _machine_jiffies()
    time.sleep(seconds)
    b1, t1, _ = _machine_jiffies()
    return 100.0 * (b1 - b0) / max(1, t1 - t0) * NCPU


def wait_quiet(max_wait_s, limit_pct=40):
    """Before a timed phase: wait (at most max_wait_s) until other work on this shared machine uses
    less than limit_pct of a core over one second. Returns the last measurement; says when it gave up."""
    deadline = time.monotonic() + max_wait_s
    while True:
        b = busy_pct(1.0)
        if b <= limit_pct or max_wait_s <= 0:
            return b
        if time.monotonic() >= deadline:
            note(f"the machine stayed busy ({b:.0f}% of a core used by others) for {max_wait_s} s: measuring anyway")
            return b


class CpuPhase:
    """CPU used during one phase: the whole machine, each named group of processes, our child
    processes reaped during the phase (wrk, pgbench, client processes), and the rest: other people's
    work on this shared machine. A group is a list of pids or a function returning one (called again
    every half second, so that processes born during the phase, like pgbench's backends, count too).

        ph = CpuPhase({"api": [pid], "postgres": lambda: pids}); ...; print(ph.end())"""

    def __init__(self, groups):
        self.groups = groups
        self.load0 = loadavg()
        self.busy0, self.total0, self.steal0 = _machine_jiffies()
        self.child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.self0 = resource.getrusage(resource.RUSAGE_SELF)
        self.first, self.last = {}, {}  # group -> {pid: cpu seconds}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sample(initial=True)
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self, initial=False):
        for name, pids in self.groups.items():
            try:
                current = pids() if callable(pids) else pids
            except Exception:  # noqa: BLE001 - a monitoring query failing costs one sample
                current = []
            with self._lock:
                first, last = self.first.setdefault(name, {}), self.last.setdefault(name, {})
                for p in current:
                    c = proc_cpu(p)
                    if c is None:
                        continue
                    if p not in first:
                        first[p] = c if initial else (0.0, 0.0)  # born during the phase: all of it counts
                    last[p] = c

    def _run(self):
        while not self._stop.wait(0.5):
            self._sample()

    def end(self, client_label="client"):
        """One line: load, machine busy, CPU per group (and our reaped children: client_label), the
        rest as "others", and how long each group waited for a CPU while runnable."""
        self._stop.set()
        self._thread.join()
        self._sample()
        wall = time.monotonic() - self.t0
        busy1, total1, steal1 = _machine_jiffies()
        share, waited = {}, {}
        for name in self.groups:
            share[name] = sum(self.last[name][p][0] - c0[0] for p, c0 in self.first[name].items())
            waited[name] = sum(self.last[name][p][1] - c0[1] for p, c0 in self.first[name].items())
        ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        se1 = resource.getrusage(resource.RUSAGE_SELF)
        share[client_label] = (ch1.ru_utime + ch1.ru_stime - self.child0.ru_utime - self.child0.ru_stime
                               + se1.ru_utime + se1.ru_stime - self.self0.ru_utime - self.self0.ru_stime)
        total_s = (busy1 - self.busy0) / TICK
        self.wall = wall
        self.busy_pct = 100.0 * (busy1 - self.busy0) / max(1, total1 - self.total0) * NCPU
        self.other_pct = 100.0 * max(0.0, total_s - sum(share.values())) / wall
        self.waited = {k: 100.0 * v / wall for k, v in waited.items()}
        self.steal_pct = 100.0 * (steal1 - self.steal0) / TICK / wall
        self.seconds = share  # CPU seconds per group, and the reaped children under client_label
        parts = ", ".join(f"{k} {100.0 * v / wall:.0f}%" for k, v in share.items())
        waits = ", ".join(f"{k} {v:.0f}%" for k, v in self.waited.items())
        self.line = (f"load before {self.load0}, after {loadavg()}; CPU over {wall:.1f} s (100% = one core, "
                     f"{NCPU * 100}% = machine): busy {self.busy_pct:.0f}% = {parts}, others {self.other_pct:.0f}%"
                     f"; runnable but waiting for a CPU: {waits}; steal {self.steal_pct:.0f}%")
        return self.line

    def print_report(self, failed_output=None):
        """After end(): print its line, failed_output when given (a tool's whole output when it gave
        no figure) and the warning of warn_if_busy() if any."""
        print(f"  {self.line}")
        if failed_output is not None:
            print(failed_output)
        warn = self.warn_if_busy()
        if warn:
            print(warn)

    def warn_if_busy(self, limit_pct=30):
        if self.other_pct > limit_pct:
            return (f"  WARNING: other processes used {self.other_pct:.0f}% of a core during this phase: "
                    f"re-run this figure when the machine is quieter")
        return ""


# ---- wrk ----

WRK_DONE = """
done = function(summary, latency, requests)
    io.write("BENCH")
    for _, p in pairs({50, 90, 99, 99.9}) do
        io.write(string.format(" p%g=%.3f", p, latency:percentile(p) / 1000))
    end
    io.write(string.format(" max=%.3f\\n", latency.max / 1000))
    if timed_report then timed_report() end
end
"""

# Per-request timing inside wrk: CLOCK_MONOTONIC (LuaJIT's ffi) when a request is built and when its
# response is parsed, paired by a key that the route's script puts in the request and finds in the
# response (key(body)). Here wrk's own latency percentiles came out far above both this and the
# server's own histogram (bp_http_request_duration_seconds) on the same requests, so the benchmarks
# report these; wrk's are printed beside them. A route script defines request() calling
# timed(key, wrk.format(...)) and key(body).
WRK_TIMED = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bp_timespec_t;
int clock_gettime(int clk, bp_timespec_t *ts);
]]
local ts = ffi.new("bp_timespec_t")
local function now_us()
    ffi.C.clock_gettime(1, ts)
    return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end
local threads = {}
setup = function(thread)
    table.insert(threads, thread)
    thread:set("tid", #threads)
end
local started = {}
hist = {} -- latency in buckets of 10 microseconds
function timed(k, req)
    started[k] = now_us()
    return req
end
response = function(status, headers, body)
    local k = key(body)
    local t0 = k and started[k]
    if t0 then
        started[k] = nil
        local b = math.floor((now_us() - t0) / 10)
        hist[b] = (hist[b] or 0) + 1
    end
end
function timed_report()
    local all, total, keys = {}, 0, {}
    for _, t in ipairs(threads) do
        for b, c in pairs(t:get("hist")) do
            if all[b] == nil then table.insert(keys, b) end
            all[b] = (all[b] or 0) + c
            total = total + c
        end
    end
    table.sort(keys)
    local want, i, acc = {50, 90, 99, 99.9}, 1, 0
    io.write("TIMED n=", total)
    for _, b in ipairs(keys) do
        acc = acc + all[b]
        while i <= #want and acc >= total * want[i] / 100 do
            io.write(string.format(" p%g=%.3f", want[i], b / 100))
            i = i + 1
        end
    end
    io.write(string.format(" max=%.3f\\n", (keys[#keys] or 0) / 100))
end
"""


def _first(pattern, text, conv=int):
    """conv() of the first group of pattern's first match in a tool's output, or None."""
    m = re.search(pattern, text)
    return conv(m.group(1)) if m else None


def run_wrk(url, connections, threads, seconds, lua="", timeout_s=10):
    """Run wrk with a Lua script (lua: its source; a done() reporting percentiles is appended; a
    script that calls timed() gets the per-request timing above). Returns dict(rps, p50, p90, p99,
    p999, max in ms: from the per-request timing when the script has it, else wrk's own; wrk_p99,
    timed_n, errors, non2xx, requests, raw)."""
    fd, script = tempfile.mkstemp(prefix="bp-wrk-", suffix=".lua")
    with os.fdopen(fd, "w") as f:
        f.write((WRK_TIMED if "timed(" in lua else "") + lua + WRK_DONE)
    try:
        argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", f"{timeout_s}s",
                "-s", script, url]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(script)
    out = r.stdout + r.stderr
    res = {"raw": out, "rps": None, "p50": None, "p90": None, "p99": None, "p999": None, "max": None,
           "wrk_p99": None, "timed_n": None, "errors": 0, "non2xx": 0, "requests": None}
    res["rps"] = _first(r"Requests/sec:\s+([\d.]+)", out, float)
    for tag in ("BENCH", "TIMED"):  # TIMED (when present) overrides wrk's own figures
        m = re.search(rf"^{tag} (.*)$", out, re.M)
        if m:
            for kv in m.group(1).split():
                k, v = kv.split("=")
                if k == "n":
                    res["timed_n"] = int(v)
                else:
                    res[{"p99.9": "p999"}.get(k, k)] = float(v)
            if tag == "BENCH":
                res["wrk_p99"] = res["p99"]
    res["requests"] = _first(r"(\d+) requests in", out)
    res["non2xx"] = _first(r"Non-2xx or 3xx responses:\s+(\d+)", out) or 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["errors"] = sum(int(x) for x in m.groups())
    return res


def server_histogram(base_url, route_part):
    """The API's own bp_http_request_duration_seconds buckets ({le: count}) for routes containing
    route_part, from /metrics; {} when unavailable."""
    import urllib.request
    out = {}
    try:
        with urllib.request.urlopen(base_url + "/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith("bp_http_request_duration_seconds_bucket") and route_part in line:
            le = line.split('le="')[1].split('"')[0]
            out[le] = out.get(le, 0) + float(line.split()[-1])
    return out


def server_share_within(h0, h1, le="0.01"):
    """Share (%) of the requests between two server_histogram() snapshots that took at most le s."""
    total = h1.get("+Inf", 0) - h0.get("+Inf", 0)
    if total <= 0 or le not in h1:
        return None
    return 100.0 * (h1[le] - h0.get(le, 0)) / total


# ---- pgbench ----

# Each pgbench session first allocates and frees 4 MiB once, as the API's sessions do
# (BP_PG_HEAP_WARMUP, api/pgpool.c warm_heap): without it a statement may make its backend's glibc
# shrink and regrow the heap at every execution, and the reference would pay what the API does not.
HEAP_WARMUP = "\\if :bp_warmed = 0\nSELECT length(repeat('x', 4194304));\n\\set bp_warmed 1\n\\endif\n"


def run_pgbench(dsn_db, script_text, clients, threads, seconds, defines=(), env_options="", mode="extended"):
    """Run pgbench -M extended (like the API's PQsendQueryParams: unnamed statements, parameters sent
    apart; mode="prepared" for named prepared statements) with a custom script (after HEAP_WARMUP);
    per-transaction latencies from --log. Returns dict(tps, p50, p90, p99, p999, max in ms, failed,
    xacts, raw)."""
    d = tempfile.mkdtemp(prefix="bp-pgbench-")
    defines = list(defines) + [("bp_warmed", "0")]
    try:
        script = os.path.join(d, "script.sql")
        with open(script, "w") as f:
            f.write(HEAP_WARMUP + script_text)
        host, port, db, user = "127.0.0.1", "5432", None, "postgres"
        for part in dsn_db.split():
            k, _, v = part.partition("=")
            if k == "host":
                host = v
            elif k == "port":
                port = v
            elif k == "dbname":
                db = v
            elif k == "user":
                user = v
        argv = [PGBENCH, "-n", "-M", mode, "-h", host, "-p", port, "-U", user, "-c", str(clients),
                "-j", str(threads), "-T", str(seconds), "-f", script, "--log", "--log-prefix",
                os.path.join(d, "log")]
        for k, v in defines:
            argv += ["-D", f"{k}={v}"]
        argv.append(db)
        env = dict(os.environ)
        if env_options:
            env["PGOPTIONS"] = env_options
        r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120, env=env)
        out = r.stdout + r.stderr
        res = {"raw": out, "tps": None, "p50": None, "p90": None, "p99": None, "p999": None, "max": None,
               "xacts": None, "failed": None}
        res["tps"] = _first(r"tps = ([\d.]+) \(without initial connection time\)", out, float)
        res["xacts"] = _first(r"number of transactions actually processed: (\d+)", out)
        res["failed"] = _first(r"number of failed transactions: (\d+)", out) or 0
        lat = []
        for name in os.listdir(d):
            if name.startswith("log"):
                with open(os.path.join(d, name)) as f:
                    for line in f:
                        fs = line.split()
                        if len(fs) >= 3 and fs[2].isdigit():  # "failed"/"skipped" carry no time
                            lat.append(int(fs[2]) / 1000.0)  # microseconds -> ms
        lat.sort()
        if lat:
            for key, pct in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)):
                res[key] = lat[min(len(lat) - 1, int(len(lat) * pct / 100))]
            res["max"] = lat[-1]
        if r.returncode != 0:
            res["tps"] = None
        return res
    finally:
        shutil.rmtree(d, ignore_errors=True)


def fmt_ms(v):
    return "?" if v is None else f"{v:.2f} ms"


def delete_topics(env):
    """Delete a bench Env's topics (the harness only drops the database)."""
    try:
        from confluent_kafka.admin import AdminClient
        admin = AdminClient({"bootstrap.servers": os.environ["BP_KAFKA_BROKERS"], "log_level": 3})
        futs = admin.delete_topics([env.topic, env.dlq_topic], operation_timeout=30)
        for f in futs.values():
            try:
                f.result(30)
            except Exception:  # noqa: BLE001 - a topic that is already gone is fine
                pass
    except Exception as exc:  # noqa: BLE001
        print(f"(could not delete topics {env.topic}: {exc})")
