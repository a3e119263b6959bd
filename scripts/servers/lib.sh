# Shared by the server and cluster scripts (source it).

# stop_pid PIDFILE NAME [SIGNAL…]: stops the process of PIDFILE by sending each signal in turn (default TERM then
# KILL), waiting up to 15 s after each until it is gone; signals its whole process group when it leads one (a
# server started with setsid, children included). Removes PIDFILE; says what it did.
stop_pid() {
    local pid_file=$1 name=$2
    shift 2
    local signals=(TERM KILL)
    if [ $# -gt 0 ]; then signals=("$@"); fi
    if [ ! -f "$pid_file" ]; then
        echo "$name: not running"
        return 0
    fi
    local pid signal
    pid=$(cat "$pid_file")
    for signal in "${signals[@]}"; do
        kill -0 "$pid" 2>/dev/null || break
        kill "-$signal" -- "-$pid" 2>/dev/null || kill "-$signal" "$pid" 2>/dev/null || true
        for _ in $(seq 1 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && echo "$name: pid $pid still up 15 s after SIG$signal" >&2
    done
    rm -f "$pid_file"
    echo "$name: stopped (pid $pid)"
}
