#!/usr/bin/env bash
# Proves the observability against a real Prometheus: installs Debian's prometheus package when missing, starts
# `chat4all serve` and Prometheus on loopback, drives ~60 s of traffic (with a channel outage), then checks the
# configuration, rules and metrics with promtool, evaluates every dashboard query, and follows one correlation id
# through the logs. Prints "observability: N passed, M failed". DURATION=30 shortens the traffic.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  echo "installing Debian's prometheus package"
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
fi
BIN=$(bash scripts/release-bin.sh)
exec python3 scripts/observability/verify.py --bin "$BIN" --duration "${DURATION:-60}"
