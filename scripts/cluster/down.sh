#!/usr/bin/env bash
# Stops the cluster of RUN_DIR (see up.sh) by pid: the chat4all processes first (they finish their batch and
# commit), then nginx and Prometheus, then the servers. Keeps RUN_DIR's logs; `--purge` also deletes RUN_DIR.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUN_DIR=${1:-$ROOT/cluster}
[ -d "$RUN_DIR" ] || { echo "no cluster in $RUN_DIR"; exit 0; }
# shellcheck source=../servers/lib.sh
source "$ROOT/scripts/servers/lib.sh"

for pidfile in "$RUN_DIR"/api-*.pid "$RUN_DIR"/router-*.pid "$RUN_DIR"/connector-*.pid \
  "$RUN_DIR"/nginx.pid "$RUN_DIR"/prometheus.pid; do
  [ -e "$pidfile" ] && stop_pid "$pidfile" "$(basename "$pidfile" .pid)"
done
for server in seaweedfs postgres tansu; do
  bash "$ROOT/scripts/servers/$server.sh" stop "$RUN_DIR" || true
done
if [ "${2:-}" = --purge ]; then rm -rf "$RUN_DIR"; fi
echo "cluster in $RUN_DIR stopped"
