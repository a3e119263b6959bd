#!/usr/bin/env bash
# A guided demonstration of Chat4All in distributed mode, about ten minutes, narrated step by step: it starts the
# local cluster (scripts/cluster/up.sh: broker, PostgreSQL, object storage, two api processes behind nginx, two
# routers, a connector per channel, Prometheus), sends messages and shows history and real-time delivery, puts
# steady traffic on, adds a router and kills one, takes the WhatsApp channel down and brings it back, and ends with
# where to look. It waits for Enter before each step unless --auto, and stops everything it started on exit.
#   bash scripts/demo.sh            # step by step
#   bash scripts/demo.sh --auto     # straight through (as CI-style check or a recording)
#   bash scripts/demo.sh --keep     # leave the cluster running at the end (stop: scripts/cluster/down.sh DIR)
# CLUSTER_PORT_OFFSET=N shifts every port (default 0: the api on 127.0.0.1:8080, Prometheus on :9090).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
AUTO= KEEP=
for arg in "$@"; do
  case $arg in
    --auto) AUTO=1 ;;
    --keep) KEEP=1 ;;
    *) sed -n 2,10p "$0"; exit 2 ;;
  esac
done
OFFSET=${CLUSTER_PORT_OFFSET:-0}
export CLUSTER_PORT_OFFSET=$OFFSET
port() { echo $(($1 + OFFSET)); }
if curl -s -o /dev/null -m 1 "http://127.0.0.1:$(port 8080)/"; then
  echo "something already listens on 127.0.0.1:$(port 8080); run with CLUSTER_PORT_OFFSET=100 (or another shift)" >&2
  exit 1
fi
RUN_DIR=$(mktemp -d /tmp/chat4all-demo.XXXXXX)
BACKGROUND=()

bold=$'\e[1m' dim=$'\e[2m' reset=$'\e[0m'
[ -t 1 ] || bold= dim= reset=
STEP=0
step() {
  STEP=$((STEP + 1))
  printf '\n%s== %d. %s%s\n' "$bold" "$STEP" "$1" "$reset"
  shift
  echo "$*" | fold -s -w 100
  if [ -z "$AUTO" ]; then read -r -p "${dim}[Enter to go on, Ctrl-C to stop]${reset} " _ </dev/tty; fi
}
say() { echo "$*" | fold -s -w 100; }
run() {
  printf '%s$ %s%s\n' "$dim" "$*" "$reset"
  "$@"
}

cleanup() {
  status=$?
  for pid in "${BACKGROUND[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$KEEP" ]; then
    echo
    say "The cluster keeps running in $RUN_DIR; stop it with: bash scripts/cluster/down.sh $RUN_DIR --purge"
  else
    bash "$ROOT/scripts/cluster/down.sh" "$RUN_DIR" --purge >/dev/null 2>&1 || true
    echo
    say "Everything the demo started is stopped and $RUN_DIR is removed."
  fi
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# `chat4all client` as USER: each user keeps its saved login in its own folder.
as() {
  local user=$1
  shift
  XDG_CONFIG_HOME=$RUN_DIR/users/$user "$CHAT4ALL_BIN" client --url "$API_URL" "$@"
}
# A router's partitions of [messages], read from its own /metrics.
owned() {
  curl -s -m 2 "http://127.0.0.1:$1/metrics" \
    | awk '/^consumer_partitions_owned\{consumer="router\/messages"\}/ {print $2; found=1} END {if (!found) print "-"}'
}
routers() {
  for name in "$@"; do
    printf '  %-10s partitions of [messages]: %s\n' "$name" "$(owned "$(awk -F'\t' -v n="$name" '$1 == n {print $2}' "$RUN_DIR/processes.tsv" | tail -1)")"
  done
}
# One Prometheus instant query, printed as "labels value" lines.
promql() {
  printf '%s  %s%s\n' "$dim" "$1" "$reset"
  curl -s -m 5 "$PROMETHEUS_URL/api/v1/query" --data-urlencode "query=$1" | python3 -c '
import json, sys
for r in json.load(sys.stdin)["data"]["result"]:
    labels = ",".join(k + "=" + v for k, v in sorted(r["metric"].items()) if k not in ("job", "mode"))
    print("   ", labels or "(total)", " %.4g" % float(r["value"][1]))'
}
# Waits up to $2 seconds for the message $1 to reach a status in $3 (a regex); prints the seconds it took.
wait_status() {
  local began=$SECONDS status=
  while [ $((SECONDS - began)) -lt "$2" ]; do
    status=$(as alice --json show "$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])')
    if [[ $status =~ ^($3)$ ]]; then
      say "  $status after $((SECONDS - began)) s"
      return 0
    fi
    sleep 1
  done
  say "  still $status after $2 s"
  return 1
}

step "Start the local cluster" \
  "One binary, one process per role: two api processes behind nginx, two routers, a connector per channel," \
  "against a Kafka-protocol broker (tansu), PostgreSQL and S3 object storage (SeaweedFS), with Prometheus" \
  "scraping every process. Missing servers are installed and the release binary is built on first use."
run bash "$ROOT/scripts/cluster/up.sh" "$RUN_DIR"
# shellcheck disable=SC1091
source "$RUN_DIR/cluster.env"
# shellcheck disable=SC1091
CHAT4ALL_BIN=$(source "$RUN_DIR/roles.env" && echo "$CHAT4ALL_BIN")
run bash "$ROOT/scripts/cluster/status.sh" "$RUN_DIR"

step "Two users, and bob listening in real time" \
  "alice and bob register through nginx (either api process answers); bob opens a WebSocket with" \
  "'chat4all client watch', which prints each new message and status change as it happens."
export CHAT4ALL_PASSWORD=demo-password-1
for user in alice bob; do
  as "$user" register --username "$user" >/dev/null
  run as "$user" login --username "$user"
done
BOB_ID=$(as bob --json login --username bob | python3 -c 'import json, sys; print(json.load(sys.stdin)["user_id"])')
# Started directly, not through `as`, so that its pid is the client's own and the clean-up stops it.
XDG_CONFIG_HOME=$RUN_DIR/users/bob "$CHAT4ALL_BIN" client --url "$API_URL" watch >"$RUN_DIR/bob-watch.log" 2>&1 &
BACKGROUND+=($!)

step "Send, and see it pushed and stored" \
  "alice sends three messages in a new conversation with bob. Each is answered 202 once the broker holds it;" \
  "a router stores it with the next seq of the conversation and delivers it to bob, and the api process that" \
  "holds bob's socket pushes it there."
CONVERSATION=demo-$(date +%s)
for text in "Hello bob" "This went through Kafka and PostgreSQL" "and reached you on a WebSocket"; do
  run as alice send --conversation "$CONVERSATION" --to "$BOB_ID" "$text"
done
for _ in $(seq 1 50); do
  [ "$(grep -c "reached you" "$RUN_DIR/bob-watch.log" || true)" -ge 1 ] && break
  sleep 0.2
done
echo
say "What bob's 'watch' printed:"
sed 's/^/  /' "$RUN_DIR/bob-watch.log"
echo
say "The conversation's history, in seq order:"
run as alice history "$CONVERSATION"
FIRST=$(as alice --json history "$CONVERSATION" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print((d["messages"] if isinstance(d, dict) else d)[0]["message_id"])')
run as alice show "$FIRST"

step "Steady traffic" \
  "A load generator now sends 100 messages a second for three minutes (open model: the rate does not slow" \
  "down when the system does) between 50 users of its own. Prometheus scrapes every process every 5 s."
"$CHAT4ALL_BIN" loadtest capacity --url "$API_URL" --start-rate 100 --step-rate 100 --max-rate 100 \
  --step-secs 180 --slo-p99-ms 60000 --out "$RUN_DIR/traffic" >"$RUN_DIR/traffic.log" 2>&1 &
BACKGROUND+=($!)
sleep 20
promql 'sum by (instance_name) (rate(messages_accepted_total[15s]))'
promql 'sum by (instance_name) (rate(messages_consumed_total{topic="messages"}[15s]))'
promql 'max by (group) (kafka_consumer_lag)'

step "Scale out: a third router" \
  "Routers share the 8 partitions of [messages] through a consumer group. A new process joins, and the" \
  "group hands it some of the others' partitions (cooperative-sticky: the rest keep flowing)."
say "before:"
routers router-1 router-2
run bash "$ROOT/scripts/cluster/role.sh" "$RUN_DIR" router-3 "$(port 8102)" router
sleep 10
say "after:"
routers router-1 router-2 router-3

step "Fail: kill router-2 with SIGKILL" \
  "A killed member cannot say goodbye: the broker notices when its session times out (6 s), then the" \
  "survivors take its partitions and resume from their last committed offsets. Nothing acknowledged is lost."
kill -9 "$(cat "$RUN_DIR/router-2.pid")"
KILLED=$SECONDS
until [ "$(( $(owned "$(port 8082)" | tr -d -) + $(owned "$(port 8102)" | tr -d -) ))" -ge 8 ] 2>/dev/null; do
  [ $((SECONDS - KILLED)) -lt 60 ] || break
  sleep 0.5
done
say "partitions reassigned $((SECONDS - KILLED)) s after the kill:"
routers router-1 router-3

step "A channel goes down, and comes back" \
  "The WhatsApp channel is made unavailable for 20 s (an operator fault on the simulated channel). A message" \
  "to a WhatsApp number goes PENDING: its connector retries with backoff, and after repeated failures the" \
  "circuit breaker opens and only probes the channel now and then (store-and-forward). It is DELIVERED once" \
  "the channel answers again; Instagram carries on."
run curl -s -X POST "$API_URL/admin/channels/whatsapp/fault" -H "Authorization: Bearer $ADMIN_TOKEN" \
  -H 'Content-Type: application/json' -d '{"mode":"down","duration_secs":20}'
echo
WA=$(as alice --json send --conversation "$CONVERSATION-wa" --to whatsapp:+5511999990000 "Hi from the demo" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["message_id"])')
say "message $WA to whatsapp:+5511999990000:"
wait_status "$WA" 30 "PENDING|FAILED" || true
# /health shows the breaker once it opens (after a few failed tries).
for _ in $(seq 1 30); do
  BREAKER=$(curl -s "$API_URL/health" | python3 -c '
import json, sys
c = json.load(sys.stdin)["components"]["connector_whatsapp"]
print({k: c[k] for k in ("status", "circuit_breaker", "pending") if k in c})')
  [[ $BREAKER == *CLOSED* ]] || break
  sleep 0.5
done
say "  /health connector_whatsapp: $BREAKER"
say "waiting for the channel to return and the breaker's next probe (up to 90 s)..."
wait_status "$WA" 90 "DELIVERED|READ" || true
run as alice show "$WA"

step "Where to look" \
  "Every figure above is also in Prometheus ($PROMETHEUS_URL/graph), for instance:"
promql 'sum by (group) (kafka_consumer_lag)'
promql 'sum by (consumer, change) (increase(consumer_rebalances_total[5m]))'
promql 'max by (channel) (circuit_breaker_state)'
promql 'sum(rate(http_requests_total{status=~"5.."}[1m]))'
echo
say "One correlation id follows the WhatsApp message from the api through the router to the connector:"
cat "$RUN_DIR"/api-*.log "$RUN_DIR"/router-*.log "$RUN_DIR"/connector-*.log | python3 -c '
import json, sys
events = []
for line in sys.stdin:
    try:
        events.append(json.loads(line))
    except ValueError:
        pass
ids = {e["correlation_id"] for e in events if e.get("message_id") == sys.argv[1] and e.get("correlation_id")}
trail = sorted((e for e in events if e.get("correlation_id") in ids), key=lambda e: e.get("timestamp", ""))
for e in trail[:12]:
    print("  ", e.get("timestamp", "")[11:23], e.get("service", ""), e.get("message", ""), e.get("status", ""))
print("   correlation_id:", ", ".join(sorted(ids)) or "none found")' "$WA"
echo
say \
  "Dashboards: monitoring/grafana/dashboards/ (System Overview, Component Health, Connectors, Infrastructure);" \
  "deploy/docker-compose.yml runs them with Grafana. Alerts: monitoring/alerts.yml, each explained in" \
  "docs/operations.md. The measured scaling and failover runs: docs/results/evidence/, summed up in" \
  "docs/report.md (regenerated by scripts/report.sh)."
step "Done" "Stopping the cluster."
