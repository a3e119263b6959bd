#!/usr/bin/env bash
# The tansu broker (Kafka protocol) for tests, on loopback, storing in SQLite under the run directory.
#
#   scripts/servers/tansu.sh install          # cargo install, once (20-30 min on 2 cores)
#   scripts/servers/tansu.sh start RUN_DIR    # PORT=… to choose the port, else a free one
#   scripts/servers/tansu.sh stop RUN_DIR
#
# start writes RUN_DIR/tansu.pid, RUN_DIR/tansu.log and RUN_DIR/tansu.env
# (`export CHAT4ALL_TEST_KAFKA_URL=kafka://127.0.0.1:PORT`); it is a no-op when the broker already runs.
# tansu 0.6.0 opens no listener besides the Kafka one (no metrics endpoint unless an OTLP endpoint is given).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

TANSU_VERSION=0.6.0

usage() {
    echo "usage: $0 install | start RUN_DIR | stop RUN_DIR" >&2
    exit 2
}

tansu_bin() {
    command -v tansu || { [ -x "$HOME/.cargo/bin/tansu" ] && echo "$HOME/.cargo/bin/tansu"; } || true
}

install() {
    if [ -n "$(tansu_bin)" ]; then
        echo "tansu: installed at $(tansu_bin)"
        return 0
    fi
    echo "tansu: installing tansu $TANSU_VERSION with cargo (this takes 20-30 min on 2 cores)..."
    cargo install --locked tansu --version "$TANSU_VERSION" --features dynostore,libsql
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

running() {
    local pid_file=$1
    [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

accepts() {
    python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$1" 2>/dev/null
}

# tansu 0.6's SQLite schema has no index on its `header` table, and every fetch that returns records looks up the
# first record's headers: without an index that is a scan of every header ever written, so the broker slowed down
# linearly with the data it held (5.5 ms per fetch after 27,000 records; it topped out near 200 msg/s end to end).
# The index makes the lookup a search (6 µs). The schema is tansu's own (`create table if not exists`), so the index
# stays with the database file; the broker creates its tables before it listens.
index_headers() {
    python3 - "$1" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
db.execute("create index if not exists header_record on header (topition, offset_id)")
db.commit()
PY
}

start() {
    local run_dir
    run_dir=$(mkdir -p "$1" && cd "$1" && pwd)
    local pid_file="$run_dir/tansu.pid" log_file="$run_dir/tansu.log" env_file="$run_dir/tansu.env"
    if running "$pid_file"; then
        echo "tansu: already running (pid $(cat "$pid_file"))"
        return 0
    fi
    local bin
    bin=$(tansu_bin)
    if [ -z "$bin" ]; then
        echo "tansu: not installed; run: $0 install" >&2
        exit 1
    fi
    local port=${PORT:-$(free_port)}
    mkdir -p "$run_dir/tansu"
    # tansu resolves a sqlite:// path against its working directory, so it runs from / with an absolute path.
    (
        cd /
        exec "$bin" broker \
            --listener-url "tcp://127.0.0.1:$port" \
            --advertised-listener-url "tcp://127.0.0.1:$port" \
            --storage-engine "sqlite://$run_dir/tansu/tansu.db"
    ) >"$log_file" 2>&1 &
    local pid=$!
    echo "$pid" >"$pid_file"
    for _ in $(seq 1 120); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "tansu: exited during start; log tail:" >&2
            tail -n 30 "$log_file" >&2
            rm -f "$pid_file"
            exit 1
        fi
        if accepts "$port"; then
            index_headers "$run_dir/tansu/tansu.db"
            echo "export CHAT4ALL_TEST_KAFKA_URL=kafka://127.0.0.1:$port" >"$env_file"
            echo "tansu: listening on 127.0.0.1:$port (pid $pid, data $run_dir/tansu)"
            return 0
        fi
        sleep 0.5
    done
    echo "tansu: not accepting connections on 127.0.0.1:$port after 60 s; log tail:" >&2
    tail -n 30 "$log_file" >&2
    kill "$pid" 2>/dev/null || true
    rm -f "$pid_file"
    exit 1
}

stop() {
    stop_pid "$1/tansu.pid" tansu
}

case "${1:-}" in
    install) install ;;
    start) [ $# -eq 2 ] || usage; start "$2" ;;
    stop) [ $# -eq 2 ] || usage; stop "$2" ;;
    *) usage ;;
esac
