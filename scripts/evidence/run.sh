#!/usr/bin/env bash
# One evidence scenario, end to end: starts a fresh local cluster (scripts/cluster/up.sh, ports shifted by 2000 so
# that a cluster already running is left alone), runs the scenario (scripts/evidence/run.py: steady load, the
# event, the message-by-message check), writes its report and chart into RESULTS (default docs/results/evidence),
# and stops the cluster (KEEP=1 keeps its logs). Exits non-zero when a goal is missed.
#   bash scripts/evidence/run.sh routers-scale|connectors-scale|api-scale|capacity-model|rolling-restart|router-kill|router-stop|api-kill|connector-down|broker-down|store-down [run.py options]
#   bash scripts/evidence/run.sh all      # each in turn, a fresh cluster for each
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
[ $# -ge 1 ] || { sed -n 2,7p "$0"; exit 2; }
SCENARIO=$1
shift
if [ "$SCENARIO" = all ]; then
  failed=0
  for scenario in routers-scale connectors-scale api-scale capacity-model rolling-restart router-kill router-stop api-kill connector-down broker-down store-down; do
    echo "=== $scenario"
    bash "$0" "$scenario" "$@" || failed=1
  done
  exit $failed
fi
# connectors-scale: each connector process paces WhatsApp at this rate, so that the channel is the limit.
[ "$SCENARIO" != connectors-scale ] || export CHAT4ALL_WHATSAPP_RATE_PER_SEC=${CHAT4ALL_WHATSAPP_RATE_PER_SEC:-20}
# routers-scale freezes its routers for seconds while a backlog builds: a long session keeps them in their group,
# and frequent heartbeats let a freeze last nearly all of it (the session counts from the last heartbeat). A longer
# fetch wait halves what a router spends asking for empty partitions, out of its small CPU quota.
[ "$SCENARIO" != routers-scale ] ||
  export CLUSTER_KAFKA_OPTIONS=${CLUSTER_KAFKA_OPTIONS:-session_timeout_ms=75000&heartbeat_ms=2000&fetch_wait_ms=500}
# api-scale and capacity-model measure capacity: one user sends it all, so the per-user rate limit is off.
case $SCENARIO in api-scale | capacity-model) export CHAT4ALL_RATE_LIMIT_PER_SEC=0 ;; esac
RUN_DIR=$(mktemp -d /tmp/chat4all-evidence.XXXXXX)
export CLUSTER_PORT_OFFSET=${CLUSTER_PORT_OFFSET:-2000}
finish() {
  status=$?
  if [ -n "${KEEP:-}" ]; then
    bash "$ROOT/scripts/cluster/down.sh" "$RUN_DIR" >/dev/null || true
    echo "the cluster's logs are kept in $RUN_DIR"
  else
    bash "$ROOT/scripts/cluster/down.sh" "$RUN_DIR" --purge >/dev/null || true
  fi
  exit $status
}
trap finish EXIT
[ -x "$ROOT/.venv/bin/python" ] || python3 -m venv "$ROOT/.venv"
"$ROOT/.venv/bin/python" -c 'import websockets' 2>/dev/null || "$ROOT/.venv/bin/pip" install -q 'websockets>=13'
bash "$ROOT/scripts/cluster/up.sh" "$RUN_DIR" >/dev/null
"$ROOT/.venv/bin/python" "$ROOT/scripts/evidence/run.py" "$SCENARIO" "$RUN_DIR" \
  --results "${RESULTS:-$ROOT/docs/results/evidence}" "$@"
