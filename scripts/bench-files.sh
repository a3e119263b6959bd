#!/usr/bin/env bash
# File throughput benchmark: upload and download of one large file (default 1 GiB) on loopback against the
# release binary, with the server's RSS growth during the upload. Usage: scripts/bench-files.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
BIN=$(bash scripts/release-bin.sh)
# BENCH_DIR picks where the data directory and test files go (such as /dev/shm to take the disk out).
WORK=$(mktemp -d -p "${BENCH_DIR:-/tmp}")
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
"$BIN" serve --data-dir "$WORK/data" --http-addr "127.0.0.1:$PORT" --log-format json >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 200); do curl -sf "$BASE/health/live" >/dev/null && break; sleep 0.02; done
json() { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
curl -s -XPOST "$BASE/auth/register" -d '{"username":"bench","password":"bench-password"}' >/dev/null
TOKEN=$(curl -s -XPOST "$BASE/auth/token" -d '{"username":"bench","password":"bench-password"}' | json access_token)

echo "writing a ${SIZE_MIB} MiB test file"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$WORK/big.bin"
EXPECTED=$(sha256sum "$WORK/big.bin" | cut -d' ' -f1)
rss() { awk '/VmRSS/ {print $2}' /proc/$PID/status; }
IDLE=$(rss)
PEAK=$IDLE
( while kill -0 $PID 2>/dev/null; do r=$(rss); echo "$r"; sleep 0.05; done ) >"$WORK/rss.txt" &
SAMPLER=$!

START=$(date +%s.%N)
REPLY=$(curl -s -H "Authorization: Bearer $TOKEN" -F "file=@$WORK/big.bin" -F conversation_id=bench "$BASE/v1/files")
END=$(date +%s.%N)
kill $SAMPLER 2>/dev/null || true
PEAK=$(sort -n "$WORK/rss.txt" | tail -1)
CHECKSUM=$(json checksum <<<"$REPLY")
URL=$(json download_url <<<"$REPLY")

DSTART=$(date +%s.%N)
curl -s -o /dev/null "$URL"
DEND=$(date +%s.%N)
GOT=$(curl -s "$URL" | sha256sum | cut -d' ' -f1)  # a second, untimed download checks the bytes

python3 - "$SIZE_MIB" "$START" "$END" "$DSTART" "$DEND" "$IDLE" "$PEAK" <<'PY'
import sys
mib, s, e, ds, de, idle, peak = float(sys.argv[1]), *map(float, sys.argv[2:6]), int(sys.argv[6]), int(sys.argv[7])
mb = mib * 1024 * 1024 / 1e6
print(f"upload:   {mb / (e - s):8.0f} MB/s  ({mib:.0f} MiB in {e - s:.2f} s)")
print(f"download: {mb / (de - ds):8.0f} MB/s  ({mib:.0f} MiB in {de - ds:.2f} s, signed URL, no token)")
print(f"server RSS: idle {idle / 1024:.1f} MiB, peak during upload {peak / 1024:.1f} MiB, growth {(peak - idle) / 1024:.1f} MiB")
PY
[ "$CHECKSUM" = "sha256:$EXPECTED" ] && echo "checksum matches sha256sum" || { echo "CHECKSUM MISMATCH: $CHECKSUM vs $EXPECTED"; exit 1; }
[ "$GOT" = "$EXPECTED" ] && echo "downloaded bytes are identical" || { echo "DOWNLOAD MISMATCH"; exit 1; }
