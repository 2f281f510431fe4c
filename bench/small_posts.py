#!/usr/bin/python3
"""bench/small_posts.py - small POSTs accepted per second against GET /healthz, in one run.

Makes a fresh database and topic, starts the API, and for each connection count runs wrk with the
same settings against GET /healthz (no database, no broker: the HTTP floor of this server) and
against POST /api/v1/objects/ with one small object per request (a wrk Lua script; each answer is a
202 sent once the broker acked the message). Prints both rates and their ratio, the latencies, and
the API's peak RSS. No ingest worker runs unless --workers is given (the POST's answer does not wait
for one). Nothing here asserts a time.

    BP_BUILD_DIR=build-bench bench/small_posts.py                      # 16 and 256 connections
    BP_BUILD_DIR=build-bench bench/small_posts.py --connections 64 --seconds 10
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import CpuPhase, fmt_ms, note  # noqa: E402

POST_LUA = """
local n = 0
local headers = {["Content-Type"] = "application/json"}
request = function()
    n = n + 1
    local id = string.format("sp-%s-%d-%d", "{tag}", tid, n)
    local body = string.format('{"batch_id":"%s","object_id":"%s","data":[' ..
        '{"key":"type","value":"shoe"},{"key":"color","value":"red"},{"key":"size","value":42}]}', id, id)
    return timed(id, wrk.format("POST", "/api/v1/objects/", headers, body))
end
key = function(body)
    return string.match(body, '"batch_id":"([^"]+)"')
end
"""


def main():
    ap = benchlib.arg_parser(__doc__, "api-threads", "partitions", "quiet-wait")
    ap.add_argument("--connections", default="16,256", help="comma list of wrk connection counts")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--workers", type=int, default=0, help="ingest workers to run meanwhile (default none)")
    args = ap.parse_args()
    benchlib.setup(args)
    benchlib.need_wrk()
    print(f"machine: {benchlib.machine()}; build {os.environ['BP_BUILD_DIR']}")

    env = benchlib.Env(partitions=args.partitions)
    env.create()
    try:
        api = env.start_api(BP_LOG_LEVEL="warn", BP_HTTP_THREADS=args.api_threads,
                            BP_PUBLIC_RATE_LIMIT=0)  # the floor is measured on /healthz
        workers = [env.start_worker(BP_LOG_LEVEL="warn") for _ in range(args.workers)]
        groups = {"api": [api.proc.p.pid]}
        if workers:
            groups["workers"] = [w.p.pid for w in workers]
        if benchlib.kafka_pid():
            groups["broker"] = [benchlib.kafka_pid()]
        post_lua = POST_LUA.replace("{tag}", env.topic[-10:])
        # warm up: the producers' first acks (idempotence PIDs, metadata) are not the steady state
        benchlib.run_wrk(api.url + "/", 4, 1, 2, lua=post_lua)
        t, s = args.threads, args.seconds
        summary = []
        for c in [int(x) for x in args.connections.split(",")]:
            res = {}
            for label, url, lua in (("GET /healthz", api.url + "/healthz", ""),
                                    ("POST /api/v1/objects/", api.url + "/", post_lua)):
                benchlib.wait_quiet(args.quiet_wait)
                ph = CpuPhase(groups)
                w = benchlib.run_wrk(url, c, t, s, lua=lua)
                ph.end(client_label="wrk")
                bad = f", {w['non2xx']} non-2xx" if w["non2xx"] else ""
                bad += f", {w['errors']} socket errors" if w["errors"] else ""
                how = (f"per-request timing of {w['timed_n'] or 0:,} requests; wrk's own p99: {fmt_ms(w['wrk_p99'])}"
                       if w["timed_n"] else "wrk's own figures")
                note(f"{label}: wrk -t{t} -c{c} -d{s}s: {w['rps'] or 0:,.0f} req/s, p50 {fmt_ms(w['p50'])}, "
                     f"p99 {fmt_ms(w['p99'])}, p99.9 {fmt_ms(w['p999'])}, max {fmt_ms(w['max'])}{bad} ({how})")
                ph.print_report()
                if w["rps"] is None:
                    print(w["raw"])
                res[label] = w
            g, p = res["GET /healthz"], res["POST /api/v1/objects/"]
            ok_rps = p["rps"] * (1 - p["non2xx"] / p["requests"]) if p["rps"] and p["requests"] else None
            ratio = ok_rps / g["rps"] if ok_rps and g["rps"] else None
            summary.append(f"-c{c:<4} POST {ok_rps or 0:9,.0f} accepted/s (p99 {fmt_ms(p['p99'])})  | GET /healthz "
                           f"{g['rps'] or 0:9,.0f} req/s (p99 {fmt_ms(g['p99'])})  | RATIO {ratio or 0:.2f}")
        hwm = benchlib.vm_hwm_kib(api.proc.p.pid)
        api.proc.stop()
        for w in workers:
            w.stop()
        warns = [line for line in api.proc.log_lines() if line.get("level") in ("warn", "error")]
        print()
        for line in summary:
            print(line)
        print(f"API peak RSS (VmHWM): {hwm / 1024:.1f} MiB")
        if warns:
            print(f"the API logged {len(warns)} warnings/errors, first: {warns[0].get('msg')}")
    finally:
        env.drop()
        benchlib.delete_topics(env)


if __name__ == "__main__":
    main()
