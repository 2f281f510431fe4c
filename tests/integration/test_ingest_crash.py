"""kill -9 of the ingest worker at random points while it applies 100 batches: after each restart the
final state is exact, and a reader running all along never sees a batch with only part of its objects.

The suite runs the short version; BP_LONG_TESTS=1 runs the long one (1,000 batches, 25 kills)."""
import json
import os
import random
import threading
import time

from conftest import Env, wait_until
from test_ingest import FAST, Publisher, committed_offsets, expected_state, make_batch, objects_state, \
    wait_all_consumed

LONG = os.environ.get("BP_LONG_TESTS") == "1"
KILLS = 25 if LONG else 4
BATCHES = 1000 if LONG else 100


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


def test_kill9_at_random_points_keeps_every_batch_whole():
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    env = Env()
    env.create()
    observer = None
    try:
        # sizes vary so that transactions (3 messages each) take a while: kills land inside them
        docs = [make_batch(rng.randint(50, 600), seed=f"crash-{seed}-{i}")[0] for i in range(BATCHES)]
        sizes = {d["batch_id"]: len(d["objects"]) for d in docs}
        settings = dict(FAST, BP_TXN_MAX_MESSAGES="3")
        worker = env.start_worker(**settings)
        observer = Observer(env, sizes)
        observer.start()

        pub = Publisher(env.topic)

        def publish_all():
            for doc in docs:
                pub.send(json.dumps(doc).encode(), key=doc["batch_id"].encode())
                time.sleep(0.02)
            pub.flush()

        publisher = threading.Thread(target=publish_all)
        publisher.start()

        kills = 0
        total = len(docs)
        for _ in range(KILLS):
            # wait until this worker has committed something, then kill it a random moment later
            before = sum(committed_offsets(env).values())

            def progressed():
                if not worker.alive():
                    raise AssertionError(f"worker exited {worker.p.returncode}:\n{worker.logs()[-3000:]}")
                now = sum(committed_offsets(env).values())
                return now > before or now >= total

            wait_until(progressed, 60, "the worker to commit a transaction")
            if sum(committed_offsets(env).values()) >= total:
                break
            time.sleep(rng.uniform(0, 0.4))
            worker.kill9()
            kills += 1
            worker = env.start_worker(**settings)

        publisher.join()
        wait_all_consumed(env, timeout=90, workers=[worker])
        observer.halt.set()
        observer.join(10)

        print(f"\ncrash run (seed {seed}): {len(docs)} batches, {sum(sizes.values())} objects, {kills} kills "
              f"landed, the observer counted every batch {observer.runs} times, partial sightings: "
              f"{len(observer.partial)}")
        assert kills >= 2, f"only {kills} kills landed before the end (seed {seed})"
        assert observer.error is None, observer.error
        assert observer.runs > 20 and observer.seen, "the observer did not look often enough"
        assert observer.partial == [], f"partial batches seen (seed {seed}): {observer.partial[:10]}"
        assert objects_state(env) == expected_state(docs)
        assert dict(env.query("SELECT batch_id, count(*) FROM objects GROUP BY batch_id")) == sizes
        assert worker.stop() == 0
    finally:
        if observer is not None:
            observer.halt.set()
        env.drop()
