# ops/lib.sh - shared by ops/run, ops/test and ops/services: paths, settings, dependency install,
# PostgreSQL and Kafka start/stop/status. Source it; every function prints what it does.
# shellcheck shell=bash

BP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BP_RUN_DIR=${BP_RUN_DIR:-$BP_ROOT/run}
BP_BUILD_DIR=${BP_BUILD_DIR:-$BP_ROOT/build}
BP_CACHE_DIR=${BP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/batchpipe}
BP_KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$BP_ROOT/ops/kafka/pom.xml")
BP_KAFKA_PORT=${BP_KAFKA_PORT:-9092}
BP_KAFKA_CONTROLLER_PORT=${BP_KAFKA_CONTROLLER_PORT:-9093}
export BP_KAFKA_BROKERS=${BP_KAFKA_BROKERS:-127.0.0.1:$BP_KAFKA_PORT}
export BP_PARTITIONS=${BP_PARTITIONS:-12}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

bp_say() { printf '==> %s\n' "$*" >&2; }
bp_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Wait until "$@" succeeds, at most $1 seconds (polling every 0.2 s). Returns 1 on timeout.
bp_wait_for() {
    local deadline=$(( $(date +%s) + $1 )); shift
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

BP_DEBIAN_PACKAGES="gcc make cmake pkg-config libh2o-evloop-dev libssl-dev librdkafka-dev libjansson-dev
libcmocka-dev libpq-dev libcurl4-openssl-dev postgresql-client openjdk-17-jre-headless maven python3
python3-pytest python3-psycopg2 python3-confluent-kafka python3-requests python3-h2 curl kafkacat valgrind openssl clang
libclang-rt-14-dev nodejs chromium faketime"

# Install the Debian packages that are missing (as root), or say exactly what to run.
bp_install_deps() {
    local missing=() p
    local wanted=$BP_DEBIAN_PACKAGES
    # a private PostgreSQL cluster needs the server binaries when no server is reachable
    [ -x "$PG_BIN/initdb" ] || wanted="$wanted postgresql-15"
    # Debian's nodejs comes without npm (a package of its own); other builds of nodejs bundle it
    command -v npm >/dev/null 2>&1 || wanted="$wanted npm"
    for p in $wanted; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        bp_die "missing Debian packages; run: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    fi
    bp_say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || bp_die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || bp_die "apt-get install failed"
}

# BP_NO_BUILD=1: use the binaries already in $BP_BUILD_DIR as they are (tests run ops/run on the tree
# ctest built, which may be a sanitizer build: building it again with other settings would change it).
bp_build() {
    if [ "${BP_NO_BUILD:-0}" = 1 ]; then
        [ -x "$BP_BUILD_DIR/api/batchpipe-api" ] || bp_die "BP_NO_BUILD=1 but $BP_BUILD_DIR holds no build"
        return 0
    fi
    local type=${BP_BUILD_TYPE:-RelWithDebInfo}
    bp_say "building ($type) in $BP_BUILD_DIR"
    cmake -S "$BP_ROOT" -B "$BP_BUILD_DIR" -DCMAKE_BUILD_TYPE="$type" ${BP_CMAKE_ARGS:-} >/dev/null \
        || bp_die "cmake configure failed"
    cmake --build "$BP_BUILD_DIR" -j"$(nproc)" >/dev/null 2>"$BP_BUILD_DIR/build.err" \
        || { cat "$BP_BUILD_DIR/build.err" >&2; bp_die "build failed"; }
}

# ---- PostgreSQL -------------------------------------------------------------------------------
# Use the server BP_PG_DSN reaches; without one, run a private cluster in $BP_RUN_DIR/pg.
BP_PG_PRIVATE_PORT=${BP_PG_PRIVATE_PORT:-5439}

bp_pg_dsn_default() {
    echo "host=127.0.0.1 port=5432 dbname=${BP_PG_DBNAME:-batchpipe} user=postgres"
}

# Run a PostgreSQL binary as the cluster's owner (initdb refuses root).
bp_pg_as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# A port for a private cluster: $1 unless something already listens there (another engineer's
# cluster, say), else a free one; the choice is kept in $2 so that the next start uses it again.
bp_pg_port() {
    local want=$1 file=$2
    if [ -f "$file" ]; then cat "$file"; return 0; fi
    if pg_isready -q -h 127.0.0.1 -p "$want" -t 1 2>/dev/null || (exec 3<>"/dev/tcp/127.0.0.1/$want") 2>/dev/null; then
        want=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    fi
    echo "$want" >"$file"
    echo "$want"
}

bp_pg_up() {
    export BP_PG_DSN=${BP_PG_DSN:-$(bp_pg_dsn_default)}
    local dir=$BP_RUN_DIR/pg
    if [ "${BP_PG_STANDBY:-0}" = 1 ]; then
        # a standby needs a primary of our own: the shared server is never touched
        bp_say "PostgreSQL: BP_PG_STANDBY=1: a private primary in $dir and a hot standby in $BP_RUN_DIR/pg-standby"
    elif pg_isready -q -d "$BP_PG_DSN" -t 3; then
        bp_say "PostgreSQL: using the server at $(bp_pg_where "$BP_PG_DSN")"
        return 0
    else
        bp_say "PostgreSQL: no server at $(bp_pg_where "$BP_PG_DSN"); starting a private cluster in $dir"
    fi
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        bp_pg_as_owner "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; bp_die "initdb failed"; }
    fi
    local port; port=$(bp_pg_port "$BP_PG_PRIVATE_PORT" "$dir/port")
    if [ ! -f "$dir/data/postmaster.pid" ]; then
        # wal_level=replica, max_wal_senders and hot_standby are PostgreSQL 15's defaults; initdb -A trust
        # lets 127.0.0.1 connect for replication
        bp_pg_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 \
            -o "-k $dir -p $port -c listen_addresses=127.0.0.1 -c wal_level=replica" start >/dev/null \
            || bp_die "PostgreSQL did not start (see $dir/log)"
        BP_STARTED_PG=1
    fi
    export BP_PG_DSN="host=127.0.0.1 port=$port dbname=${BP_PG_DBNAME:-batchpipe} user=postgres"
    echo "$BP_PG_DSN" >"$BP_RUN_DIR/pg_dsn"
    if [ "${BP_PG_STANDBY:-0}" = 1 ]; then bp_pg_standby_up "$port"; fi
}

# A hot standby of the private primary (port $1) in $BP_RUN_DIR/pg-standby: a copy taken with
# pg_basebackup -R (standby.signal and primary_conninfo written for us) that streams through the
# replication slot bp_standby, so the primary keeps the WAL it still needs. Exports BP_PG_READ_DSN.
bp_pg_standby_up() {
    local primary_port=$1 dir=$BP_RUN_DIR/pg-standby
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        bp_say "PostgreSQL: copying the primary into $dir/data (pg_basebackup -R, slot bp_standby)"
        bp_pg_as_owner "$PG_BIN/psql" -q -h 127.0.0.1 -p "$primary_port" -U postgres -d postgres -c \
            "SELECT pg_drop_replication_slot('bp_standby') FROM pg_replication_slots WHERE slot_name = 'bp_standby'" \
            >/dev/null || bp_die "cannot reach the primary on port $primary_port"
        bp_pg_as_owner "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres -D "$dir/data" \
            -R -X stream -C -S bp_standby >"$dir/basebackup.log" 2>&1 \
            || { cat "$dir/basebackup.log" >&2; bp_die "pg_basebackup failed"; }
    fi
    local port; port=$(bp_pg_port "${BP_PG_STANDBY_PORT:-5440}" "$dir/port")
    if [ ! -f "$dir/data/postmaster.pid" ]; then
        bp_pg_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 \
            -o "-k $dir -p $port -c listen_addresses=127.0.0.1" start >/dev/null \
            || bp_die "the standby did not start (see $dir/log)"
    fi
    export BP_PG_READ_DSN="host=127.0.0.1 port=$port dbname=${BP_PG_DBNAME:-batchpipe} user=postgres"
    echo "$BP_PG_READ_DSN" >"$BP_RUN_DIR/pg_read_dsn"
    bp_say "PostgreSQL: hot standby on 127.0.0.1:$port (BP_PG_READ_DSN) streaming from 127.0.0.1:$primary_port"
}

bp_pg_where() { sed -n 's/.*host=\([^ ]*\).*port=\([^ ]*\).*/\1:\2/p' <<<"$1"; }

bp_pg_down() {
    local dir
    for dir in "$BP_RUN_DIR/pg-standby" "$BP_RUN_DIR/pg"; do
        [ -f "$dir/data/postmaster.pid" ] || continue
        bp_say "PostgreSQL: stopping the private cluster in $dir"
        bp_pg_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast stop >/dev/null
    done
}

# ---- Kafka ------------------------------------------------------------------------------------
bp_kafka_libs() { echo "$BP_CACHE_DIR/kafka-$BP_KAFKA_VERSION/libs"; }

bp_kafka_fetch() {
    local libs; libs=$(bp_kafka_libs)
    [ -f "$libs/.complete" ] && return 0
    bp_say "Kafka: fetching Apache Kafka $BP_KAFKA_VERSION from Maven Central into $libs"
    rm -rf "$libs"; mkdir -p "$libs"
    mvn -q -B -f "$BP_ROOT/ops/kafka/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$libs" -DincludeScope=runtime >"$BP_RUN_DIR/mvn.log" 2>&1 \
        || { tail -20 "$BP_RUN_DIR/mvn.log" >&2; bp_die "could not fetch Kafka jars with Maven"; }
    touch "$libs/.complete"
}

bp_kafka_pid() {
    local f=$BP_RUN_DIR/kafka/pid
    [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"
}

bp_kafka_ready() { kcat -b "$BP_KAFKA_BROKERS" -L -m 2 >/dev/null 2>&1; }

bp_kafka_up() {
    if bp_kafka_ready; then
        bp_say "Kafka: using the broker at $BP_KAFKA_BROKERS"
        return 0
    fi
    command -v java >/dev/null || bp_die "java not found (install openjdk-17-jre-headless)"
    bp_kafka_fetch
    local dir=$BP_RUN_DIR/kafka libs; libs=$(bp_kafka_libs)
    mkdir -p "$dir"
    sed -e "s|@PORT@|$BP_KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$BP_KAFKA_CONTROLLER_PORT|g" \
        -e "s|@DATA_DIR@|$dir/data|g" "$BP_ROOT/ops/kafka/server.properties.in" >"$dir/server.properties"
    if [ ! -f "$dir/data/meta.properties" ]; then
        bp_say "Kafka: formatting KRaft storage in $dir/data"
        java -cp "$libs/*" kafka.tools.StorageTool format -t "$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null)" \
            -c "$dir/server.properties" >"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; bp_die "Kafka storage format failed"; }
    fi
    bp_say "Kafka: starting Apache Kafka $BP_KAFKA_VERSION (KRaft) on $BP_KAFKA_BROKERS"
    KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}
    # shellcheck disable=SC2086
    nohup java $KAFKA_HEAP_OPTS -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$BP_ROOT/ops/kafka/log4j2.properties" \
        -cp "$libs/*" kafka.Kafka "$dir/server.properties" >"$dir/broker.log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    BP_STARTED_KAFKA=1
    if ! bp_wait_for 60 bp_kafka_ready; then
        tail -30 "$dir/broker.log" >&2
        bp_die "Kafka did not become ready within 60 s (log: $dir/broker.log)"
    fi
    bp_say "Kafka: ready"
}

bp_kafka_down() {
    local pid; pid=$(bp_kafka_pid) || return 0
    bp_say "Kafka: stopping (pid $pid)"
    kill "$pid" 2>/dev/null
    local i
    for i in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$BP_RUN_DIR/kafka/pid"
}

# ---- test dependencies from npm ------------------------------------------------------------------
# The web console's browser test (tests/browser) drives Debian's chromium with playwright-core, pinned
# in tests/browser/package-lock.json: npm ci when node_modules is missing or older than the lock file.
bp_browser_deps() {
    local dir=$BP_ROOT/tests/browser
    local installed=$dir/node_modules/.package-lock.json # npm writes it on every install
    if [ -f "$installed" ] && [ ! "$dir/package-lock.json" -nt "$installed" ]; then
        return 0
    fi
    command -v npm >/dev/null || bp_die "npm not found (install Debian's npm, or nodejs with npm)"
    bp_say "installing tests/browser's npm packages (npm ci)"
    mkdir -p "$BP_RUN_DIR"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >"$BP_RUN_DIR/npm.log" 2>&1 \
        || { tail -20 "$BP_RUN_DIR/npm.log" >&2; bp_die "npm ci failed in tests/browser (log: $BP_RUN_DIR/npm.log)"; }
    touch "$installed"
}

# ---- the project's own preparation --------------------------------------------------------------
bp_prepare() {
    mkdir -p "$BP_RUN_DIR"
    bp_install_deps
    bp_build
    bp_pg_up
    bp_kafka_up
    bp_say "migrating $(bp_pg_where "$BP_PG_DSN")"
    "$BP_BUILD_DIR/cli/batchpipe" migrate || bp_die "migration failed"
    bp_wait_for 60 "$BP_BUILD_DIR/cli/batchpipe" topics || bp_die "could not create the topics"
    "$BP_BUILD_DIR/cli/batchpipe" topics >/dev/null
}

bp_status() {
    local dsn=${BP_PG_DSN:-$(bp_pg_dsn_default)} rc=0
    # with a standby of ours running, its primary is the one that matters
    if [ -z "${BP_PG_DSN:-}" ] && [ -f "$BP_RUN_DIR/pg-standby/data/postmaster.pid" ] && [ -f "$BP_RUN_DIR/pg_dsn" ]; then
        dsn=$(cat "$BP_RUN_DIR/pg_dsn")
    fi
    if pg_isready -q -d "$dsn" -t 2; then
        echo "postgresql: up at $(bp_pg_where "$dsn")"
    elif [ -f "$BP_RUN_DIR/pg_dsn" ] && pg_isready -q -d "$(cat "$BP_RUN_DIR/pg_dsn")" -t 2; then
        echo "postgresql: up at $(bp_pg_where "$(cat "$BP_RUN_DIR/pg_dsn")") (private cluster in $BP_RUN_DIR/pg)"
    else
        echo "postgresql: down"; rc=1
    fi
    if [ -f "$BP_RUN_DIR/pg_read_dsn" ] && [ -f "$BP_RUN_DIR/pg-standby/data/postmaster.pid" ]; then
        local rdsn lag; rdsn=$(cat "$BP_RUN_DIR/pg_read_dsn")
        lag=$(psql -X -At -d "$rdsn" -c "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
              ELSE round(extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000) END" 2>/dev/null) \
            && echo "postgresql standby: up at $(bp_pg_where "$rdsn"), replay lag ${lag:-?} ms (BP_PG_READ_DSN=\"$rdsn\")" \
            || { echo "postgresql standby: down"; rc=1; }
    fi
    if bp_kafka_ready; then
        echo "kafka: up at $BP_KAFKA_BROKERS$(bp_kafka_pid >/dev/null && echo " (started by batchpipe, pid $(bp_kafka_pid))")"
    else
        echo "kafka: down"; rc=1
    fi
    return $rc
}
