#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster on 127.0.0.1 for the store adapter's tests (Debian's preinstalled binaries).
#
#   postgres.sh install          check the binaries are there (nothing to download)
#   postgres.sh start RUN_DIR    initdb into /tmp, start, create a password user and its database; writes
#                                RUN_DIR/postgres.pid, RUN_DIR/postgres.log and RUN_DIR/postgres.env
#                                (export CHAT4ALL_TEST_POSTGRES_URL=postgres://...). A no-op when RUN_DIR's
#                                server already runs. Port from $PORT, else a free one.
#   postgres.sh stop RUN_DIR     stop that server by its pid and remove its data dir
#
# The cluster runs as the `postgres` OS user (initdb refuses root), its data dir and unix socket under /tmp,
# fsync on, listening on 127.0.0.1 only. Its user may create databases, so each test can have its own.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
PG_USER=chat4all
PG_DB=chat4all

die() { echo "postgres.sh: $*" >&2; exit 1; }

install() {
    local missing=()
    for tool in initdb postgres pg_isready psql; do
        [[ -x "$PGBIN/$tool" ]] || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        die "PostgreSQL binaries missing in $PGBIN: ${missing[*]} (install Debian's postgresql-15, or set PGBIN)"
    fi
    id postgres >/dev/null 2>&1 || die "no 'postgres' OS user to run the cluster as (install Debian's postgresql-15)"
    echo "postgres.sh: PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') found in $PGBIN"
}

running_pid() { # prints the pid recorded in $1 when that process is alive
    local pid_file="$1/postgres.pid"
    [[ -f "$pid_file" ]] || return 1
    local pid
    pid="$(cat "$pid_file")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
    local run_dir="$1"
    mkdir -p "$run_dir"
    run_dir="$(cd "$run_dir" && pwd)"
    if pid="$(running_pid "$run_dir")"; then
        echo "postgres.sh: already running from $run_dir (pid $pid)"
        return 0
    fi
    install >/dev/null
    remove_data_dir "$run_dir" # left over by a server that died

    local data port password log="$run_dir/postgres.log"
    data="$(mktemp -d /tmp/chat4all-pg.XXXXXX)"
    echo "$data" >"$run_dir/postgres.datadir"
    chown postgres: "$data"
    chmod 700 "$data"
    port="${PORT:-$(free_port)}"
    password="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
    : >"$log"

    fail() {
        echo "postgres.sh: $*; last lines of $log:" >&2
        tail -n 30 "$log" >&2 || true
        stop "$run_dir" >/dev/null 2>&1 || true
        exit 1
    }

    runuser -u postgres -- "$PGBIN/initdb" -D "$data" -U postgres -E UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256 >>"$log" 2>&1 || fail "initdb failed"
    local socket_dir="$data"
    # A unix socket path is limited to ~107 bytes; past that, TCP only.
    ((${#data} + 20 > 100)) && socket_dir=""
    cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$socket_dir'
fsync = on
max_connections = 300
CONF

    # Started detached (its own session) by root, so the log can live in a RUN_DIR the postgres user cannot reach.
    setsid runuser -u postgres -- "$PGBIN/postgres" -D "$data" >>"$log" 2>&1 </dev/null &
    local launcher=$! pid=""
    for _ in $(seq 1 600); do # 60 s
        if [[ -z "$pid" && -f "$data/postmaster.pid" ]]; then
            pid="$(head -n 1 "$data/postmaster.pid")"
            echo "$pid" >"$run_dir/postgres.pid"
        fi
        if [[ -n "$pid" ]] && "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres 2>/dev/null; then
            break
        fi
        if [[ -n "$pid" ]]; then
            kill -0 "$pid" 2>/dev/null || fail "the server exited while starting"
        else
            kill -0 "$launcher" 2>/dev/null || fail "the server exited while starting"
        fi
        sleep 0.1
    done
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres || fail "not ready after 60 s"

    local psql_host="${socket_dir:-127.0.0.1}"
    PGPASSWORD="" runuser -u postgres -- "$PGBIN/psql" -X -q -h "$psql_host" -p "$port" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$password'" \
        -c "CREATE DATABASE $PG_DB OWNER $PG_USER" >>"$log" 2>&1 || fail "creating the user and database failed"

    local url="postgres://$PG_USER:$password@127.0.0.1:$port/$PG_DB"
    umask 077
    echo "export CHAT4ALL_TEST_POSTGRES_URL=$url" >"$run_dir/postgres.env"
    echo "postgres.sh: PostgreSQL on 127.0.0.1:$port (pid $pid, data $data); source $run_dir/postgres.env"
}

remove_data_dir() {
    local record="$1/postgres.datadir"
    [[ -f "$record" ]] || return 0
    local data
    data="$(cat "$record")"
    case "$data" in
        /tmp/chat4all-pg.*) rm -rf -- "$data" ;;
        *) echo "postgres.sh: not removing unexpected data dir '$data'" >&2 ;;
    esac
    rm -f -- "$record"
}

stop() {
    local run_dir="$1"
    [[ -d "$run_dir" ]] || { echo "postgres.sh: nothing to stop in $run_dir"; return 0; }
    # SIGTERM: smart shutdown (sessions end, then a shutdown checkpoint, slow on a busy disk); then immediate
    # (SIGQUIT: no checkpoint, harmless since the data dir goes next), then SIGKILL.
    stop_pid "$run_dir/postgres.pid" postgres.sh TERM QUIT KILL
    rm -f -- "$run_dir/postgres.pid" "$run_dir/postgres.env"
    remove_data_dir "$run_dir"
}

case "${1:-}" in
    install) install ;;
    start) [[ $# -eq 2 ]] || die "usage: $0 start RUN_DIR"; start "$2" ;;
    stop) [[ $# -eq 2 ]] || die "usage: $0 stop RUN_DIR"; stop "$2" ;;
    *) die "usage: $0 install | start RUN_DIR | stop RUN_DIR" ;;
esac
