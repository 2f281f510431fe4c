"""A private Apache Kafka (KRaft) cluster of 1 or 3 combined broker+controller JVMs for tests that stop,
kill and restart brokers, so that the shared broker at 127.0.0.1:9092 other tests use is never touched.

Same jars and settings as ops/lib.sh (bp_kafka_up): free ports, one temp dir, destroy() kills by PID."""
import base64
import glob
import os
import random
import socket
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

from confluent_kafka.admin import AdminClient

from conftest import SOURCE

JAVA = os.environ.get("JAVA", "java")
LOG4J2 = os.path.join(SOURCE, "ops", "kafka", "log4j2.properties")
HEAP = os.environ.get("BP_TEST_KAFKA_HEAP", "-Xms128m -Xmx512m").split()
# Light JVMs: three of them start on two loaded cores; the brokers of a test carry little traffic.
JVM_FLAGS = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]
READY_TIMEOUT = float(os.environ.get("BP_TEST_KAFKA_READY_S", "120"))


def kafka_libs():
    """The directory of the Kafka jars, fetched the way ops/lib.sh does if the cache is not complete."""
    r = subprocess.run(["bash", "-c", '. ops/lib.sh && bp_kafka_fetch && bp_kafka_libs'], cwd=SOURCE,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"could not fetch the Kafka jars:\n{r.stdout}\n{r.stderr}"
    libs = r.stdout.strip().splitlines()[-1]
    assert os.path.isfile(os.path.join(libs, ".complete")), libs
    return libs


# The JVM gets SIGKILL when the thread that started it dies (pytest crashed, killed or timed out), so
# that no broker outlives its test. setpriv rather than a preexec_fn: threads are running meanwhile.
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL", "--"]


def _stable_port():
    """A free port below the kernel's ephemeral range: a client's outgoing connection can never take it
    while its broker is down, so a restarted broker always gets its port back."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise AssertionError("no free port below the ephemeral range")


def _sweep_stale_dirs():
    """Remove the temp dirs of clusters whose test process is gone (killed before it could clean up;
    their JVMs died with it)."""
    for d in glob.glob(os.path.join(tempfile.gettempdir(), "bp-kafka-*")):
        try:
            with open(os.path.join(d, "owner.pid")) as f:
                os.kill(int(f.read()), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (OSError, ValueError):
            pass  # being created, or not ours: leave it


def _cluster_id():
    """A Kafka Uuid (16 random bytes, base64url without padding), as StorageTool random-uuid prints."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


class KafkaCluster:
    """n KRaft nodes (1 or 3), each broker and controller, node ids 1..n, all on 127.0.0.1.

    Call from the main thread (the JVMs die with the thread that started them). Always destroy()."""

    def __init__(self, n=1):
        assert n in (1, 3), n
        self.n = n
        self.libs = kafka_libs()
        _sweep_stale_dirs()
        self.dir = tempfile.mkdtemp(prefix="bp-kafka-")
        with open(os.path.join(self.dir, "owner.pid"), "w") as f:
            f.write(str(os.getpid()))
        self.cluster_id = _cluster_id()
        ports = set()
        while len(ports) < 2 * n:
            ports.add(_stable_port())
        ports = sorted(ports)
        self.ports = {i: ports[i - 1] for i in range(1, n + 1)}
        self.controller_ports = {i: ports[n + i - 1] for i in range(1, n + 1)}
        self.procs = {}  # node id -> Popen of the running JVM
        self.pids = []   # every JVM ever started, for destroy()
        try:
            for node in self.nodes():
                self._write_config(node)
            self._format()
            for node in self.nodes():
                self._spawn(node)
            self.wait_ready()
        except BaseException:
            self.destroy()
            raise

    # ---- layout ------------------------------------------------------------------------------
    def nodes(self):
        return list(range(1, self.n + 1))

    @property
    def bootstrap(self):
        return ",".join(self.address(node) for node in self.nodes())

    def address(self, node):
        return f"127.0.0.1:{self.ports[node]}"

    def node_dir(self, node):
        return os.path.join(self.dir, f"node{node}")

    def _write_config(self, node):
        rf, min_isr = (3, 2) if self.n == 3 else (1, 1)
        voters = ",".join(f"{i}@127.0.0.1:{self.controller_ports[i]}" for i in self.nodes())
        d = self.node_dir(node)
        os.makedirs(d)
        props = {
            "process.roles": "broker,controller",
            "node.id": node,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.ports[node]},"
                         f"CONTROLLER://127.0.0.1:{self.controller_ports[node]}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.ports[node]}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": os.path.join(d, "data"),
            "num.partitions": 1,
            "auto.create.topics.enable": "false",
            "default.replication.factor": rf,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": 12,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": 0,
            "message.max.bytes": 20971520,
            "replica.fetch.max.bytes": 20971520,
            "num.network.threads": 2,
            "num.io.threads": 4,
            "log.retention.hours": 168,
        }
        with open(os.path.join(d, "server.properties"), "w") as f:
            for k, v in props.items():
                f.write(f"{k}={v}\n")

    def _java(self, *args):
        return [*DIE_WITH_PARENT, JAVA, *HEAP, *JVM_FLAGS, f"-Dlog4j2.configurationFile={LOG4J2}", "-cp",
                os.path.join(self.libs, "*"), *args]

    def _format(self):
        """Format every node's storage with the one cluster id (in parallel: each is a JVM start)."""
        running = []
        for node in self.nodes():
            log = open(os.path.join(self.node_dir(node), "format.log"), "wb")
            p = subprocess.Popen(self._java("kafka.tools.StorageTool", "format", "-t", self.cluster_id, "-c",
                                            os.path.join(self.node_dir(node), "server.properties")),
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            self.pids.append(p.pid)
            running.append((node, p, log))
        for node, p, log in running:
            try:
                rc = p.wait(120)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                rc = "timeout"
            log.close()
            assert rc == 0, f"storage format of node {node} failed ({rc}):\n{self.log_tail(node, 'format.log')}"

    # ---- processes ---------------------------------------------------------------------------
    def _spawn(self, node):
        assert node not in self.procs, f"node {node} is running"
        path = os.path.join(self.node_dir(node), "broker.log")
        log = open(path, "ab")
        log.write(f"---- started at {time.strftime('%H:%M:%S')}\n".encode())
        log.flush()
        p = subprocess.Popen(self._java("kafka.Kafka", os.path.join(self.node_dir(node), "server.properties")),
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        log.close()
        self.procs[node] = p
        self.pids.append(p.pid)

    def alive(self, node):
        p = self.procs.get(node)
        return p is not None and p.poll() is None

    def running(self):
        return [node for node in self.nodes() if self.alive(node)]

    def start(self, node, wait=True):
        """Start a stopped node again on the same ports and data dir; wait until it serves as a broker."""
        self._spawn(node)
        if wait:
            self.wait_node(node)

    def stop(self, node, hard=False, timeout=90):
        """SIGTERM (a controlled shutdown) or SIGKILL one node and wait for its JVM to exit; returns the
        exit code. A node that does not stop within timeout gets SIGKILL and fails the test."""
        p = self.procs.pop(node)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError(f"kafka node {node} did not stop within {timeout}s:\n{self.log_tail(node)}")

    def ensure_up(self):
        """Start every node that is not running (after a test that failed half-way) and wait."""
        for node in self.nodes():
            if node in self.procs and not self.alive(node):
                self.procs.pop(node)
            if node not in self.procs:
                self._spawn(node)
        self.wait_ready()

    def destroy(self):
        """SIGKILL every JVM this cluster started (by PID) and remove the temp dir. Idempotent."""
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                pass
        self.procs = {}
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        self.pids = []
        if os.environ.get("BP_TEST_KEEP_KAFKA"):
            print(f"kafka cluster kept in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---- state -------------------------------------------------------------------------------
    def log_tail(self, node, name="broker.log", chars=4000):
        try:
            with open(os.path.join(self.node_dir(node), name), "rb") as f:
                return f.read().decode("utf-8", "replace")[-chars:]
        except OSError as exc:
            return repr(exc)

    def admin(self, nodes=None):
        """An AdminClient on the given nodes (default: all)."""
        servers = ",".join(self.address(n) for n in (nodes or self.nodes()))
        return AdminClient({"bootstrap.servers": servers, "log.connection.close": False, "log_level": 0})

    def metadata(self, nodes=None, timeout=5):
        return self.admin(nodes).list_topics(timeout=timeout)

    def _check_alive(self):
        for node, p in self.procs.items():
            if p.poll() is not None:
                raise AssertionError(f"kafka node {node} exited ({p.returncode}):\n{self.log_tail(node)}")

    def _poll(self, predicate, timeout, what):
        """wait_until, except that a node that died fails at once (with its log), not at the deadline."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            self._check_alive()
            try:
                if predicate():
                    return
            except Exception as exc:  # noqa: BLE001 - a node still starting; reported on timeout
                last = exc
            if time.monotonic() >= deadline:
                tails = "\n".join(f"--- node {n}:\n{self.log_tail(n, chars=2000)}" for n in self.nodes())
                raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})\n"
                                     + tails)
            time.sleep(0.2)

    def wait_node(self, node, timeout=READY_TIMEOUT):
        """Wait until node answers as a broker and the cluster lists it (registered and unfenced)."""
        self._poll(lambda: node in self.metadata([node]).brokers, timeout, f"kafka node {node} to serve as a broker")

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Wait until every running node is an unfenced broker, as seen from each of them."""
        def ready():
            want = set(self.running())
            return all(set(self.metadata([node]).brokers) >= want for node in want)
        self._poll(ready, timeout, f"the kafka cluster {self.bootstrap} to be ready")

    def leaders(self, topic):
        """{partition: leader node id} of topic (-1 while a partition has no leader)."""
        md = self.metadata(self.running()).topics[topic]
        return {p: pm.leader for p, pm in md.partitions.items()}

    def fully_replicated(self, topics):
        """True when every partition of the topics has a leader and all n replicas in sync."""
        md = self.metadata(self.running())
        for topic in topics:
            t = md.topics.get(topic)
            if t is None or t.error is not None or not t.partitions:
                return False
            for pm in t.partitions.values():
                if pm.leader < 0 or len(pm.isrs) != self.n:
                    return False
        return True
