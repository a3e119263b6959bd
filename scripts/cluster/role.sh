#!/usr/bin/env bash
# Starts one chat4all process of the cluster in RUN_DIR (see up.sh) with the settings up.sh wrote to
# RUN_DIR/roles.env, and waits until it answers /health/live. A name processes.tsv already lists starts again as
# listed there (how the evidence scenarios bring back a process they stopped); a new name needs its port and role.
#   scripts/cluster/role.sh RUN_DIR router-2                  # again, as processes.tsv lists it
#   scripts/cluster/role.sh RUN_DIR router-3 8102 router      # a new process
set -euo pipefail
RUN_DIR=$1 NAME=$2
shift 2
# shellcheck disable=SC1091
source "$RUN_DIR/roles.env"
listed=$(awk -F'\t' -v n="$NAME" '$1 == n' "$RUN_DIR/processes.tsv" 2>/dev/null | tail -1)
if [ $# -eq 0 ]; then
  [ -n "$listed" ] || { echo "$NAME is not in $RUN_DIR/processes.tsv: give its port and role" >&2; exit 2; }
  LISTEN=$(cut -f2 <<<"$listed")
  read -r -a ARGS <<<"$(cut -f3 <<<"$listed")"
else
  LISTEN=$1
  shift
  ARGS=("$@")
  [ -n "$listed" ] || printf '%s\t%s\t%s\n' "$NAME" "$LISTEN" "${ARGS[*]}" >>"$RUN_DIR/processes.tsv"
fi
PID_FILE=$RUN_DIR/$NAME.pid
if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
  echo "$NAME is already running"
else
  CHAT4ALL_HTTP_ADDR=127.0.0.1:$LISTEN nohup "$CHAT4ALL_BIN" "${ARGS[@]}" >>"$RUN_DIR/$NAME.log" 2>&1 &
  echo $! >"$PID_FILE"
fi
for _ in $(seq 1 300); do
  if curl -fs -o /dev/null "http://127.0.0.1:$LISTEN/health/live"; then
    echo "$NAME up on 127.0.0.1:$LISTEN"
    exit 0
  fi
  kill -0 "$(cat "$PID_FILE")" 2>/dev/null || break
  sleep 0.1
done
echo "$NAME did not start; the end of $RUN_DIR/$NAME.log:" >&2
tail -20 "$RUN_DIR/$NAME.log" >&2
exit 1
