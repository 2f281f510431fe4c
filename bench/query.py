#!/usr/bin/python3
"""bench/query.py - the read path against pgbench running the same SQL, in one run.

Loads N objects straight into a fresh database made by `batchpipe migrate` (generate_series, realistic
data arrays: type, color, size, brand, price, in_stock, sku; VACUUM ANALYZE; a statement of the load
cancelled on a deadlock is run again), compacts the counters (VACUUM FULL count_terms: the load's
trigger wrote and then deleted the sku's counter rows, which a live system's autovacuum has long
removed; sizes printed before and after), starts the API, then
for each route runs wrk against the API and pgbench with the statements the API sends for that
request, at the same concurrency and for the same time:

  list   the default requests (default count, default page size) of three lists: GET
         /api/v1/objects/?data={"type":"shoe"} (one object in five or six matches), the unfiltered
         list and ?batch_id=b-100; one statement each, the page with its exact count read from
         counters (named by their hash, computed here as the API does). pgbench runs that statement
         as the API does (-M prepared: all three are prepared; the one-term list reads its page in
         id order or from the GIN index as its count says), and the page alone (the price of a page
         with a free count, the reference of issue #12's goal: -M extended, planned for its values,
         for data=; -M prepared for the other two)
  get    GET /api/v1/objects/{object_id}/ with random ids (a wrk Lua script; pgbench \\set random,
         -M prepared: the API runs lookups as prepared statements)

and prints req/s / tps and p50/p99 latency (goal: >= 0.8 of pgbench, p99 <= 10 ms). Then:

  unprepared pgbench -M extended with the get statement: the cost of parsing and planning it every
           time (context: what the API did before it prepared its lookups)
  rss      wrk -c 256 against the get route; the API's VmHWM before and after
  listing  first page and a deep page by cursor (and by page number, for contrast), with and
           without a filter: a few seconds of wrk -c 1 each
  mixed    (not in the default --phases) the default list above, GET /api/v1/objects/?data={"type":"shoe"},
           and the same with count=none for contrast: wrk at --connections for --seconds on the idle
           system, then again while the real pipeline ingests at full speed into the same database
           (client processes of bench/ingest.py POST batches of 1,000 fresh objects of the same
           dataset to the same API, Kafka, --ingest-workers workers; the clients pause while more than
           --ingest-backlog acked batches are unapplied, so the workers never wait and the drain is
           short). Prints req/s, p50, p99 of both, the ingest rate reached in each window (objects/s,
           from ingest_offsets) beside the goal (p99 <= 25 ms during ingest); after the clients stop
           and the workers drain, "count exact: yes/no": the list's count against SELECT count(*).
           Run last, since it adds objects (with --db the next run loads again):

    BP_BUILD_DIR=build-bench bench/query.py --phases mixed                 # 1M objects, seven pairs
    BP_BUILD_DIR=build-bench bench/query.py --phases mixed --dataset low

pgbench runs each statement the way the API sends it (-M extended: unnamed, parameters apart, what
PQsendQueryParams does; -M prepared: what PQsendPrepare + PQsendQueryPrepared do) with
PGOPTIONS with the API's session settings (jit=off, enable_seqscan=off, statement_timeout).
Nothing here asserts a time.

    BP_BUILD_DIR=build-bench bench/query.py                                # 1M objects, all phases
    BP_BUILD_DIR=build-bench bench/query.py --objects 10000000 --phases listing --db bench_q10m

With --db the database is kept and reused by the next run with the same --objects (loading 10M rows
takes about six minutes here); drop it afterwards (DROP DATABASE bench_q10m).

With --read-dsn (a hot standby of the server BP_TEST_PG_DSN names, e.g. from `ops/services up --standby`)
a second API runs with BP_PG_READ_DSN pointing at that standby (the bench's database on it), and the
list and get phases are run against both APIs in the same run (X-Served-By checked first):

    BP_TEST_PG_DSN="$(cat run/pg_dsn)" bench/query.py --read-dsn "$(cat run/pg_read_dsn)" \
        --objects 100000 --phases list,get --seconds 5

The get phase then also runs the standby's reads with after=TOKEN (a token the standby has applied:
one check of ingest_offsets on the standby before each lookup), the overhead of read-your-writes.
"""
import base64
import hashlib
import json
import os
import sys
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
import ingest  # noqa: E402 - bench/ingest.py: its bodies, clients and workers for the mixed phase
from benchlib import CpuPhase, fmt_ms, note  # noqa: E402

FILTER = '[{"key": "type", "value": "shoe"}]'  # what the API sends for data={"type":"shoe"}

ISO = "to_char({} AT TIME ZONE 'UTC', E'YYYY-MM-DD\"T\"HH24\\x3aMI\\x3aSS.US\"Z\"')"
# api/query.h BP_SQL_ISO8601 writes the format as 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'; pgbench would take
# ":MI" and ":SS" for its variables, so the colons are spelled \x3a in an E'' literal: the same value.

# api/read_objects.c get_sql, $1 = the object_id
GET_SQL = ("SELECT o.object_id, o.batch_id, o.data::text, " + ISO.format("o.created_at") + ", "
           + ISO.format("o.updated_at") + " FROM objects o WHERE o.object_id = :id;\n")


def page_sql(where, count):
    """api/query.c bp_query_sql_objects for page 1 without a cursor: $lim = page_size + 1. where is
    the filter ("" for none); count is the count relation: the counters' function the API calls by
    default, or the count=none one (the page alone)."""
    return ("SELECT c.n, p.id, p.object_id, p.batch_id, p.data::text, " + ISO.format("p.created_at") + ", "
            + ISO.format("p.updated_at") + ", c.exact FROM " + count + " c LEFT JOIN LATERAL (SELECT o.id, "
            "o.object_id, o.batch_id, o.data, o.created_at, o.updated_at FROM objects o" + where
            + " ORDER BY o.id ASC LIMIT :lim::bigint) p ON true ORDER BY p.id ASC;\n")


NO_COUNT = "(SELECT NULL::bigint AS n, false AS exact)"


def term_hash(kind, key=None, value=None):
    """A counter's name, as migration 007's bp_count_hash and the API's shared/bp_count_key.c make it
    (value: canonical JSON text)."""
    text = kind + (f"{len(key)}:{key}" if key is not None else "-") + (value if value is not None else "-")
    return str(uuid.UUID(hashlib.md5(text.encode()).hexdigest()))


# the default request's count (count=auto), as api/query.c count_source writes it for the lists without
# data=: one counter read in the statement, named by its hash (a parameter)
COUNTER = "(SELECT coalesce(sum(x.n), 0)::bigint AS n, true AS exact FROM count_terms x WHERE x.h = :h::uuid)"


def term_sql(where_value):
    """api/query.c's statement for one term (term_count + term_page), page 1 without a cursor: the
    term's counter, all objects' and the marker of the term's key (migration 012: is it sparse?) in one
    index scan, then the page read in id order or from the GIN index as the exact count says (two
    branches under One-Time Filters, reach = page_size + 1); prepared (one plan for every value)."""
    count = ("(SELECT coalesce(sum(x.n) FILTER (WHERE x.h = :h::uuid), 0)::bigint + CASE WHEN bool_or(x.h = :m::uuid) "
             "THEN bp_count_sparse_extra(:t::jsonb) ELSE 0 END AS n, coalesce(sum(x.n) FILTER (WHERE x.h = :tot::uuid), "
             "0)::bigint AS total, true AS exact FROM count_terms x WHERE x.h IN (:h::uuid, :tot::uuid, :m::uuid))")
    gate = "c.n > 0 AND c.n::float8 * c.n >= :lim::float8 * c.total"
    cols = "o.id, o.object_id, o.batch_id, o.data, o.created_at, o.updated_at"
    return ("SELECT c.n, p.id, p.object_id, p.batch_id, p.data::text, " + ISO.format("p.created_at") + ", "
            + ISO.format("p.updated_at") + ", c.exact FROM " + count + " c LEFT JOIN LATERAL ("
            f"(SELECT {cols} FROM objects o WHERE {gate} AND jsonb_contains(o.data, {where_value}) "
            "ORDER BY o.id ASC LIMIT :lim::bigint) UNION ALL "
            f"(SELECT {cols} FROM objects o WHERE NOT ({gate}) AND o.data @> {where_value} "
            "ORDER BY o.id + 0 ASC LIMIT :lim::bigint)) p ON true ORDER BY p.id ASC;\n")


# the three lists of the list phase: (label, query string, WHERE, pgbench defines of the page, the
# statement the API sends for the default request and its defines, pgbench mode of the page alone
# (count=none: the API sends data= unnamed, api/read_list.c), pgbench mode of the API's statement)
LISTS = [
    ("list", "data=" + urllib.parse.quote('{"type":"shoe"}', safe=""), " WHERE o.data @> :filter::jsonb",
     [("filter", FILTER)], term_sql(":filter::jsonb"),
     [("h", term_hash("p", "type", '"shoe"')), ("tot", term_hash("t")), ("m", term_hash("s", "type")),
      ("t", '{"key": "type", "value": "shoe"}')],
     "extended", "prepared"),
    ("all", "", "", [], page_sql("", COUNTER), [("h", term_hash("t"))], "prepared", "prepared"),
    ("batch", "batch_id=b-100", " WHERE o.batch_id = :b", [("b", "b-100")], page_sql(" WHERE o.batch_id = :b", COUNTER),
     [("h", term_hash("b", "b-100"))], "prepared", "prepared"),
]

# The low-cardinality dataset (--dataset low): shaped like the original assignment's samples, every
# object with the same 3 keys of 5-6 values each (no unique key).
LOW_OBJECTS_SQL = """
SELECT setseed({seed});
INSERT INTO objects (object_id, batch_id, data, src_ts, src_partition, src_offset)
SELECT g::text, 'b-' || ((g - 1) / 1000), jsonb_build_array(
    jsonb_build_object('key', 'type', 'value',
                       (ARRAY['shoe','shirt','watch','hat','bag'])[1 + floor(random() * 5)::int]),
    jsonb_build_object('key', 'color', 'value',
                       (ARRAY['red','blue','green','black','white','gold'])[1 + floor(random() * 6)::int]),
    jsonb_build_object('key', 'size', 'value', (ARRAY['38','40','42','44','46','48'])[1 + floor(random() * 6)::int]::int)),
    0, 0, g
FROM generate_series({lo}, {hi}) AS g;
"""

OBJECTS_SQL = """
SELECT setseed({seed});
INSERT INTO objects (object_id, batch_id, data, src_ts, src_partition, src_offset)
SELECT g::text, 'b-' || ((g - 1) / 1000), jsonb_build_array(
    jsonb_build_object('key', 'type', 'value',
                       (ARRAY['shoe','shirt','watch','hat','bag','sock'])[1 + floor(random() * 6)::int]),
    jsonb_build_object('key', 'color', 'value',
                       (ARRAY['red','blue','green','black','white','gold','grey','pink'])
                       [1 + floor(random() * 8)::int]),
    jsonb_build_object('key', 'size', 'value', 35 + floor(random() * 12)::int),
    jsonb_build_object('key', 'brand', 'value', 'brand-' || floor(random() * 50)::int),
    jsonb_build_object('key', 'price', 'value', round((random() * 200)::numeric, 2)),
    jsonb_build_object('key', 'in_stock', 'value', random() < 0.7),
    jsonb_build_object('key', 'sku', 'value', 'SKU-' || lpad(g::text, 9, '0'))),
    0, 0, g
FROM generate_series({lo}, {hi}) AS g;
"""


DEADLOCK = "40P01"


def _execute_retrying(cur, sql, attempts=5):
    """cur.execute(sql), again when PostgreSQL cancelled it on a deadlock: the load's INSERT sessions
    make keys sparse concurrently in the counters' trigger (bp_count_make_sparse) and may deadlock
    there (QUERIES.md, sparse keys); each statement is one transaction, rolled back whole, so running
    it again is safe, and the retry is what the workers do too."""
    for attempt in range(1, attempts + 1):
        try:
            cur.execute(sql)
            return
        except benchlib.conftest.psycopg2.Error as exc:
            if exc.pgcode != DEADLOCK or attempt == attempts:
                raise
            note(f"a load statement was cancelled on a deadlock (attempt {attempt}); running it again")


def _parallel(env, statements_per_session):
    """Run lists of statements in concurrent sessions (one per list), each statement retried after a
    deadlock; re-raise the first failure."""
    errors = []

    def run(stmts):
        try:
            conn = env.db()
            cur = conn.cursor()
            cur.execute("SET maintenance_work_mem = '512MB'; SET synchronous_commit = off")
            for sql in stmts:
                _execute_retrying(cur, sql)
            conn.close()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(st,)) for st in statements_per_session if st]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def load(env, n, sessions=2, objects_sql=None):
    """Fill objects with n rows the fast way: keys, foreign key and indexes dropped, rows inserted by
    `sessions` concurrent INSERT ... generate_series, then everything recreated from its own
    definition (so the schema ends as `batchpipe migrate` made it) and VACUUM ANALYZE.
    Returns (seconds, (objects' total size, GIN index size), [(label, relation_sizes())]: count_terms
    before and after its VACUUM FULL, objects)."""
    t0 = time.monotonic()
    cons = env.query("SELECT conname, contype, pg_get_constraintdef(oid), pg_get_indexdef(conindid) FROM pg_constraint "
                     "WHERE conrelid = 'objects'::regclass AND contype IN ('p', 'u', 'f')")
    idx = env.query("SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = 'objects' AND NOT EXISTS "
                    "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)")
    for name, _, _, _ in cons:
        env.query(f'ALTER TABLE objects DROP CONSTRAINT "{name}"')
    for name, _ in idx:
        env.query(f'DROP INDEX "{name}"')
    env.query(f"INSERT INTO batches (batch_id) SELECT 'b-' || g FROM generate_series(0, ({int(n)} - 1) / 1000) AS g")
    # the first 10,000 objects alone, as a live system's first batches come: a key of unique values
    # (sku) turns sparse there (QUERIES.md), so the bulk statements write no counter row per sku
    sql = objects_sql or OBJECTS_SQL
    first = min(n, 10_000)
    _parallel(env, [[sql.format(seed=0.41, lo=1, hi=first)]])
    step = (n - first + sessions - 1) // sessions
    _parallel(env, [[sql.format(seed=0.42 + k / 100, lo=first + k * step + 1, hi=min(n, first + (k + 1) * step))]
                    for k in range(sessions) if first + k * step < n])
    # rebuild: the GIN index in one session, the b-trees (those of the keys first, as plain unique
    # indexes: CREATE INDEX sessions do not block each other) in the other; then the constraints
    gin = [ddl for name, ddl in idx if "gin" in ddl.lower()]
    btrees = [ixdef for _, t, _, ixdef in cons if t in "pu"] + [ddl for _, ddl in idx if "gin" not in ddl.lower()]
    _parallel(env, [gin, btrees])
    for name, t, d, _ in cons:
        if t in "pu":
            kind = "PRIMARY KEY" if t == "p" else "UNIQUE"
            env.query(f'ALTER TABLE objects ADD CONSTRAINT "{name}" {kind} USING INDEX "{name}"')
    for name, t, d, _ in cons:
        if t == "f":
            env.query(f'ALTER TABLE objects ADD CONSTRAINT "{name}" {d}')
    env.query("VACUUM ANALYZE batches")
    env.query("VACUUM ANALYZE objects")
    # The INSERT trigger wrote counter rows for the sku values and deleted them when it made the key
    # sparse: count_terms is mostly dead rows now, which a live system's counters are not (autovacuum
    # has long compacted them). VACUUM FULL so that the reads are measured on the counters' live size.
    before = relation_sizes(env, "count_terms")
    env.query("VACUUM FULL count_terms")
    env.query("ANALYZE count_terms")
    after = relation_sizes(env, "count_terms")
    sizes = env.query("SELECT pg_size_pretty(pg_total_relation_size('objects')), "
                      "pg_size_pretty(pg_relation_size('objects_data_idx'))")[0]
    return time.monotonic() - t0, sizes, [("count_terms before VACUUM FULL", before),
                                         ("count_terms after VACUUM FULL", after),
                                         ("objects", relation_sizes(env, "objects"))]


def relation_sizes(env, table):
    """(rows, table size, its indexes' size) of a table, the sizes as pg_size_pretty writes them."""
    return env.query(f"SELECT (SELECT count(*) FROM {table}), pg_size_pretty(pg_table_size('{table}')), "
                     f"pg_size_pretty(pg_indexes_size('{table}'))")[0]


def sizes_line(label, sizes):
    rows, table, indexes = sizes
    return f"{label}: {rows:,} rows, table {table} + indexes {indexes}"


def db_has(env, n):
    try:
        rows = env.query("SELECT count(*) FROM objects")
    except Exception:  # noqa: BLE001 - no such database
        return False
    return rows[0][0] == n


def cursor(obj_id, backward=False):
    raw = b"\x01" + json.dumps({"k": "o", "d": "p" if backward else "n", "id": obj_id},
                               separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


GET_LUA = """
local n = {n}
init = function(args)
    math.randomseed(os.time() + tid * 7919)
end
request = function()
    local id = tostring(math.random(1, n))
    return timed(id, wrk.format("GET", "/api/v1/objects/" .. id .. "/"))
end
key = function(body)
    return string.match(body, '"object_id":"(%d+)"')
end
"""

# the list: a parameter the API ignores but keeps in its next link pairs each response with its request
LIST_LUA = """
local k = 0
request = function()
    k = k + 1
    local id = tid .. "x" .. k
    return timed(id, wrk.format("GET", "{path}&bench=" .. id))
end
key = function(body)
    return string.match(body, "bench=(%d+x%d+)")
end
"""


def applied_token(env, read_dsn):
    """A receipt token the standby has applied: the bench loads its rows directly (no worker), so an
    ingest_offsets row for partition 0 is written on the primary and waited for on the standby."""
    env.query("INSERT INTO ingest_offsets (group_id, topic, partition, next_offset) VALUES (%s, %s, 0, 1)"
              " ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = 1", (env.group, env.topic))

    def standby_has():
        conn = benchlib.conftest.psycopg2.connect(read_dsn)
        try:
            cur = conn.cursor()
            cur.execute("SELECT count(*) FROM ingest_offsets WHERE group_id = %s AND topic = %s", (env.group, env.topic))
            return cur.fetchone()[0] == 1
        finally:
            conn.close()
    benchlib.conftest.wait_until(standby_has, 60, "the standby to replay the offsets row")
    return benchlib.conftest.receipt_token(env.topic, 0, 0)


def ratio_line(label, w, p, goal=0.8):
    """goal: the get route's is 0.8 of its statement; a list's 0.4 of its page alone (issue #12)."""
    r = w["rps"] / p["tps"] if w["rps"] and p["tps"] else None
    return (f"{label:5} API {w['rps'] or 0:9,.0f} req/s  p50 {fmt_ms(w['p50']):>9}  p99 {fmt_ms(w['p99']):>9}"
            f"   | pgbench {p['tps'] or 0:9,.0f} tps  p50 {fmt_ms(p['p50']):>9}  p99 {fmt_ms(p['p99']):>9}"
            f"   | RATIO {('%.2f' % r) if r else '?'} (goal >= {goal}; API p99 goal <= 10 ms)")


def standby_line(label, primary, standby):
    r = standby["rps"] / primary["rps"] if standby["rps"] and primary["rps"] else None
    return (f"{label:5} via standby {standby['rps'] or 0:9,.0f} req/s  p50 {fmt_ms(standby['p50']):>9}  "
            f"p99 {fmt_ms(standby['p99']):>9}   | {('%.2f' % r) if r else '?'} of the primary's req/s")


class Ingest:
    """The mixed phase's writes: the real pipeline at full speed into the bench's database. Client
    processes (bench/ingest.py's) post batches of bench/ingest.py's objects of the same dataset to the
    API under test, round after round under fresh batch and object ids (so every post inserts), until
    stopped; workers apply them. The API accepts far faster than the workers apply, so the clients
    pause while more than --ingest-backlog acked batches wait in the topic: the workers always have
    work (the database gets the pipeline's full rate) and the drain at the end stays short. The
    objects applied so far are read from ingest_offsets (one message per batch, a fresh topic)."""

    BATCH = 1000  # objects per batch, bench/ingest.py's default
    POOL = 8  # batches per client generated before the clock (renamed each round, not regenerated)

    def __init__(self, env, args, api):
        self.env, self.args, self.api = env, args, api
        self.clients, self.seed = args.ingest_clients, int(time.time())  # a seed of its own: fresh ids in --db
        n = self.BATCH * self.POOL * self.clients
        ingest.BODIES, _, _ = ingest.make_batches(n, self.BATCH, 0, self.seed, dataset=args.dataset)
        self.conn = env.db()
        self.workers, self.procs, self.pipes, self.flow = [], [], [], ingest.Flow()
        self.done = threading.Event()
        self.paused = 0  # times the clients were held back

    def batches(self, conn=None):
        return sum(ingest.applied((conn or self.conn).cursor(), self.env).values())

    def objects(self):
        return self.batches() * self.BATCH

    def _regulate(self):
        """Thread: hold the clients back while more than --ingest-backlog acked batches are unapplied."""
        conn = self.env.db()
        while not self.done.wait(0.1):
            if self.flow.acked.value - self.batches(conn) > self.args.ingest_backlog:
                if self.flow.go.is_set():
                    self.paused += 1
                self.flow.go.clear()
            else:
                self.flow.go.set()
        conn.close()

    def start(self):
        """Start the workers (each holding its partitions), then the clients; return once the first
        batches are in the database."""
        worker_env = benchlib.settings(self.args.worker_env)
        self.workers = ingest.start_workers(self.env, self.args.ingest_workers, self.args.partitions, worker_env)
        start, self.procs, self.pipes = ingest.start_clients(self.clients, int(self.api.url.rsplit(":", 1)[1]),
                                                             flow=self.flow, seed=self.seed)
        self.regulator = threading.Thread(target=self._regulate, daemon=True)
        self.regulator.start()
        self.t0 = time.monotonic()
        start.set()
        benchlib.wait_until(lambda: self.objects() > 0, 120, "the ingest's first batches in the database")
        note(f"ingest running: {self.clients} client processes posting batches of {self.BATCH:,} "
             f"(at most {self.args.ingest_backlog} unapplied), {len(self.workers)} workers, "
             f"{self.args.partitions} partitions")

    def running(self):
        return all(p.is_alive() for p in self.procs) and all(w.alive() for w in self.workers)

    def groups(self):
        """CpuPhase groups of the ingest's processes."""
        g = {"workers": [w.p.pid for w in self.workers], "ingest clients": [p.pid for p in self.procs]}
        if benchlib.kafka_pid():
            g["broker"] = [benchlib.kafka_pid()]
        return g

    def stop(self, timeout=300):
        """Stop the clients (each finishes its request in flight), wait (at most timeout s) until the
        workers applied every acked batch, stop the workers. Returns a line to print."""
        self.flow.stop.set()
        self.done.set()
        self.regulator.join()
        self.flow.go.set()  # the clients held back see stop
        results = []
        for rd in self.pipes:
            if not rd.poll(180):
                raise AssertionError("an ingest client did not stop within 180 s")
            results.append(rd.recv())
        for p in self.procs:
            p.join()
        posted_s = time.monotonic() - self.t0
        t = time.monotonic()
        ingest.wait_applied(self.conn.cursor(), self.env, ingest.last_acked(results), timeout)
        drain_s = time.monotonic() - t
        for w in self.workers:
            w.stop()
        self.conn.close()
        acked = sum(len(r["acks"]) for r in results)
        refused = [x for r in results for x in r["refused"]]
        bad = f"; {len(refused)} batches REFUSED, first: {refused[0]}" if refused else ""
        return (f"ingest: {acked * self.BATCH:,} objects acked in {posted_s:.1f} s "
                f"({acked * self.BATCH / posted_s:,.0f} objects/s; clients held back {self.paused} times), "
                f"the workers drained in {drain_s:.1f} s more ({sum(r['retries'] for r in results)} retries "
                f"after 503{bad})")


PHASES = ("list", "get", "unprepared", "rss", "listing", "mixed")


def parse_args():
    ap = benchlib.arg_parser(__doc__, "api-threads", "quiet-wait", "api-env", "partitions", "worker-env")
    ap.add_argument("--objects", type=int, default=1_000_000)
    ap.add_argument("--dataset", choices=("seven", "low"), default="seven",
                    help="seven: 7 pairs per object, one a unique sku; low: 3 keys of 5-6 values each")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--load-sessions", type=int, default=2,
                    help="concurrent INSERT sessions of the load (a statement cancelled on a deadlock between "
                         "them in the counters' trigger, bp_count_make_sparse, is run again)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads and pgbench threads (-j)")
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--phases", default="list,get,unprepared,rss,listing",
                    help="comma list of " + ",".join(PHASES) + " (mixed is not in the default list), or none "
                         "(load and print the sizes only)")
    ap.add_argument("--ingest-clients", type=int, default=4, help="the mixed phase's client processes posting")
    ap.add_argument("--ingest-workers", type=int, default=2, help="the mixed phase's ingest workers")
    ap.add_argument("--ingest-backlog", type=int, default=60, metavar="BATCHES",
                    help="the mixed phase's clients pause while more acked batches than this are not yet applied")
    ap.add_argument("--read-dsn", metavar="DSN",
                    help="a hot standby of the bench's primary: run list and get also through an API that "
                         "reads from it (its dbname is replaced by the bench's database)")
    ap.add_argument("--db", help="reuse (or create and keep) this database: skips the load when it already "
                                  "holds --objects rows")
    args = ap.parse_args()
    unknown = set(args.phases.split(",")) - set(PHASES) - {"none"}
    if unknown:
        ap.error(f"unknown phases {','.join(sorted(unknown))}: choose among {','.join(PHASES)}")
    return args


def bench_env(args):
    """The harness's Env: a fresh database, or --db's (kept). Returns (env, keep)."""
    env = benchlib.Env(partitions=args.partitions)
    if not args.db:
        return env, False
    env.dbname = args.db
    env.dsn = benchlib.conftest.dsn_with_db(env.dsn, args.db)
    env.vars["BP_PG_DSN"] = env.dsn
    return env, True


def prepare_database(env, args):
    """The objects: reused when --db already holds --objects rows, else migrated and loaded."""
    if args.db and db_has(env, args.objects):
        note(f"reusing database {env.dbname} with {args.objects:,} objects")
        return
    if args.db:
        conn = benchlib.conftest.psycopg2.connect(benchlib.conftest.BASE_DSN)
        conn.autocommit = True
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{env.dbname}" WITH (FORCE)')
        conn.cursor().execute(f'CREATE DATABASE "{env.dbname}"')
        conn.close()
    env.cli("migrate")
    note(f"loading {args.objects:,} objects with generate_series ...")
    secs, sizes, tables = load(env, args.objects, sessions=args.load_sessions,
                               objects_sql=LOW_OBJECTS_SQL if args.dataset == "low" else None)
    note(f"loaded in {secs:.1f} s; objects table with indexes {sizes[0]}, GIN index {sizes[1]}")
    for label, t in tables:
        print(f"  {sizes_line(label, t)}")


def start_standby_api(env, args, api_env):
    """A second API reading from --read-dsn's standby, once the standby has replayed the load and the
    API reads from it. Returns (api, the standby's DSN for the bench's database)."""
    read_dsn = benchlib.conftest.dsn_with_db(args.read_dsn, env.dbname)
    want = env.query("SELECT count(*) FROM objects")[0][0]

    def standby_has():
        conn = benchlib.conftest.psycopg2.connect(read_dsn)
        try:
            cur = conn.cursor()
            cur.execute("SELECT count(*) FROM objects")
            return cur.fetchone()[0] == want
        finally:
            conn.close()
    benchlib.conftest.wait_until(standby_has, 600, "the standby to replay the load")
    sapi = env.start_api(**{"BP_LOG_LEVEL": "warn", "BP_HTTP_THREADS": args.api_threads,
                            "BP_PG_READ_DSN": read_dsn, **api_env})
    # the API checks the standby's lag once a second: until the first check, reads go to the primary
    benchlib.conftest.wait_until(
        lambda: sapi.get("/api/v1/objects/1/").headers.get("X-Served-By", "").startswith("standby"),
        30, "the second API to read from the standby")
    note("second API with BP_PG_READ_DSN: GET answered by the standby")
    return sapi, read_dsn


class Run:
    """The APIs under test and what every phase needs; each phase appends its lines to summary."""

    PGOPTS = "-c jit=off -c enable_seqscan=off -c statement_timeout=5000"

    def __init__(self, env, args, api_env, api, sapi, read_dsn):
        self.env, self.args, self.api_env, self.api, self.sapi, self.read_dsn = env, args, api_env, api, sapi, read_dsn
        self.mon = env.db()
        self.pg_pids = lambda: benchlib.pg_backend_pids(self.mon, env.dbname)
        self.c, self.t, self.s = args.connections, args.threads, args.seconds
        self.get_lua = GET_LUA.format(n=args.objects)
        self.summary = []

    def warm_up(self):
        """The pools and the caches (the API opens its PostgreSQL connections on demand)."""
        benchlib.run_wrk(self.api.url + "/", self.c, self.t, 3, lua=self.get_lua)
        if self.sapi is not None:  # and the standby's
            benchlib.run_wrk(self.sapi.url + "/", self.c, self.t, 3, lua=self.get_lua)

    def wrk(self, label, url, lua="", conns=None, route="/api/v1/objects/", target=None, busy=None):
        """One wrk run. busy: the CpuPhase groups of work meant to run alongside (the mixed phase's
        ingest): then no waiting for a quiet machine first."""
        conns, target, t, s = conns or self.c, target or self.api, self.t, self.s
        if busy is None:
            benchlib.wait_quiet(self.args.quiet_wait)
        h0 = benchlib.server_histogram(target.url, route)
        ph = CpuPhase({"api": [target.proc.p.pid], "postgres": self.pg_pids, **(busy or {})})
        w = benchlib.run_wrk(url, conns, t, s, lua=lua)
        ph.end(client_label="wrk")
        within = benchlib.server_share_within(h0, benchlib.server_histogram(target.url, route))
        extra = f", {w['non2xx']} non-2xx, {w['errors']} socket errors" if w["non2xx"] or w["errors"] else ""
        note(f"{label}: wrk -t{t} -c{conns} -d{s}s: {w['rps'] or 0:,.0f} req/s, p50 {fmt_ms(w['p50'])}, "
             f"p90 {fmt_ms(w['p90'])}, p99 {fmt_ms(w['p99'])}, p99.9 {fmt_ms(w['p999'])}, "
             f"max {fmt_ms(w['max'])}{extra} (per-request timing of {w['timed_n'] or 0:,} requests; "
             f"wrk's own p99: {fmt_ms(w['wrk_p99'])})")
        if within is not None:
            print(f"  the API's own histogram (request read to response sent): {within:.2f}% within 10 ms")
        ph.print_report(failed_output=w["raw"] if w["rps"] is None else None)
        return w

    def pgbench(self, label, script, defines, mode="extended"):
        c, t, s = self.c, self.t, self.s
        benchlib.wait_quiet(self.args.quiet_wait)
        ph = CpuPhase({"postgres": self.pg_pids})
        p = benchlib.run_pgbench(self.env.dsn, script, c, t, s, defines=defines, env_options=self.PGOPTS, mode=mode)
        ph.end(client_label="pgbench")
        note(f"{label}: pgbench -M {mode} -c{c} -j{t} -T{s}: {p['tps'] or 0:,.0f} tps, p50 {fmt_ms(p['p50'])}, "
             f"p90 {fmt_ms(p['p90'])}, p99 {fmt_ms(p['p99'])}, p99.9 {fmt_ms(p['p999'])}, max {fmt_ms(p['max'])}, "
             f"{p['failed']} failed")
        ph.print_report(failed_output=p["raw"] if p["tps"] is None else None)
        return p

    def phase_list(self, shoes):
        base = self.api.url
        note(f"list: {shoes:,} of {self.args.objects:,} objects match data={{\"type\":\"shoe\"}} "
             f"({self.args.dataset} dataset)")
        page = int(self.api_env.get("BP_PAGE_SIZE_DEFAULT", 10))
        for label, qs, where, defines, full_sql, count_defines, mode, full_mode in LISTS:
            # the DEFAULT request: default count (count=auto) and default page size
            url = base + "/api/v1/objects/?" + qs
            body = benchlib.conftest.requests.get(url, timeout=30).json()
            note(f"{label}: GET {url[len(base):]} -> count {body['count']:,}, count_exact {body['count_exact']}")
            lua = LIST_LUA.replace("{path}", url[len(base):] + ("&" if qs else "") + "x=1")
            w = self.wrk(f"{label} API", base + "/", lua=lua, route='route="/api/v1/objects/"')
            lim = [("lim", str(page + 1))]
            p = self.pgbench(f"{label} SQL, the page alone (count=none)", page_sql(where, NO_COUNT),
                             defines + lim, mode=mode)
            full = self.pgbench(f"{label} SQL, page and count as the API sends it", full_sql,
                                defines + count_defines + lim, mode=full_mode)
            self.summary.append(ratio_line(label, w, p, goal=0.4))
            self.summary.append(f"{'':5} (pgbench with the API's count from the counters: {full['tps'] or 0:,.0f} "
                                f"tps, p99 {fmt_ms(full['p99'])})")
            if self.sapi is not None:
                sw = self.wrk(f"{label} API via standby", self.sapi.url + "/", lua=lua,
                              route='route="/api/v1/objects/"', target=self.sapi)
                self.summary.append(standby_line(label, w, sw))

    def phase_get(self):
        w = self.wrk("get API", self.api.url + "/", lua=self.get_lua, route="objects/{}")
        get_script = f"\\set id random(1, {self.args.objects})\n" + GET_SQL
        p = self.pgbench("get SQL", get_script, [], mode="prepared")
        self.summary.append(ratio_line("get", w, p))
        if self.sapi is None:
            return
        sapi = self.sapi
        sw = self.wrk("get API via standby", sapi.url + "/", lua=self.get_lua, route="objects/{}", target=sapi)
        self.summary.append(standby_line("get", w, sw))
        # the same reads naming a write the standby has replayed (after=TOKEN, issue #14): one more
        # statement per read (the check of ingest_offsets on the standby) before the lookup
        token = applied_token(self.env, self.read_dsn)
        after_lua = self.get_lua.replace('.. "/")', '.. "/?after=' + token + '")')
        sa = self.wrk("get API via standby, after=TOKEN", sapi.url + "/", lua=after_lua, route="objects/{}",
                      target=sapi)
        self.summary.append(standby_line("get+after", w, sa))
        self.summary.append(f"{'':5} (after=TOKEN / without: {(sa['rps'] or 0) / (sw['rps'] or 1):.2f} of the "
                            f"standby's req/s, p99 {fmt_ms(sa['p99'])} vs {fmt_ms(sw['p99'])})")

    def phase_unprepared(self):
        # not the API's protocol any more: the same statement parsed and planned every time (context)
        get_script = f"\\set id random(1, {self.args.objects})\n" + GET_SQL
        p = self.pgbench("get SQL, unprepared", get_script, [], mode="extended")
        self.summary.append(f"get   pgbench -M extended {p['tps'] or 0:9,.0f} tps  p50 {fmt_ms(p['p50']):>9}  "
                            f"p99 {fmt_ms(p['p99']):>9}   (the same statement, unnamed: parsed and planned each "
                            f"time)")

    def phase_rss(self):
        pid = self.api.proc.p.pid
        before = benchlib.vm_hwm_kib(pid)
        w = self.wrk("get API at 256 connections", self.api.url + "/", lua=self.get_lua, conns=256,
                     route="objects/{}")
        after = benchlib.vm_hwm_kib(pid)
        self.summary.append(f"API peak RSS (VmHWM): {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB after "
                            f"wrk -c 256 ({w['rps'] or 0:,.0f} req/s, p99 {fmt_ms(w['p99'])})")

    def phase_listing(self):
        n = self.args.objects
        deep = cursor(n - 1000)
        shoe = "data=" + urllib.parse.quote('{"type":"shoe"}', safe="")
        cases = [
            ("first page", "/api/v1/objects/"),
            ("deep page by cursor (id > N-1000)", f"/api/v1/objects/?cursor={deep}"),
            ("deep page by number (page=10000: OFFSET 99,990)", "/api/v1/objects/?page=10000"),
            ("first page, data=type:shoe", f"/api/v1/objects/?{shoe}"),
            ("deep page by cursor, data=type:shoe", f"/api/v1/objects/?{shoe}&cursor={deep}"),
            ("first page, count=none", "/api/v1/objects/?count=none"),
            ("deep page by cursor, count=none", f"/api/v1/objects/?count=none&cursor={deep}"),
            ("first page, data=type:shoe, count=none", f"/api/v1/objects/?{shoe}&count=none"),
            ("deep page by cursor, data=type:shoe, count=none",
             f"/api/v1/objects/?{shoe}&count=none&cursor={deep}"),
        ]
        s = 3
        self.summary.append(f"listing at {n:,} objects (wrk -t1 -c1 -d{s}s each):")
        for label, path in cases:
            benchlib.wait_quiet(min(self.args.quiet_wait, 10))
            ph = CpuPhase({"api": [self.api.proc.p.pid], "postgres": self.pg_pids})
            r = benchlib.run_wrk(self.api.url + path, 1, 1, s, timeout_s=10)
            ph.end()
            bad = f", {r['non2xx']} non-2xx" if r["non2xx"] else ""
            self.summary.append(f"  {label:55} p50 {fmt_ms(r['p50']):>9}  p99 {fmt_ms(r['p99']):>9}  "
                                f"({r['rps'] or 0:,.0f} req/s{bad})   [load {ph.load0}, others {ph.other_pct:.0f}%]")

    def phase_mixed(self):
        """The default filtered list (and count=none for contrast) on the idle system, then again while
        the pipeline ingests at full speed into the same database; then its count checked."""
        base, env = self.api.url, self.env
        shoe = "/api/v1/objects/?data=" + urllib.parse.quote('{"type":"shoe"}', safe="")
        routes = [("list", shoe), ("count=none", shoe + "&count=none")]

        def lists(when, ing=None):
            out = {}
            for label, path in routes:
                lua = LIST_LUA.replace("{path}", path)
                a0, t0 = (ing.objects(), time.monotonic()) if ing else (0, 0)
                w = self.wrk(f"mixed {label} API, {when}", base + "/", lua=lua, route='route="/api/v1/objects/"',
                             busy=ing.groups() if ing else None)
                if ing:
                    w["ingest_rate"] = (ing.objects() - a0) / (time.monotonic() - t0)
                    w["ingest_through"] = ing.running()
                    note(f"ingest during that window: {w['ingest_rate']:,.0f} objects/s"
                         + ("" if w["ingest_through"] else " (an ingest process STOPPED during it)"))
                out[label] = w
            return out
        idle = lists("idle")
        ing = Ingest(env, self.args, self.api)
        ing.start()
        busy = lists("during ingest", ing)
        ingest_line = ing.stop()
        note(ingest_line)
        got = self.api.get(shoe).json()
        want = env.query("SELECT count(*) FROM objects WHERE data @> %s::jsonb", (FILTER,))[0][0]
        total = env.query("SELECT count(*) FROM objects")[0][0]

        def pair(w):
            return f"{w['rps'] or 0:7,.0f} req/s  p50 {fmt_ms(w['p50']):>9}  p99 {fmt_ms(w['p99']):>9}"
        for when, ws, extra in (("idle", idle, ""),
                                ("during ingest", busy, "   (goal: list p99 <= 25 ms during ingest)")):
            self.summary.append(f"mixed {when:13}  list {pair(ws['list'])}   | count=none "
                                f"{pair(ws['count=none'])}{extra}")
        rates = ", ".join(f"{label} window {busy[label]['ingest_rate']:,.0f}" for label, _ in routes)
        through = all(busy[label]["ingest_through"] for label, _ in routes)
        self.summary.append(f"{'':6}ingest rate during the windows (objects/s): {rates}"
                            f"{'' if through else '   (an ingest process STOPPED during a window)'}")
        self.summary.append(f"{'':6}{ingest_line}")
        self.summary.append(f"{'':6}after the drain: {total:,} objects; the list's count {got['count']:,} "
                            f"(count_exact {str(got['count_exact']).lower()}), SELECT count(*) ... @> {want:,}: "
                            f"count exact: {'yes' if got['count'] == want and got['count_exact'] else 'no'}")

    def finish(self):
        """Stop the APIs; print their warnings and the summary."""
        self.mon.close()
        if self.sapi is not None:
            self.sapi.proc.stop()
        self.api.proc.stop()
        warns = [line for line in self.api.proc.log_lines() if line.get("level") in ("warn", "error")]
        if warns:
            print(f"the API logged {len(warns)} warnings/errors, first: {warns[0].get('msg')}")
        print()
        for line in self.summary:
            print(line)


def main():
    args = parse_args()
    phases = set(args.phases.split(","))
    benchlib.setup(args)
    benchlib.need_wrk()
    print(f"machine: {benchlib.machine()}; build {os.environ['BP_BUILD_DIR']}")
    env, keep = bench_env(args)
    try:
        prepare_database(env, args)
        if "list" in phases:
            shoes = env.query("SELECT count(*) FROM objects WHERE data @> %s::jsonb", (FILTER,))[0][0]
        env.cli("topics")  # the API's producer wants its topic
        api_env = benchlib.settings(args.api_env)
        api = env.start_api(**{"BP_LOG_LEVEL": "warn", "BP_HTTP_THREADS": args.api_threads, **api_env})
        if api_env:
            note(f"API settings: {api_env}")
        sapi, read_dsn = start_standby_api(env, args, api_env) if args.read_dsn else (None, None)
        run = Run(env, args, api_env, api, sapi, read_dsn)
        run.warm_up()
        if "list" in phases:
            run.phase_list(shoes)
        if "get" in phases:
            run.phase_get()
        if "unprepared" in phases:
            run.phase_unprepared()
        if "rss" in phases:
            run.phase_rss()
        if "listing" in phases:
            run.phase_listing()
        if "mixed" in phases:  # last: its ingest adds objects
            run.phase_mixed()
        run.finish()
    finally:
        if not keep:
            env.drop()
        benchlib.delete_topics(env)


if __name__ == "__main__":
    main()
