#!/usr/bin/env bash
# Prints the path of the chat4all release binary the scripts run. CHAT4ALL_BIN names one already built (CI builds
# once, with the distributed adapters, and every script reuses it); otherwise the release build runs first, with
# any arguments given here passed to cargo (e.g. `--features distributed`). Build output goes to stderr.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${CHAT4ALL_BIN:-}" ]; then
  [ -x "$CHAT4ALL_BIN" ] || { echo "CHAT4ALL_BIN=$CHAT4ALL_BIN is not an executable" >&2; exit 1; }
  echo "$CHAT4ALL_BIN"
  exit 0
fi
(cd "$ROOT" && cargo build --release --locked --quiet -p chat4all-server --bin chat4all "$@") >&2
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET" in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
echo "$TARGET/release/chat4all"
