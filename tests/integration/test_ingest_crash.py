"""kill -9, seen from outside like an operator would: batches POSTed through the API while two ingest
workers are killed with SIGKILL and restarted again and again (each restart a rebalance). Afterwards:
no (partition, offset) was applied twice according to the workers' own logs (one "applied" line per
message after its COMMIT), every batch is stored whole (a reader running all along never sees part of
one), and the final state is exact.

The test can fail: a worker built with -DBP_TEST_SPLIT_OFFSETS=ON (offsets committed apart from the
data) makes it fail with doubles; docs/RELIABILITY.md has the command and the result.

The suite runs the short version; BP_LONG_TESTS=1 runs the long one."""
import collections
import os
import random
import threading
import time

from conftest import Env, wait_until
from test_ingest import FAST, committed_offsets, expected_state, make_batch, objects_state, wait_all_consumed

LONG = os.environ.get("BP_LONG_TESTS") == "1"
KILLS = 40 if LONG else 8
BATCHES = 1000 if LONG else 150
POST_GAP_S = 0.1  # posts are spread over the kill phase, so that kills land while workers apply
TXN_MESSAGES = 3  # small transactions: many commits, and kills land in and between them
WORKERS = 2


class Observer(threading.Thread):
    """Counts each batch's objects over and over, as a user of the API would see them."""

    def __init__(self, env, sizes):
        super().__init__(daemon=True)
        self.env = env
        self.sizes = sizes
        self.partial = []
        self.runs = 0
        self.seen = set()
        self.halt = threading.Event()
        self.error = None

    def run(self):
        try:
            conn = self.env.db()
            with conn.cursor() as cur:
                while not self.halt.is_set():
                    cur.execute("SELECT batch_id, count(*) FROM objects GROUP BY batch_id")
                    for batch_id, count in cur.fetchall():
                        self.seen.add(batch_id)
                        if count != self.sizes.get(batch_id):
                            self.partial.append((batch_id, count, self.sizes.get(batch_id)))
                    self.runs += 1
            conn.close()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


class Poster(threading.Thread):
    """POSTs the batches in order, one at a time, and records where the API says each one landed."""

    def __init__(self, api, docs):
        super().__init__(daemon=True)
        self.api = api
        self.docs = docs
        self.landed = []  # (partition, offset) per doc
        self.error = None

    def run(self):
        try:
            for doc in self.docs:
                r = self.api.post("/api/v1/batches/", doc)
                assert r.status_code == 202, (r.status_code, r.text[:500])
                self.landed.append((r.json()["partition"], r.json()["offset"]))
                time.sleep(POST_GAP_S)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def applied_lines(procs, topic):
    """(partition, offset) of every "applied" log line of the given workers, doubles included."""
    out = []
    for p in procs:
        for l in p.log_lines():
            if l.get("msg", "").startswith("applied a batch") and l.get("topic") == topic:
                out.append((l["partition"], l["offset"]))
    return out


def test_kill9_of_two_workers_during_posts_applies_each_message_once_and_keeps_batches_whole():
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    env = Env()
    env.create()
    observer = None
    try:
        docs = []
        for i in range(BATCHES):
            if docs and rng.random() < 0.1:  # a newer version of an earlier batch: the later one must win
                old = rng.choice(docs)
                docs.append({"batch_id": old["batch_id"],
                             "objects": [{"object_id": o["object_id"], "data": [{"key": "version", "value": i}]}
                                         for o in old["objects"]]})
            else:
                docs.append(make_batch(rng.randint(20, 300), seed=f"crash-{seed}-{i}")[0])
        sizes = {d["batch_id"]: len(d["objects"]) for d in docs}

        api = env.start_api()
        settings = dict(FAST, BP_TXN_MAX_MESSAGES=str(TXN_MESSAGES))
        workers = [env.start_worker(**settings) for _ in range(WORKERS)]
        observer = Observer(env, sizes)
        observer.start()
        poster = Poster(api, docs)
        poster.start()

        def applied_by(w):
            return len(applied_lines([w], env.topic))

        def all_applied():
            return not poster.is_alive() and sum(committed_offsets(env).values()) >= len(docs)

        kills = 0
        while kills < KILLS:
            # kill a worker a random moment after it applied something: it is busy
            before = [applied_by(w) for w in workers]

            def progressed():
                for w in workers:
                    if not w.alive():
                        raise AssertionError(f"worker exited {w.p.returncode}:\n{w.logs()[-3000:]}")
                busy = [i for i, w in enumerate(workers) if applied_by(w) > before[i]]
                return busy or all_applied()

            busy = wait_until(progressed, 60, "a worker to apply a message")
            if busy is True:
                break  # everything posted is applied: nothing left to interrupt
            victim = rng.choice(busy)
            time.sleep(rng.uniform(0, 0.3))
            workers[victim].kill9()
            kills += 1
            workers[victim] = env.start_worker(**settings)

        poster.join(300)
        assert poster.error is None, poster.error
        assert len(poster.landed) == len(docs)
        wait_all_consumed(env, timeout=120, workers=workers)
        observer.halt.set()
        observer.join(10)
        for w in workers:
            assert w.stop() == 0, w.logs()[-3000:]

        lines = applied_lines(env.procs, env.topic)
        counts = collections.Counter(lines)
        doubles = sorted(pos for pos, n in counts.items() if n > 1)
        # a kill while a COMMIT is on its way (the server commits, the worker never hears it) or before its
        # log lines are written loses those lines: never more than one transaction per kill
        missing = set(poster.landed) - set(counts)
        print(f"\ncrash run (seed {seed}): {len(docs)} batches POSTed, {sum(sizes.values())} objects, {kills} "
              f"kills of {WORKERS} workers, {len(lines)} applied lines, {len(doubles)} (partition, offset) applied "
              f"twice or more, {len(missing)} applied lines lost to kills; the observer counted every batch "
              f"{observer.runs} times, partial sightings: {len(observer.partial)}")
        assert kills >= 4, f"only {kills} kills landed (seed {seed})"
        assert doubles == [], f"messages applied more than once (seed {seed}): {doubles[:20]}"
        assert len(missing) <= kills * TXN_MESSAGES, f"applied lines missing (seed {seed}): {sorted(missing)[:20]}"
        assert observer.error is None, observer.error
        assert observer.runs > 20 and observer.seen, "the observer did not look often enough"
        assert observer.partial == [], f"partial batches seen (seed {seed}): {observer.partial[:10]}"
        assert objects_state(env) == expected_state(docs)
        assert dict(env.query("SELECT batch_id, count(*) FROM objects GROUP BY batch_id")) == sizes
    finally:
        if observer is not None:
            observer.halt.set()
        env.drop()
