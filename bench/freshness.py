#!/usr/bin/python3
"""bench/freshness.py - how soon a POSTed batch is queryable at low load, in one run.

Makes a fresh database and topic, starts the API and one ingest worker, then posts one-object batches
one after the other (one client, nothing else arriving: the low-load case) in two ways:

  wait   POST /api/v1/batches/?wait=10 and time it until its 201 (the API answers 201 only once the
         worker committed the batch and the API read it back: the wake path, LISTEN/NOTIFY)
  poll   POST without ?wait= (202 once the broker acked), then GET /api/v1/batches/{id}/ in a tight
         loop until it answers 200: the same freshness seen from outside, without the wake path

Each figure is from the start of the POST to the moment the batch was seen (p50, p90, p99, max), and
for poll also the 202 alone (the broker's ack). Goal at low load: p50 <= 10 ms, p99 <= 25 ms.
Nothing here asserts a time. Give worker settings to compare, e.g. the old behaviour of a
transaction that waits for company: --worker-env BP_TXN_LINGER_MS=50.

    cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build-bench -j2
    BP_BUILD_DIR=build-bench bench/freshness.py --posts 500
"""
import json
import os
import sys
import time
import uuid

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import CpuPhase, fmt_ms, note  # noqa: E402


def body(tag, i):
    bid = f"fresh-{tag}-{i:06d}"
    doc = {"batch_id": bid, "objects": [{"object_id": f"{bid}-o", "data": [
        {"key": "type", "value": "shoe"}, {"key": "size", "value": i % 50}]}]}
    return bid, json.dumps(doc, separators=(",", ":")).encode()


def percentile(sorted_ms, q):
    if not sorted_ms:
        return None
    return sorted_ms[min(len(sorted_ms) - 1, int(round(q * (len(sorted_ms) - 1))))]


def summary(label, ms):
    s = sorted(ms)
    return (f"{label:<28} n={len(s):<5} p50 {fmt_ms(percentile(s, 0.5))}, p90 {fmt_ms(percentile(s, 0.9))}, "
            f"p99 {fmt_ms(percentile(s, 0.99))}, max {fmt_ms(s[-1] if s else None)}")


HEADERS = {"Content-Type": "application/json"}


def run_wait(session, url, tag, n):
    """Sequential ?wait= POSTs: ms from the start of each POST to its 201."""
    out, other = [], 0
    for i in range(n):
        _, data = body(tag, i)
        t0 = time.perf_counter()
        r = session.post(url + "/api/v1/batches/?wait=10", data=data, headers=HEADERS, timeout=30)
        t1 = time.perf_counter()
        if r.status_code == 201:
            out.append((t1 - t0) * 1000)
        else:
            other += 1
    return out, other


def run_poll(session, url, tag, n):
    """Sequential POSTs without ?wait=, each followed by GETs until it is there: (ms to the 202, ms to
    the first 200 of the GET, GETs needed)."""
    acked, seen, gets = [], [], 0
    for i in range(n):
        bid, data = body(tag, i)
        t0 = time.perf_counter()
        r = session.post(url + "/api/v1/batches/", data=data, headers=HEADERS, timeout=30)
        t1 = time.perf_counter()
        if r.status_code != 202:
            continue
        acked.append((t1 - t0) * 1000)
        deadline = t0 + 10
        while time.perf_counter() < deadline:
            gets += 1
            if session.get(f"{url}/api/v1/batches/{bid}/", timeout=30).status_code == 200:
                seen.append((time.perf_counter() - t0) * 1000)
                break
    return acked, seen, gets


def main():
    ap = benchlib.arg_parser(__doc__, "partitions", "api-threads", "quiet-wait", "api-env", "worker-env")
    ap.add_argument("--posts", type=int, default=300, help="posts in each mode")
    ap.add_argument("--warmup", type=int, default=20, help="posts before the timing (not counted)")
    args = ap.parse_args()
    benchlib.setup(args)
    print(f"machine: {benchlib.machine()}; build {os.environ['BP_BUILD_DIR']}")

    env = benchlib.Env(partitions=args.partitions)
    env.create()
    try:
        api_env = benchlib.settings(args.api_env)
        worker_env = benchlib.settings(args.worker_env)
        if api_env or worker_env:
            note(f"settings: API {api_env}, worker {worker_env}")
        api = env.start_api(**{"BP_LOG_LEVEL": "warn", "BP_HTTP_THREADS": args.api_threads, **api_env})
        worker = env.start_worker(**{"BP_LOG_LEVEL": "info", "BP_LOG_APPLIED": 0, **worker_env})
        env.wait_assigned(worker)
        conn = env.db()
        groups = {"api": [api.proc.p.pid], "worker": [worker.p.pid],
                  "postgres": lambda: benchlib.pg_backend_pids(conn, env.dbname)}
        if benchlib.kafka_pid():
            groups["broker"] = [benchlib.kafka_pid()]
        tag = uuid.uuid4().hex[:8]
        results = []
        with requests.Session() as s:
            # warm up: the producer's first acks, the pools' connections, the LISTEN connection of each thread
            run_wait(s, api.url, tag + "-warm", args.warmup)
            run_poll(s, api.url, tag + "-warmp", args.warmup)

            benchlib.wait_quiet(args.quiet_wait)
            ph = CpuPhase(groups)
            note(f"wait: {args.posts} sequential POSTs of one-object batches with ?wait=10 ...")
            ms, other = run_wait(s, api.url, tag + "-w", args.posts)
            ph.end(client_label="client")
            results.append(summary("POST ?wait= -> 201", ms) + (f" ({other} not 201)" if other else ""))
            note(results[-1])
            ph.print_report()

            benchlib.wait_quiet(args.quiet_wait)
            ph = CpuPhase(groups)
            note(f"poll: {args.posts} sequential POSTs without ?wait=, each followed by GETs until it is there ...")
            acked, seen, gets = run_poll(s, api.url, tag + "-p", args.posts)
            ph.end(client_label="client")
            results.append(summary("POST -> 202 (broker ack)", acked))
            results.append(summary("POST -> GET 200 (polled)", seen)
                           + f" ({gets / max(1, len(seen)):.1f} GETs each)")
            for line in results[-2:]:
                note(line)
            ph.print_report()
        conn.close()
        worker.stop()
        api.proc.stop()
        warns = [line for p in (api.proc, worker) for line in p.log_lines() if line.get("level") in ("warn", "error")]
        print()
        print(f"load average at the end: {benchlib.loadavg()}")
        for line in results:
            print(line)
        print("goal at low load: POST -> queryable p50 <= 10 ms, p99 <= 25 ms")
        if warns:
            print(f"{len(warns)} warnings/errors were logged, first: {warns[0].get('msg')}")
    finally:
        env.drop()
        benchlib.delete_topics(env)


if __name__ == "__main__":
    main()
