#!/usr/bin/python3
"""bench/ingest.py - end-to-end ingest throughput against PostgreSQL's own COPY, in one run.

Makes a fresh database and topic, starts the API and W ingest workers, and posts N objects in
batches from several client processes (bodies generated before the clock starts). Figures:

  accept rate   objects/s from the first request to the last 202 (every batch acked by the broker)
  end to end    objects/s from the first request to the last row committed (ingest_offsets past
                every acked offset, per partition)
  COPY          the same rows COPYed, in one transaction, into a scratch copy of the schema in the
                same database (same tables, same indexes including the GIN index, same foreign key)
  ratio         end to end / COPY (goal >= 0.6)

plus the peak RSS (VmHWM) of the API and of each worker, and who used the CPU during each phase
(the machine is shared: the client, the API, the broker, the workers and PostgreSQL all run on it).
Nothing here asserts a time.

    cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build-bench -j2
    bench/ingest.py --build-dir build-bench --objects 1000000 --batch-size 1000 --clients 4 --workers 2
    BP_BUILD_DIR=build-bench bench/ingest.py --without-counters    # what the counters of migration 007 cost
    BP_BUILD_DIR=build-bench bench/ingest.py --dataset seven       # or low: bench/query.py's datasets
"""
import http.client
import io
import json
import multiprocessing as mp
import os
import random
import re
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import CpuPhase, note  # noqa: E402

KEYS = ["type", "color", "size", "brand", "price", "in_stock", "country", "weight", "rating", "demo"]
WORDS = ["shoe", "shirt", "watch", "keyfob", "red", "blue", "gold", "black", "small", "large", "acme", "zenith"]

BODIES = []  # the request bodies (bytes); set before the client processes fork, shared copy-on-write


def object_data(rnd, dataset, pairs, i):
    """One object's data: 'pairs' random keys of KEYS with mixed values; 'seven' as bench/query.py's
    seven-pair dataset (a unique sku, a 2-decimal price); 'low' as its low-cardinality one."""
    if dataset == "low":
        return [{"key": "type", "value": rnd.choice(["shoe", "shirt", "watch", "hat", "bag"])},
                {"key": "color", "value": rnd.choice(["red", "blue", "green", "black", "white", "gold"])},
                {"key": "size", "value": rnd.choice([38, 40, 42, 44, 46, 48])}]
    if dataset == "seven":
        return [{"key": "type", "value": rnd.choice(["shoe", "shirt", "watch", "hat", "bag", "sock"])},
                {"key": "color", "value": rnd.choice(["red", "blue", "green", "black", "white", "gold", "grey", "pink"])},
                {"key": "size", "value": 35 + rnd.randrange(12)},
                {"key": "brand", "value": f"brand-{rnd.randrange(50)}"},
                {"key": "price", "value": round(rnd.random() * 200, 2)},
                {"key": "in_stock", "value": rnd.random() < 0.7},
                {"key": "sku", "value": f"SKU-{i:09d}"}]
    data = []
    for k in rnd.sample(KEYS, pairs):
        r = rnd.random()
        v = rnd.choice(WORDS) if r < 0.6 else rnd.randint(0, 10000) if r < 0.8 else \
            round(rnd.random() * 100, 2) if r < 0.9 else rnd.random() < 0.5 if r < 0.97 else None
        data.append({"key": k, "value": v})
    return data


def make_batches(n_objects, batch_size, pairs, seed, dataset="pairs"):
    """Request bodies and the matching COPY text of batches and objects, from the same data."""
    rnd = random.Random(seed)
    bodies, copy_batches, copy_objects = [], [], []
    for b in range(0, n_objects, batch_size):
        bid = f"bench-{seed}-{b // batch_size:06d}"
        objs = []
        for i in range(b, min(b + batch_size, n_objects)):
            data = object_data(rnd, dataset, pairs, i)
            d = json.dumps(data, separators=(",", ":"))
            oid = f"obj-{seed}-{i:09d}"
            objs.append(f'{{"object_id":"{oid}","data":{d}}}')
            # COPY text format: json.dumps escapes control characters, so only the backslash needs care
            copy_objects.append(f"{oid}\t{bid}\t{d.replace(chr(92), chr(92) * 2)}\t0\t0\t0\n")
        bodies.append(f'{{"batch_id":"{bid}","objects":[{",".join(objs)}]}}'.encode())
        copy_batches.append(bid + "\n")
    return bodies, "".join(copy_batches).encode(), "".join(copy_objects).encode()


def renamed(body, seed, rnd):
    """A body of make_batches(seed=seed) with its batch and object ids made fresh for round rnd (> 0):
    "bench-S-..." becomes "bench-SrR-...", "obj-S-..." becomes "obj-SrR-...", so that posting it again
    inserts new objects in a new batch instead of replaying the first round's."""
    return (body.replace(f'"batch_id":"bench-{seed}-'.encode(), f'"batch_id":"bench-{seed}r{rnd}-'.encode())
            .replace(f'"object_id":"obj-{seed}-'.encode(), f'"object_id":"obj-{seed}r{rnd}-'.encode()))


class Poster:
    """One keep-alive connection posting bodies, retrying 503 (and reconnecting after an error)."""

    def __init__(self, port):
        self.port, self.conn = port, None
        self.acks, self.refused, self.retries = [], [], 0

    def post(self, i, body):
        last = None
        for attempt in range(50):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                self.conn.request("POST", "/api/v1/batches/", body=body,
                                  headers={"Content-Type": "application/json"})
                r = self.conn.getresponse()
                answer = r.read()
            except (OSError, http.client.HTTPException) as exc:
                self.conn.close()
                self.conn = None
                self.retries += 1
                last = repr(exc)
                time.sleep(0.05)
                continue
            if r.status == 202:
                j = json.loads(answer)
                self.acks.append((j["partition"], j["offset"]))
                return
            if r.status != 503:
                self.refused.append((i, r.status, answer[:200].decode("utf-8", "replace")))
                return
            self.retries += 1
            last = "503"
            time.sleep(min(1.0, 0.05 * (attempt + 1)))
        self.refused.append((i, "gave up", last))


class Flow:
    """What a parent shares with clients that post until told to stop (client(..., flow=)): stop (set:
    finish the request in flight and report), go (cleared: wait before the next post; the parent's
    bound on the batches acked but not yet applied) and acked (batches acked so far, all clients)."""

    def __init__(self):
        ctx = mp.get_context("fork")
        self.stop, self.go, self.acked = ctx.Event(), ctx.Event(), ctx.Value("q", 0)
        self.go.set()


def client(idx, port, start, out, flow=None, seed=1):
    """One client process: post its share of BODIES (made with seed) on one keep-alive connection,
    retrying 503. With a Flow: post them round after round, each round under fresh ids (renamed()),
    waiting for flow.go before each post, until flow.stop is set."""
    poster = Poster(port)
    start.wait()
    rnd = 0
    while flow is None or not flow.stop.is_set():
        for i in idx:
            if flow is not None:
                flow.go.wait()
                if flow.stop.is_set():
                    break
            n = len(poster.acks)
            poster.post(i, BODIES[i] if rnd == 0 else renamed(BODIES[i], seed, rnd))
            if flow is not None and len(poster.acks) > n:
                with flow.acked.get_lock():
                    flow.acked.value += 1
        if flow is None:
            break
        rnd += 1
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out.send({"acks": poster.acks, "refused": poster.refused, "retries": poster.retries, "t_end": time.monotonic(),
              "cpu": ru.ru_utime + ru.ru_stime})
    out.close()


def owned_partitions(worker):
    """The partitions a worker holds, from its "assigned"/"revoked"/"lost" log lines."""
    owned = set()
    for line in worker.log_lines():
        m = re.match(r"(assigned|revoked|lost) \d+ partitions of \S+: \[(.*)\]$", line.get("msg", ""))
        if m:
            parts = {int(x.split("@")[0]) for x in m.group(2).split(",") if x}
            owned = owned | parts if m.group(1) == "assigned" else owned - parts
    return owned


_last_shares = []


def settled(workers, partitions):
    """True once every worker holds some partitions, all are held, and that held for a second."""
    shares = [owned_partitions(w) for w in workers]
    ok = all(shares) and set().union(*shares) == set(range(partitions)) and sum(map(len, shares)) == partitions
    now = time.monotonic()
    if not ok or not _last_shares or _last_shares[0] != shares:
        _last_shares[:] = [shares, now]
        return False
    return now - _last_shares[1] >= 1.5


def applied(cur, env):
    cur.execute("SELECT partition, next_offset FROM ingest_offsets WHERE group_id = %s AND topic = %s",
                (env.group, env.topic))
    return dict(cur.fetchall())


def copy_baseline(env, copy_batches, copy_objects):
    """COPY the same rows into a scratch schema with the same tables and indexes; seconds taken."""
    conn = env.db()
    cur = conn.cursor()
    cur.execute("DROP SCHEMA IF EXISTS bench_copy CASCADE; CREATE SCHEMA bench_copy")
    cur.execute("CREATE TABLE bench_copy.batches (LIKE public.batches INCLUDING ALL)")
    cur.execute("CREATE TABLE bench_copy.objects (LIKE public.objects INCLUDING ALL)")
    cur.execute("ALTER TABLE bench_copy.objects ADD FOREIGN KEY (batch_id) REFERENCES bench_copy.batches")
    cur.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = 'bench_copy' ORDER BY 1")
    idx = [r[0] for r in cur.fetchall()]
    cur.execute("CHECKPOINT")
    bbuf, obuf = io.BytesIO(copy_batches), io.BytesIO(copy_objects)
    phase = CpuPhase({"postgres": benchlib.pg_backend_pids(conn, env.dbname) + [conn.get_backend_pid()]})
    t0 = time.monotonic()
    cur.execute("BEGIN")
    cur.copy_expert("COPY bench_copy.batches (batch_id) FROM STDIN", bbuf, size=1 << 20)
    cur.copy_expert("COPY bench_copy.objects (object_id, batch_id, data, src_ts, src_partition, src_offset) "
                    "FROM STDIN", obuf, size=1 << 20)
    cur.execute("COMMIT")
    elapsed = time.monotonic() - t0
    cpu = phase.end(client_label="python")
    cur.execute("SELECT count(*) FROM bench_copy.objects")
    rows = cur.fetchone()[0]
    cur.execute("DROP SCHEMA bench_copy CASCADE")
    conn.close()
    return elapsed, rows, idx, cpu, phase


def parse_args():
    ap = benchlib.arg_parser(__doc__, "partitions", "api-threads", "quiet-wait", "api-env", "worker-env")
    ap.add_argument("--objects", type=int, default=1_000_000)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--pairs", type=int, default=4, help="key/value pairs per object (--dataset pairs)")
    ap.add_argument("--dataset", choices=("pairs", "seven", "low"), default="pairs",
                    help="pairs: --pairs random keys of 10 with mixed values; seven: 7 pairs, one a unique sku; "
                         "low: 3 keys of 5-6 values each (bench/query.py's datasets)")
    ap.add_argument("--clients", type=int, default=4, help="client processes posting")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the bench database and topics")
    ap.add_argument("--without-counters", action="store_true",
                    help="disable the counting (migration 007's triggers, and the workers' own counting of "
                         "migration 008: BP_COUNT_IN_WORKER=0) to measure what it costs; the lists' counts are then "
                         "wrong until `batchpipe counts rebuild`")
    return ap.parse_args()


def generate(args):
    """Phase 1, before any clock: the request bodies (into BODIES, which the client processes inherit)
    and the COPY text of the same rows. Returns (copy_batches, copy_objects, total body bytes)."""
    global BODIES
    note(f"generating {args.objects:,} objects in batches of {args.batch_size:,} (dataset {args.dataset}) ...")
    t = time.monotonic()
    BODIES, copy_batches, copy_objects = make_batches(args.objects, args.batch_size, args.pairs, seed=1,
                                                      dataset=args.dataset)
    total_bytes = sum(len(b) for b in BODIES)
    note(f"{len(BODIES):,} bodies, {total_bytes / 1e6:.1f} MB of JSON, generated in {time.monotonic() - t:.1f} s")
    return copy_batches, copy_objects, total_bytes


def start_workers(env, n, partitions, worker_env):
    """n ingest workers, returned once every one holds its share of the partitions (a cooperative
    rebalance takes two rounds), so that no rebalance falls inside a timing."""
    workers = [env.start_worker(**{"BP_LOG_LEVEL": "info", **worker_env}) for _ in range(n)]
    for w in workers:
        env.wait_assigned(w)
    benchlib.wait_until(lambda: settled(workers, partitions), 90, "the workers to share all partitions",
                        interval=0.2)
    return workers


def start_pipeline(env, args):
    """Phase 2: the API and the workers (start_workers()). Returns (api, workers)."""
    if args.without_counters:
        env.query("ALTER TABLE objects DISABLE TRIGGER objects_count_insert, "
                  "DISABLE TRIGGER objects_count_update, DISABLE TRIGGER objects_count_delete")
        note("counting triggers disabled (--without-counters)")
    api_env = benchlib.settings(args.api_env)
    worker_env = benchlib.settings(args.worker_env)
    if args.without_counters:
        worker_env.setdefault("BP_COUNT_IN_WORKER", "0")
    if api_env or worker_env:
        note(f"settings: API {api_env}, workers {worker_env}")
    api = env.start_api(**{"BP_LOG_LEVEL": "warn", "BP_HTTP_THREADS": args.api_threads, **api_env})
    return api, start_workers(env, args.workers, args.partitions, worker_env)


def start_clients(n_clients, port, flow=None, seed=1):
    """n_clients client processes (client(); flow: a Flow for clients that post until stopped), forked
    now and waiting for the returned event; BODIES shared among them. Returns (start, procs, pipes)."""
    ctx = mp.get_context("fork")
    start = ctx.Event()
    procs, pipes = [], []
    for c in range(n_clients):
        rd, wr = ctx.Pipe(duplex=False)
        p = ctx.Process(target=client, args=(range(c, len(BODIES), n_clients), port, start, wr, flow, seed))
        p.start()
        procs.append(p)
        pipes.append(rd)
    return start, procs, pipes


def last_acked(results):
    """The clients' results: the highest acked offset per partition."""
    last = {}
    for r in results:
        for part, off in r["acks"]:
            last[part] = max(last.get(part, -1), off)
    return last


def wait_applied(cur, env, last, timeout, interval=0.02):
    """Wait (at most timeout s) until the workers' ingest_offsets are past every offset of last
    (last_acked()): every acked batch is in the database."""
    def all_applied():
        now = applied(cur, env)
        return all(now.get(p, 0) > off for p, off in last.items())
    benchlib.wait_until(all_applied, timeout, "the workers to apply every acked batch", interval=interval)


def post_all(env, args, api, workers, conn):
    """Phase 3, timed: the clients post every body; the clock stops when the workers applied every
    acked batch. Returns what the report needs (a dict)."""
    cur = conn.cursor()
    cur.execute("CHECKPOINT")
    start, procs, pipes = start_clients(args.clients, int(api.url.rsplit(":", 1)[1]))
    benchlib.wait_quiet(args.quiet_wait)
    pg_pids = lambda: benchlib.pg_backend_pids(conn, env.dbname)  # noqa: E731
    groups = {"api": [api.proc.p.pid], "workers": [w.p.pid for w in workers], "postgres": pg_pids}
    if benchlib.kafka_pid():
        groups["broker"] = [benchlib.kafka_pid()]
    phase = CpuPhase(groups)
    note(f"posting with {args.clients} client processes, {args.workers} workers, {args.partitions} partitions")
    t0 = time.monotonic()
    start.set()
    results = [rd.recv() for rd in pipes]
    for p in procs:
        p.join()
    t_acked = max(r["t_end"] for r in results)
    at_ack = applied(cur, env)
    refused = [x for r in results for x in r["refused"]]
    if refused:
        print(f"{len(refused)} batches refused, first: {refused[0]}")
        sys.exit(1)
    wait_applied(cur, env, last_acked(results), 600)
    t_done = time.monotonic()
    phase.end(client_label="clients")
    return {"phase": phase, "accept_s": t_acked - t0, "e2e_s": t_done - t0,
            "drain_s": t_done - t_acked, "nacked": sum(len(r["acks"]) for r in results),
            "msgs_at_ack": sum(at_ack.values()),  # a fresh topic: next_offset is the count applied
            "retries": sum(r["retries"] for r in results)}


def report_pipeline(args, run, stored, total_bytes, hwm_api, hwm_workers):
    """Print the accept and end-to-end figures, CPU and peak RSS. Returns the CPU seconds of the run."""
    accept_s, e2e_s, nacked = run["accept_s"], run["e2e_s"], run["nacked"]
    print()
    print(f"accept:     {nacked:,} batches ({args.objects:,} objects) acked in {accept_s:.2f} s = "
          f"{args.objects / accept_s:,.0f} objects/s, {nacked / accept_s:,.1f} req/s, "
          f"{total_bytes / accept_s / 1e6:.1f} MB/s ({run['retries']} retries after 503)")
    print(f"end to end: {stored:,} objects stored in {e2e_s:.2f} s = {stored / e2e_s:,.0f} objects/s "
          f"(at the last ack {run['msgs_at_ack']:,} of {nacked:,} batches were applied; the drain took "
          f"{run['drain_s']:.2f} s more)")
    phase = run["phase"]
    phase.print_report()
    per_m = 1e6 / stored
    ours = sum(phase.seconds.values())
    parts = ", ".join(f"{k} {v * per_m:.1f}" for k, v in phase.seconds.items())
    print(f"  CPU seconds per million objects: {parts}; in all {ours * per_m:.1f}")
    print(f"peak RSS:   API {hwm_api / 1024:.1f} MiB; workers "
          + ", ".join(f"{h / 1024:.1f} MiB" for h in hwm_workers if h is not None))
    return ours


def copy_and_compare(env, args, copy_batches, copy_objects, run, stored, ours):
    """Phase 4, timed: the COPY baseline, then the ratios."""
    benchlib.wait_quiet(args.quiet_wait)
    note("COPY baseline ...")
    copy_s, copied, idx, copy_cpu, copy_phase = copy_baseline(env, copy_batches, copy_objects)
    print(f"COPY:       {copied:,} objects in {copy_s:.2f} s = {copied / copy_s:,.0f} objects/s "
          f"(one transaction; indexes: {len(idx)} incl. GIN jsonb_path_ops)")
    print(f"  {copy_cpu}")
    copy_cpu_s = sum(copy_phase.seconds.values())
    print(f"  CPU seconds per million objects: {copy_cpu_s * 1e6 / copied:.1f} (the pipeline spends "
          f"{(ours / stored) / (copy_cpu_s / copied):.1f} times as much CPU per object, spread over processes "
          f"that can run in parallel)")
    w = copy_phase.warn_if_busy()
    if w:
        print(w)
    print()
    print(f"RATIO end to end / COPY = {(stored / run['e2e_s']) / (copied / copy_s):.2f}   (goal >= 0.6)")
    print(f"RATIO accept / COPY     = {(args.objects / run['accept_s']) / (copied / copy_s):.2f}")


def main():
    args = parse_args()
    benchlib.setup(args)
    print(f"machine: {benchlib.machine()}; build {os.environ['BP_BUILD_DIR']}")
    copy_batches, copy_objects, total_bytes = generate(args)
    env = benchlib.Env(partitions=args.partitions)
    env.create()
    try:
        api, workers = start_pipeline(env, args)
        conn = env.db()
        run = post_all(env, args, api, workers, conn)
        hwm_api = benchlib.vm_hwm_kib(api.proc.p.pid)
        hwm_workers = [benchlib.vm_hwm_kib(w.p.pid) for w in workers]
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM objects")
        stored = cur.fetchone()[0]
        for w in workers:
            w.stop()
        api.proc.stop()
        conn.close()
        ours = report_pipeline(args, run, stored, total_bytes, hwm_api, hwm_workers)
        copy_and_compare(env, args, copy_batches, copy_objects, run, stored, ours)
    finally:
        if not args.keep:
            env.drop()
            benchlib.delete_topics(env)


if __name__ == "__main__":
    main()
