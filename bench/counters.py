#!/usr/bin/python3
"""What the counting triggers of migration 007 cost PostgreSQL, measured in PostgreSQL alone.

A scratch database with the migrations; the objects of a dataset are generated once into a staging
table, then inserted into `objects` in statements of --batch-size rows (as the workers' upsert writes
them), in rounds that alternate triggers on / triggers off (same data, same session, tables emptied
between rounds), so that a loaded machine weighs on both alike. Reported per round: the backend's
CPU time (user + system, from /proc/<pid>/stat) and the wall time, per million objects; then the
median of each and their ratio. Also the size of the counters (table and index) after a round.

    bench/counters.py --dataset seven --objects 20000 --rounds 5
    bench/counters.py --dataset low   --objects 20000 --rounds 5
"""
import argparse
import os
import statistics
import sys
import time

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from query import LOW_OBJECTS_SQL, OBJECTS_SQL  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")
TRIGGERS = ("objects_count_insert", "objects_count_update", "objects_count_delete")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=("seven", "low"), default="seven")
    ap.add_argument("--objects", type=int, default=20000)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5, help="rounds of each kind (alternating)")
    ap.add_argument("--dsn", default="host=127.0.0.1 user=postgres")
    ap.add_argument("--migrations", default=os.path.join(ROOT, "schemas", "migrations"),
                    help="directory of the migrations to apply (e.g. an older 007 to compare)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    db = f"bench_counters_{os.getpid()}"
    admin = psycopg2.connect(args.dsn + " dbname=postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {db}")
    try:
        conn = psycopg2.connect(args.dsn + f" dbname={db}")
        conn.autocommit = True
        cur = conn.cursor()
        mig = args.migrations
        for name in sorted(os.listdir(mig)):
            if name.endswith(".sql"):
                with open(os.path.join(mig, name)) as f:
                    cur.execute(f.read())
        sql = (LOW_OBJECTS_SQL if args.dataset == "low" else OBJECTS_SQL).format(seed=0.5, lo=1, hi=args.objects)
        cur.execute("CREATE TABLE stage (LIKE objects INCLUDING DEFAULTS)")
        cur.execute("ALTER TABLE stage DROP COLUMN id")
        cur.execute(sql.replace("INSERT INTO objects", "INSERT INTO stage"))
        cur.execute("ALTER TABLE stage ADD COLUMN g bigint")
        cur.execute("UPDATE stage SET g = src_offset")
        cur.execute("CREATE INDEX ON stage (g)")
        cur.execute("ANALYZE stage")
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
        results = {True: [], False: []}
        for r in range(2 * args.rounds):
            on = r % 2 == 0
            cur.execute("TRUNCATE objects, batches, count_terms")
            cur.execute("DELETE FROM count_keys") if has_table(cur, "count_keys") else None
            for t in TRIGGERS:
                cur.execute(f"ALTER TABLE objects {'ENABLE' if on else 'DISABLE'} TRIGGER {t}")
            cur.execute("INSERT INTO batches (batch_id) SELECT DISTINCT batch_id FROM stage")
            cur.execute("CHECKPOINT")
            c0, t0 = cpu_seconds(pid), time.monotonic()
            for lo in range(1, args.objects + 1, args.batch_size):
                cur.execute("BEGIN")
                cur.execute("INSERT INTO objects (object_id, batch_id, data, src_ts, src_partition, src_offset) "
                            "SELECT object_id, batch_id, data, src_ts, src_partition, src_offset FROM stage "
                            "WHERE g BETWEEN %s AND %s ORDER BY g", (lo, lo + args.batch_size - 1))
                cur.execute("COMMIT")
            cpu, wall = cpu_seconds(pid) - c0, time.monotonic() - t0
            per_m = 1e6 / args.objects
            results[on].append((cpu * per_m, wall * per_m))
            extra = ""
            if on:
                cur.execute("SELECT count(*), pg_size_pretty(pg_relation_size('count_terms')), "
                            "pg_size_pretty(pg_indexes_size('count_terms')), "
                            "pg_size_pretty(pg_total_relation_size('objects')) FROM count_terms")
                rows, tsize, isize, osize = cur.fetchone()
                extra = f"; counters: {rows:,} rows, table {tsize}, index {isize} (objects with indexes {osize})"
            print(f"round {r // 2 + 1} triggers {'on ' if on else 'off'}: PostgreSQL CPU {cpu * per_m:6.1f} s, "
                  f"wall {wall * per_m:6.1f} s per million objects{extra}", flush=True)
        on_cpu = statistics.median(c for c, _ in results[True])
        off_cpu = statistics.median(c for c, _ in results[False])
        on_wall = statistics.median(w for _, w in results[True])
        off_wall = statistics.median(w for _, w in results[False])
        print(f"median per million objects ({args.dataset}, {args.objects:,} objects, statements of "
              f"{args.batch_size}): CPU on {on_cpu:.1f} s / off {off_cpu:.1f} s = {on_cpu / off_cpu:.2f}; "
              f"wall on {on_wall:.1f} s / off {off_wall:.1f} s = {on_wall / off_wall:.2f}")
        conn.close()
    finally:
        if not args.keep:
            admin.cursor().execute(f"DROP DATABASE {db} WITH (FORCE)")


def has_table(cur, name):
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
    return cur.fetchone()[0]


if __name__ == "__main__":
    main()
