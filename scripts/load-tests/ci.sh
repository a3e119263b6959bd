#!/usr/bin/env bash
# Every k6 scenario in QUICK mode (~10 s each) against a fresh `chat4all serve` on loopback, then
# `chat4all loadtest report` over all of them; fails when any threshold failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$(bash scripts/release-bin.sh)
bash scripts/load-tests/install-k6.sh >/dev/null
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The scenarios measure capacity with a handful of users sending without think time, so the per-user rate limit
# (500/s by default, tested on its own in crates/server/tests) is off, or it would be what they measure.
"$BIN" serve --data-dir "$WORK/data" --http-addr "127.0.0.1:$PORT" --rate-limit-per-sec 0 --log-format json \
  >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$PORT/health/live" >/dev/null && break; sleep 0.02; done
RUNS=()
for scenario in 01-warmup 02-baseline 03-spike 04-file-upload 05-stress 06-soak 07-capacity 08-websocket; do
  OUT=$(QUICK=1 API_URL="http://127.0.0.1:$PORT" bash scripts/load-tests/run.sh "$scenario" | tail -1) || true
  RUNS+=("$OUT")
done
"$BIN" loadtest report --summary-dir results "${RUNS[@]}"
