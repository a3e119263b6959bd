#!/usr/bin/env bash
# The cluster's end-to-end test: starts a cluster in a temporary RUN_DIR (ports shifted by 1000 so that a
# cluster already running is left alone), runs e2e_check.py against it, and stops it, printing the processes'
# log tails on failure.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUN_DIR=$(mktemp -d /tmp/chat4all-cluster.XXXXXX)
export CLUSTER_PORT_OFFSET=${CLUSTER_PORT_OFFSET:-1000}
finish() {
  status=$?
  if [ $status -ne 0 ]; then
    for log in "$RUN_DIR"/*.log; do echo "--- $log"; tail -5 "$log"; done
  fi
  bash "$ROOT/scripts/cluster/down.sh" "$RUN_DIR" --purge >/dev/null || true
  exit $status
}
trap finish EXIT
[ -x "$ROOT/.venv/bin/python" ] || python3 -m venv "$ROOT/.venv"
"$ROOT/.venv/bin/python" -c 'import websockets' 2>/dev/null || "$ROOT/.venv/bin/pip" install -q 'websockets>=13'
bash "$ROOT/scripts/cluster/up.sh" "$RUN_DIR"
"$ROOT/.venv/bin/python" "$ROOT/scripts/cluster/e2e_check.py" "$RUN_DIR" "$@"
bash "$ROOT/scripts/cluster/status.sh" "$RUN_DIR"
