#!/usr/bin/env bash
# Shows each process of the cluster in RUN_DIR (see up.sh): its pid, whether it runs, and its /health status.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUN_DIR=${1:-$ROOT/cluster}
[ -f "$RUN_DIR/processes.tsv" ] || { echo "no cluster in $RUN_DIR"; exit 1; }
printf '%-24s %-8s %-8s %s\n' PROCESS PID STATE HEALTH
failed=0
for pidfile in "$RUN_DIR"/*.pid; do
  name=$(basename "$pidfile" .pid)
  pid=$(cat "$pidfile")
  state=running
  kill -0 "$pid" 2>/dev/null || { state=DEAD; failed=1; }
  listen=$(awk -F'\t' -v n="$name" '$1 == n {print $2}' "$RUN_DIR/processes.tsv" | tail -1)
  health=-
  case $name in
    api-*|router-*|connector-*)
      health=$(curl -s -m 3 "http://127.0.0.1:$listen/health" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(d["status"], " ".join(k + "=" + v["status"] for k, v in d["components"].items()))' 2>/dev/null || echo unreachable)
      ;;
  esac
  printf '%-24s %-8s %-8s %s\n' "$name" "$pid" "$state" "$health"
done
exit $failed
