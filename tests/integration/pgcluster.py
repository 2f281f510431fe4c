"""A private PostgreSQL 15 cluster for tests that stop and start the server (a real restart, not a
dropped connection), so that the shared server other tests use is never disturbed."""
import os
import shutil
import subprocess
import tempfile

from conftest import free_port, wait_until

PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")


def _as_postgres(argv):
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--"] + argv
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


class PgCluster:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="bp-pg-")
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        r = _as_postgres([f"{PG_BIN}/initdb", "-D", f"{self.dir}/data", "-U", "postgres", "-A", "trust",
                          "-E", "UTF8", "--no-sync"])
        assert r.returncode == 0, r.stderr
        self.dsn = f"host=127.0.0.1 port={self.port} dbname=batchpipe user=postgres"
        self.start()

    def _ctl(self, *args):
        return _as_postgres([f"{PG_BIN}/pg_ctl", "-D", f"{self.dir}/data", "-l", f"{self.dir}/log", *args])

    def start(self):
        r = self._ctl("-w", "-t", "60", "-o",
                      f"-k {self.dir} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        assert r.returncode == 0, r.stderr + open(f"{self.dir}/log").read()[-2000:]

    def stop(self, mode="fast"):
        r = self._ctl("-w", "-t", "60", "-m", mode, "stop")
        assert r.returncode == 0, r.stderr

    def is_ready(self):
        return subprocess.run([f"{PG_BIN}/pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode == 0

    def destroy(self):
        if os.path.exists(f"{self.dir}/data/postmaster.pid"):
            self._ctl("-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def private_env(env_cls, **kw):
    """An Env (from conftest) whose database lives in a fresh private cluster; returns (env, cluster).
    Call env.create() afterwards; cleanup: env.procs kill + cluster.destroy()."""
    cluster = PgCluster()
    env = env_cls(**kw)
    env.dsn = cluster.dsn
    env.vars["BP_PG_DSN"] = cluster.dsn
    return env, cluster
