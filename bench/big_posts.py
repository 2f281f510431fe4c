#!/usr/bin/python3
"""bench/big_posts.py - the API's memory while it takes large batches at once (issue 13, item 4).

Makes a fresh database and topic, starts the API, measures its idle VmRSS, then sends N batches of
OBJECTS objects each (about 15.6 MiB for 45,000) at once, one connection each, samples the API's
VmRSS every 20 ms meanwhile, and once every answer came waits (up to 10 s) for VmRSS to settle.
Prints the bodies' total, the peak (the larger of the samples and VmHWM) against 1.5 x the total
plus idle, and the settled RSS against idle. Memory figures do not depend on the machine's load;
the times printed do. Nothing here asserts anything.

    BP_BUILD_DIR=build bench/big_posts.py --api-env BP_BODY_TIMEOUT_MS=30000   # 8 x 45,000 objects
    BP_BUILD_DIR=build bench/big_posts.py --batches 1

(On a loaded machine eight 16 MiB uploads at once may take longer than the default 10 s
BP_BODY_TIMEOUT_MS, after which the API closes them: hence the longer timeout above.)
"""
import json
import os
import sys
import threading
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import vm_hwm_kib, vm_rss_kib  # noqa: E402


def batch_body(batch_id, objects):
    objs = [{"object_id": f"{batch_id}-{i:06d}",
             "data": [{"key": "type", "value": "shoe"}, {"key": "color", "value": "red"},
                      {"key": "size", "value": 42 + i % 7}, {"key": "sku", "value": f"SKU-{i:09d}"},
                      {"key": "note", "value": "a plain note of some length to be realistic " * 4}]}
            for i in range(objects)]
    return json.dumps({"batch_id": batch_id, "objects": objs}, separators=(",", ":")).encode()


def main():
    ap = benchlib.arg_parser(__doc__, "api-threads", "api-env")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--objects", type=int, default=45000)
    args = ap.parse_args()
    benchlib.setup(args)
    print(f"machine: {benchlib.machine()}; build {os.environ['BP_BUILD_DIR']}")
    bodies = [batch_body(f"big-{os.getpid()}-{n}", args.objects) for n in range(args.batches)]
    total = sum(len(b) for b in bodies)
    env = benchlib.Env(partitions=12)
    env.create()
    try:
        api_env = benchlib.settings(args.api_env)
        if api_env:
            print(f"settings: API {api_env}")
        api = env.start_api(**{"BP_LOG_LEVEL": "warn", "BP_HTTP_THREADS": args.api_threads, **api_env})
        pid = api.proc.p.pid
        time.sleep(1)  # the API answers; let its threads settle before the idle figure
        idle = vm_rss_kib(pid)
        samples = [idle]
        statuses = []
        done = threading.Event()

        def sample():
            while not done.is_set():
                samples.append(vm_rss_kib(pid) or 0)
                time.sleep(0.02)

        def post(body):
            try:
                r = requests.post(api.url + "/api/v1/batches/", data=body,
                                  headers={"Content-Type": "application/json"}, timeout=120)
                statuses.append(str(r.status_code))
            except requests.RequestException as e:
                statuses.append(type(e).__name__)

        sampler = threading.Thread(target=sample)
        sampler.start()
        t0 = time.monotonic()
        posters = [threading.Thread(target=post, args=(b,)) for b in bodies]
        for p in posters:
            p.start()
        for p in posters:
            p.join()
        elapsed = time.monotonic() - t0
        done.set()
        sampler.join()
        peak = max(max(samples), vm_hwm_kib(pid) or 0)
        settled = vm_rss_kib(pid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and settled > idle * 1.1:
            time.sleep(0.2)
            settled = vm_rss_kib(pid)
        mib = lambda kib: kib / 1024  # noqa: E731
        print(f"{args.batches} batches x {args.objects} objects: bodies {total / 2**20:.1f} MiB in all; "
              f"answers {sorted(statuses)} in {elapsed:.1f} s (loaded machine)")
        print(f"API idle VmRSS {mib(idle):.1f} MiB; peak {mib(peak):.1f} MiB = idle + "
              f"{(mib(peak) - mib(idle)) / (total / 2**20):.2f} x the bodies (goal: < 1.5 x + idle = "
              f"{1.5 * total / 2**20 + mib(idle):.1f} MiB)")
        if os.environ.get("BP_BENCH_SMAPS"):
            os.system(f"grep -E '^(Rss|Anonymous|Private_Dirty):' /proc/{pid}/smaps_rollup; "
                      f"awk '/^[0-9a-f]+-/{{m=$0}} /^Rss:/{{if ($2>2048) print $2, m}}' /proc/{pid}/smaps")
        print(f"after: VmRSS {mib(settled):.1f} MiB = {100 * settled / idle:.0f}% of idle (goal: <= 110%)")
        api.proc.stop()
    finally:
        env.drop()


if __name__ == "__main__":
    main()
