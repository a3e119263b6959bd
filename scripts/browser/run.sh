#!/usr/bin/env bash
# The web app in a real browser: installs Debian's Chromium and the pinned playwright-core when missing (both
# idempotent), starts `chat4all serve` on a fresh data directory, and runs chat.test.mjs (two users chatting).
# Screenshots go to ARTEFACTS (default target/artefacts/browser); UPDATE_DOCS=1 also copies them to
# docs/screenshots/. Prints "N passed, M failed"; exits non-zero on a failure.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/scripts/browser
if ! command -v chromium >/dev/null; then
  echo "installing Debian's chromium"
  apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
fi
[ -d "$HERE/node_modules/playwright-core" ] || (cd "$HERE" && npm ci --no-audit --no-fund --silent)
BIN=$(bash "$ROOT/scripts/release-bin.sh")
DATA=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SHOTS=${ARTEFACTS:-$ROOT/target/artefacts}/browser
"$BIN" serve --data-dir "$DATA" --http-addr "127.0.0.1:$PORT" --log-format json >"$DATA/server.log" 2>&1 &
PID=$!
finish() {
  status=$?
  kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  [ $status -eq 0 ] || { echo "server log (last 20 lines):"; tail -20 "$DATA/server.log"; grep -E "\"status\":[45]" "$DATA/server.log" | tail -5; }
  rm -rf "$DATA"
  exit $status
}
trap finish EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health/live" >/dev/null && break; sleep 0.1; done
node "$HERE/chat.test.mjs" "http://127.0.0.1:$PORT" "$SHOTS"
if [ -n "${UPDATE_DOCS:-}" ]; then
  mkdir -p "$ROOT/docs/screenshots"
  cp "$SHOTS"/*.png "$ROOT/docs/screenshots/"
  echo "screenshots copied to docs/screenshots/"
fi
