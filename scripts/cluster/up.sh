#!/usr/bin/env bash
# Starts a local Chat4All cluster on loopback, everything of it kept in RUN_DIR (default ./cluster):
#   the tansu broker, PostgreSQL and SeaweedFS (scripts/servers/*.sh, installed when missing),
#   two api processes behind nginx, two routers, one connector per channel, and Prometheus scraping them all.
# RUN_DIR then holds each process's log, one pid file per process named by role and number (api-1.pid,
# router-2.pid, connector-whatsapp-1.pid, nginx.pid, prometheus.pid, …), processes.tsv (name, port, role arguments),
# roles.env (what scripts/cluster/role.sh needs to start a role process again) and
# cluster.env (API_URL through nginx, API_1_URL, API_2_URL, PROMETHEUS_URL, ADMIN_TOKEN). Stop it with
# scripts/cluster/down.sh RUN_DIR; see it with scripts/cluster/status.sh RUN_DIR.
# CLUSTER_PORT_OFFSET=N shifts every port (two clusters side by side); CHAT4ALL_BIN skips the release build;
# CLUSTER_KAFKA_OPTIONS adds options to the role processes' kafka URL (such as session_timeout_ms=30000).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RUN_DIR=${1:-$ROOT/cluster}
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)
OFFSET=${CLUSTER_PORT_OFFSET:-0}
port() { echo $(($1 + OFFSET)); }
API_PORT=$(port 8080)
PROMETHEUS_PORT=$(port 9090)
CHANNELS=${CLUSTER_CHANNELS:-whatsapp instagram}

# Installs Debian's PACKAGE when COMMAND is missing.
need() {
  command -v "$1" >/dev/null && return 0
  echo "installing Debian's $2"
  apt-get install -y -qq --no-install-recommends "$2" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$2" >/dev/null; }
}
need nginx nginx-light
need prometheus prometheus

[ -n "${CHAT4ALL_BIN:-}" ] || echo "building the release binary with the distributed adapters (the first build takes several minutes)"
CHAT4ALL_BIN=$(bash "$ROOT/scripts/release-bin.sh" --features distributed)

: >"$RUN_DIR/processes.tsv"
for server in tansu postgres seaweedfs; do
  bash "$ROOT/scripts/servers/$server.sh" install
  bash "$ROOT/scripts/servers/$server.sh" start "$RUN_DIR"
  # shellcheck disable=SC1090
  source "$RUN_DIR/$server.env"
done

# Secrets shared by the api processes, generated once per cluster.
if [ ! -f "$RUN_DIR/secrets.env" ]; then
  umask 077
  printf 'export CHAT4ALL_JWT_SECRET=%s\nexport CHAT4ALL_ADMIN_TOKEN=%s\n' \
    "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
    "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$RUN_DIR/secrets.env"
  umask 022
fi
# shellcheck disable=SC1091
source "$RUN_DIR/secrets.env"
# Everything a role process needs, for role.sh (here and when a scenario brings a process back); it holds the
# secrets, so only the owner reads it.
umask 077
# Quoted (%q): URLs carry `&` between their options.
printf 'export %s=%q\n' \
  CHAT4ALL_BIN "$CHAT4ALL_BIN" \
  CHAT4ALL_JWT_SECRET "$CHAT4ALL_JWT_SECRET" \
  CHAT4ALL_ADMIN_TOKEN "$CHAT4ALL_ADMIN_TOKEN" \
  CHAT4ALL_EVENT_LOG "$CHAT4ALL_TEST_KAFKA_URL${CLUSTER_KAFKA_OPTIONS:+/?$CLUSTER_KAFKA_OPTIONS}" \
  CHAT4ALL_STORE "$CHAT4ALL_TEST_POSTGRES_URL" \
  CHAT4ALL_OBJECTS "$CHAT4ALL_TEST_S3_URL" \
  CHAT4ALL_PUBLIC_URL "http://127.0.0.1:$API_PORT" \
  CHAT4ALL_LOG_FORMAT json \
  CHAT4ALL_DATA_DIR "$RUN_DIR/data" >"$RUN_DIR/roles.env"
umask 022
start() { bash "$ROOT/scripts/cluster/role.sh" "$RUN_DIR" "$@"; }

start router-1 "$(port 8082)" router
start router-2 "$(port 8092)" router
channel_port=8083
for channel in $CHANNELS; do
  start "connector-$channel-1" "$(port $channel_port)" connector "$channel"
  channel_port=$((channel_port + 1))
done
start api-1 "$(port 8180)" api
start api-2 "$(port 8181)" api

# nginx in front of the two api processes: WebSocket upgrades pass through, uploads stream unbuffered.
cat >"$RUN_DIR/nginx.conf" <<NGINX
worker_processes 1;
pid $RUN_DIR/nginx.pid;
error_log $RUN_DIR/nginx.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $RUN_DIR/nginx-tmp;
  proxy_temp_path $RUN_DIR/nginx-tmp;
  upstream chat4all_api {
    server 127.0.0.1:$(port 8180) max_fails=1 fail_timeout=2s;
    server 127.0.0.1:$(port 8181) max_fails=1 fail_timeout=2s;
    keepalive 64;
  }
  map \$http_upgrade \$connection_upgrade { default upgrade; '' ''; }
  server {
    listen 127.0.0.1:$API_PORT;
    client_max_body_size 0;
    proxy_request_buffering off;
    proxy_buffering off;
    proxy_http_version 1.1;
    proxy_read_timeout 3600s;
    location / {
      proxy_pass http://chat4all_api;
      proxy_set_header Host \$host;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_next_upstream error timeout http_502 http_503;
    }
  }
}
NGINX
mkdir -p "$RUN_DIR/nginx-tmp"
if ! { [ -f "$RUN_DIR/nginx.pid" ] && kill -0 "$(cat "$RUN_DIR/nginx.pid")" 2>/dev/null; }; then
  nginx -c "$RUN_DIR/nginx.conf" -p "$RUN_DIR" -e "$RUN_DIR/nginx.log"
fi
printf 'nginx\t%s\t\n' "$API_PORT" >>"$RUN_DIR/processes.tsv"

# Prometheus: every process, one job, a role label per target (the dashboards and alerts apply unchanged).
{
  printf 'global: {scrape_interval: 5s, evaluation_interval: 5s}\nrule_files: ["%s"]\n' "$ROOT/monitoring/alerts.yml"
  printf 'scrape_configs:\n  - job_name: chat4all\n    static_configs:\n'
  while IFS=$'\t' read -r name listen _; do
    [ "$name" = nginx ] && continue
    printf '      - targets: ["127.0.0.1:%s"]\n        labels: {mode: distributed, role: %s, instance_name: %s}\n' \
      "$listen" "${name%-*}" "$name"
  done <"$RUN_DIR/processes.tsv"
} >"$RUN_DIR/prometheus.yml"
if ! { [ -f "$RUN_DIR/prometheus.pid" ] && kill -0 "$(cat "$RUN_DIR/prometheus.pid")" 2>/dev/null; }; then
  nohup prometheus --config.file="$RUN_DIR/prometheus.yml" --storage.tsdb.path="$RUN_DIR/prometheus" \
    --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" >>"$RUN_DIR/prometheus.log" 2>&1 &
  echo $! >"$RUN_DIR/prometheus.pid"
fi
printf 'prometheus\t%s\t\n' "$PROMETHEUS_PORT" >>"$RUN_DIR/processes.tsv"

cat >"$RUN_DIR/cluster.env" <<ENV
export API_URL=http://127.0.0.1:$API_PORT
export API_1_URL=http://127.0.0.1:$(port 8180)
export API_2_URL=http://127.0.0.1:$(port 8181)
export PROMETHEUS_URL=http://127.0.0.1:$PROMETHEUS_PORT
export ADMIN_TOKEN=$CHAT4ALL_ADMIN_TOKEN
export KAFKA_URL=$CHAT4ALL_TEST_KAFKA_URL
export POSTGRES_URL=$CHAT4ALL_TEST_POSTGRES_URL
ENV
for _ in $(seq 1 100); do
  curl -fs -o /dev/null "http://127.0.0.1:$API_PORT/health/live" && break
  sleep 0.1
done
echo "cluster up: API_URL=http://127.0.0.1:$API_PORT, Prometheus http://127.0.0.1:$PROMETHEUS_PORT (source $RUN_DIR/cluster.env)"
