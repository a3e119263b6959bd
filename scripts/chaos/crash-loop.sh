#!/usr/bin/env bash
# Crash loop: steady load against `chat4all serve`, SIGKILL at random moments KILLS times (default 20), restart on
# the same data directory each time, then check that every acknowledged message is in the history exactly once, in
# seq order without gaps, in a final status. Prints the counts; exits non-zero on any loss or duplicate.
#   scripts/chaos/crash-loop.sh            # 20 kills
#   KILLS=3 scripts/chaos/crash-loop.sh    # the short version CI runs
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=$(bash scripts/release-bin.sh)
exec python3 scripts/chaos/crash_check.py --kills "${KILLS:-20}" --bin "$BIN"
