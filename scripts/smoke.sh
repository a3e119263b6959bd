#!/usr/bin/env bash
# End-to-end check of the release binary, exactly as a user would try it: start `chat4all serve` on a fresh data
# directory, register, send, read history, mark read, restart, check idempotency. Prints "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
# CHAT4ALL_BIN runs another build (such as one with the distributed adapters; CHAT4ALL_* settings pass through).
BIN=$(bash scripts/release-bin.sh) || exit 1
DATA=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
PID=""
passed=0; failed=0
check() { if [ "$1" = "$2" ]; then passed=$((passed+1)); echo "ok   $3"; else failed=$((failed+1)); echo "FAIL $3: expected [$2], got [$1]"; fi; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$DATA"; }
trap cleanup EXIT

start() {
  local t0; t0=$(date +%s%N)
  "$BIN" serve --data-dir "$DATA" --http-addr "127.0.0.1:$PORT" --log-format json >>"$DATA/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 200); do curl -sf "$BASE/health" >/dev/null && break; sleep 0.01; done
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  echo "ready in ${ms} ms"
  check "$([ "$ms" -lt 2000 ] && echo fast)" fast "ready in under 2 s"
}
stop() { kill -TERM "$PID"; wait "$PID"; check "$?" 0 "SIGTERM exits 0"; PID=""; }
post() { curl -s -X POST "$BASE$1" -H "Authorization: Bearer ${3:-}" -H 'Content-Type: application/json' -d "$2" "${@:4}"; }
get() { curl -s "$BASE$1" -H "Authorization: Bearer $2"; }
status_of() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
# Polls until the python expression over the history of $2 read by $3 prints True (5 s at most).
wait_history() {
  for _ in $(seq 1 100); do
    [ "$(get "/v1/conversations/$2/messages" "$3" | field "$1" 2>/dev/null)" = True ] && return 0
    sleep 0.05
  done
  return 1
}

start
check "$(status_of "$BASE/health")" 200 "GET /health"
for u in alice bob carol; do post /auth/register "{\"username\":\"$u\",\"password\":\"$u-password\"}" >/dev/null; done
token() { post /auth/token "{\"username\":\"$1\",\"password\":\"$1-password\"}" | field 'd["access_token"]'; }
ALICE=$(token alice); BOB=$(token bob); CAROL=$(token carol)
BOB_ID=$(post /auth/token '{"username":"bob","password":"bob-password"}' | field 'd["user_id"]')
for i in 1 2 3; do
  reply=$(post /v1/messages "{\"conversation_id\":\"c1\",\"content\":\"hello $i\",\"recipient_id\":\"$BOB_ID\"}" "$ALICE" -w ' %{http_code}')
  check "${reply##* }" 202 "send $i is 202"
  check "$(grep -c '"message_id":"' <<<"$reply")" 1 "send $i answers compact JSON"
done
delivered='[m["seq"] for m in d["messages"]] == [1,2,3] and all(m["status"] == "DELIVERED" for m in d["messages"])'
wait_history "$delivered" c1 "$ALICE"; check "$?" 0 "alice sees seq 1,2,3 DELIVERED within 5 s"
wait_history "$delivered" c1 "$BOB"; check "$?" 0 "bob sees seq 1,2,3 DELIVERED"
FIRST=$(get /v1/conversations/c1/messages "$BOB" | field 'd["messages"][0]["message_id"]')
check "$(post "/v1/messages/$FIRST/read" '{}' "$BOB" | field 'd["status"]')" READ "bob marks a message READ"
check "$(status_of "$BASE/v1/conversations/c1/messages" -H "Authorization: Bearer $CAROL")" 403 "carol gets 403 on c1"

post /v1/messages '{"conversation_id":"wa","content":"hola","recipient_id":"whatsapp:+5511999990000"}' "$ALICE" >/dev/null
wait_history 'd["messages"][0]["status"] == "DELIVERED"' wa "$ALICE"; check "$?" 0 "whatsapp message DELIVERED within 5 s"

stop
start
check "$(get /v1/conversations/c1/messages "$ALICE" | field '[(m["seq"], m["status"]) for m in d["messages"]]')" \
  "[(1, 'READ'), (2, 'DELIVERED'), (3, 'DELIVERED')]" "after restart all messages and statuses are there"
post /v1/messages '{"conversation_id":"c1","content":"after restart"}' "$ALICE" >/dev/null
wait_history 'len(d["messages"]) == 4 and d["messages"][3]["seq"] == 4' c1 "$ALICE"; check "$?" 0 "the next message gets seq 4"

one=$(post /v1/messages '{"conversation_id":"idem","content":"once"}' "$ALICE" -H 'Idempotency-Key: k-1' | field 'd["message_id"]')
two=$(post /v1/messages '{"conversation_id":"idem","content":"once"}' "$ALICE" -H 'Idempotency-Key: k-1' | field 'd["message_id"]')
check "$two" "$one" "the same Idempotency-Key gives the same message_id"
wait_history 'len(d["messages"]) == 1 and d["messages"][0]["status"] == "DELIVERED"' idem "$ALICE"; check "$?" 0 "one message in the history"

# Files: a 200 MiB upload, its checksum, the server's memory, the signed link, and members only.
head -c $((200 * 1024 * 1024)) /dev/urandom >"$DATA/big.bin"
rss() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
IDLE=$(rss)
( while kill -0 "$PID" 2>/dev/null; do rss; sleep 0.05; done ) >"$DATA/rss.txt" &
SAMPLER=$!
UPLOAD=$(curl -s -H "Authorization: Bearer $ALICE" -F "file=@$DATA/big.bin" -F conversation_id=c1 -w ' %{http_code}' "$BASE/v1/files")
kill "$SAMPLER" 2>/dev/null
check "${UPLOAD##* }" 201 "200 MiB upload is 201"
UPLOAD=${UPLOAD% *}
check "$(field 'd["checksum"]' <<<"$UPLOAD")" "sha256:$(sha256sum "$DATA/big.bin" | cut -d' ' -f1)" "checksum equals sha256sum"
GROWTH=$(( ($(sort -n "$DATA/rss.txt" | tail -1) - IDLE) / 1024 ))
echo "server RSS growth during the upload: ${GROWTH} MiB"
check "$([ "$GROWTH" -lt 64 ] && echo bounded)" bounded "RSS stays within 64 MiB of idle"
check "$(curl -s "$(field 'd["download_url"]' <<<"$UPLOAD")" | sha256sum | cut -d' ' -f1)" "$(sha256sum "$DATA/big.bin" | cut -d' ' -f1)" "plain curl on download_url gives identical bytes"
FILE=$(field 'd["file_id"]' <<<"$UPLOAD")
check "$(status_of -H "Authorization: Bearer $CAROL" -F "file=@$DATA/rss.txt" -F conversation_id=c1 "$BASE/v1/files")" 403 "non-member upload is 403"
check "$(status_of -H "Authorization: Bearer $CAROL" "$BASE/v1/files/$FILE/download")" 404 "non-member download is 404, like a missing file"
check "$(status_of -H "Authorization: Bearer $CAROL" "$BASE/v1/files/$FILE/content")" 404 "non-member content is 404, like a missing file"
rm -f "$DATA/big.bin"
stop

echo "smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
