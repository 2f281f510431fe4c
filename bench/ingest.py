#!/usr/bin/python3
"""bench/ingest.py - end-to-end ingest throughput against PostgreSQL's own COPY, in one run.

Starts a fresh database and topic, the API and W ingest workers; posts N objects in batches (several
client threads); measures objects/s from the first request to the last row committed (ingest_offsets
reaching every acked message). Then loads the same rows with COPY into a scratch copy of the schema
(same table, same indexes) and prints the ratio. Nothing here asserts a time.

    ops/services up && bench/ingest.py --objects 1000000 --batch-size 1000 --clients 4 --workers 2
"""
import argparse
import io
import json
import os
import random
import sys
import threading
import time
import uuid

import psycopg2
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("BP_BUILD_DIR", os.path.join(HERE, "..", "build"))
os.environ.setdefault("BP_SOURCE_DIR", os.path.join(HERE, ".."))
from conftest import Env  # noqa: E402  (the test harness starts the real binaries)

KEYS = ["type", "color", "size", "brand", "price", "in_stock", "country", "weight", "rating", "demo"]
WORDS = ["shoe", "shirt", "watch", "keyfob", "red", "blue", "gold", "black", "small", "large", "acme", "zenith"]


def make_batches(n_objects, batch_size, pairs, seed):
    rnd = random.Random(seed)
    batches = []
    for b in range(0, n_objects, batch_size):
        bid = f"bench-{seed}-{b // batch_size:06d}"
        objs = []
        for i in range(b, min(b + batch_size, n_objects)):
            data = []
            for k in rnd.sample(KEYS, pairs):
                r = rnd.random()
                v = rnd.choice(WORDS) if r < 0.6 else rnd.randint(0, 10000) if r < 0.8 else \
                    round(rnd.random() * 100, 2) if r < 0.9 else rnd.random() < 0.5 if r < 0.97 else None
                data.append({"key": k, "value": v})
            objs.append({"object_id": f"obj-{seed}-{i:09d}", "data": data})
        batches.append((bid, json.dumps({"batch_id": bid, "objects": objs}, separators=(",", ":"))))
    return batches


def post_all(url, batches, clients):
    queue = list(enumerate(batches))
    lock = threading.Lock()
    failures = []

    def run():
        s = requests.Session()
        while True:
            with lock:
                if not queue:
                    return
                _, (bid, body) = queue.pop()
            for attempt in range(10):
                r = s.post(url + "/api/v1/batches/", data=body, headers={"Content-Type": "application/json"},
                           timeout=120)
                if r.status_code == 202:
                    break
                if r.status_code != 503:
                    failures.append((bid, r.status_code, r.text[:200]))
                    break
                time.sleep(0.2 * (attempt + 1))
    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    return threads, failures


def copy_baseline(env, batches):
    """COPY the same rows into a scratch schema with the same table and indexes."""
    conn = env.db()
    cur = conn.cursor()
    cur.execute("DROP SCHEMA IF EXISTS bench_copy CASCADE; CREATE SCHEMA bench_copy")
    cur.execute("CREATE TABLE bench_copy.batches (LIKE public.batches INCLUDING ALL)")
    cur.execute("CREATE TABLE bench_copy.objects (LIKE public.objects INCLUDING ALL)")
    cur.execute("ALTER TABLE bench_copy.objects ADD FOREIGN KEY (batch_id) REFERENCES bench_copy.batches")
    bbuf, obuf = io.StringIO(), io.StringIO()
    for bid, body in batches:
        bbuf.write(bid + "\n")
        for o in json.loads(body)["objects"]:
            d = json.dumps(o["data"], separators=(",", ":")).replace("\\", "\\\\")
            obuf.write(f"{o['object_id']}\t{bid}\t{d}\t0\t0\t0\n")
    bbuf.seek(0)
    obuf.seek(0)
    t0 = time.monotonic()
    cur.execute("BEGIN")
    cur.copy_expert("COPY bench_copy.batches (batch_id) FROM STDIN", bbuf)
    cur.copy_expert("COPY bench_copy.objects (object_id, batch_id, data, src_ts, src_partition, src_offset) "
                    "FROM STDIN", obuf)
    cur.execute("COMMIT")
    elapsed = time.monotonic() - t0
    cur.execute("DROP SCHEMA bench_copy CASCADE")
    conn.close()
    return elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=1_000_000)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--keep", action="store_true", help="keep the bench database")
    args = ap.parse_args()

    print(f"generating {args.objects} objects in batches of {args.batch_size} ...", flush=True)
    batches = make_batches(args.objects, args.batch_size, args.pairs, seed=1)
    total_bytes = sum(len(b) for _, b in batches)
    print(f"{len(batches)} batches, {total_bytes / 1e6:.1f} MB of JSON", flush=True)

    env = Env(partitions=args.partitions)
    env.create()
    try:
        api = env.start_api(BP_LOG_LEVEL="warn")
        workers = [env.start_worker(BP_LOG_LEVEL="info") for _ in range(args.workers)]
        for w in workers:
            env.wait_assigned(w)
        t0 = time.monotonic()
        threads, failures = post_all(api.url, batches, args.clients)
        for t in threads:
            t.join()
        t_acked = time.monotonic()
        if failures:
            print(f"{len(failures)} batches refused, first: {failures[0]}")
            sys.exit(1)
        conn = env.db()
        cur = conn.cursor()
        while True:
            cur.execute("SELECT coalesce(sum(next_offset), 0) FROM ingest_offsets WHERE topic = %s", (env.topic,))
            if cur.fetchone()[0] >= len(batches):
                break
            time.sleep(0.05)
        t_done = time.monotonic()
        cur.execute("SELECT count(*) FROM objects")
        stored = cur.fetchone()[0]
        conn.close()
        pipeline_s = t_done - t0
        print(f"pipeline: {stored} objects stored in {pipeline_s:.2f} s = {stored / pipeline_s:,.0f} objects/s "
              f"(all acked after {t_acked - t0:.2f} s)")
        for w in workers:
            w.stop()
        api.proc.stop()
        copy_s = copy_baseline(env, batches)
        print(f"COPY:     {args.objects} objects in {copy_s:.2f} s = {args.objects / copy_s:,.0f} objects/s")
        print(f"ratio (pipeline / COPY objects per second): {copy_s / pipeline_s:.2f}")
    finally:
        if not args.keep:
            env.drop()


if __name__ == "__main__":
    main()
