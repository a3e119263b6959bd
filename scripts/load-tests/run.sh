#!/usr/bin/env bash
# Runs one k6 scenario against API_URL (default http://127.0.0.1:8080) and keeps its raw points and summary in
# results/<scenario>-<timestamp>/. QUICK=1 shortens any scenario to about 10 s.
#   scripts/load-tests/run.sh 02-baseline
#   QUICK=1 API_URL=http://127.0.0.1:8080 scripts/load-tests/run.sh 03-spike
set -euo pipefail
cd "$(dirname "$0")/../.."
SCENARIO=${1:?usage: run.sh <scenario> (01-warmup 02-baseline 03-spike 04-file-upload 05-stress 06-soak 07-capacity 08-websocket)}
SCRIPT=scripts/load-tests/$SCENARIO.js
[ -f "$SCRIPT" ] || { echo "no scenario $SCENARIO ($SCRIPT)" >&2; exit 2; }
K6=$(bash scripts/load-tests/install-k6.sh)
OUT=results/$SCENARIO-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
echo "running $SCENARIO against ${API_URL:-http://127.0.0.1:8080}${QUICK:+ (quick)} -> $OUT"
set +e
K6_NO_USAGE_REPORT=true "$K6" run --no-usage-report --quiet \
  --out "json=$OUT/points.json.gz" --summary-export "$OUT/summary.json" "$SCRIPT" | tee "$OUT/k6.txt"
STATUS=${PIPESTATUS[0]}
set -e
echo "$OUT"
exit "$STATUS"
