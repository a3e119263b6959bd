#!/usr/bin/env bash
# Property-based fuzzing of the HTTP api against its own OpenAPI document. Schemathesis (from PyPI, installed once
# into a cached venv) sends a bounded number of generated requests to every operation of the release binary, with a
# user's token and the admin token, and fails on any 5xx and on any response the document does not describe
# (status, content type, headers, body schema), on invalid input that is accepted, and on a wrong method that is not
# a 405. Prints schemathesis' summary; exits non-zero on any failure. FUZZ_MAX_EXAMPLES (default 200) bounds the
# generated cases per operation, FUZZ_SEED changes the generation (fixed by default, so
# that a run is reproducible).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=4.32.5
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/chat4all/schemathesis-venv
if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $VERSION" ]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
fi
BIN=$(bash scripts/release-bin.sh)

DATA=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
PID=""
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; fi
  rm -rf "$DATA"
}
trap cleanup EXIT

export CHAT4ALL_ADMIN_TOKEN
CHAT4ALL_ADMIN_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
timeout 900 "$BIN" serve --data-dir "$DATA" --http-addr "127.0.0.1:$PORT" --rate-limit-per-sec 0 \
  --log-format json >"$DATA/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 200); do curl -sf "$BASE/health" >/dev/null && break; sleep 0.05; done

credentials='{"username":"fuzzer","password":"fuzzer-password"}'
curl -sf -X POST "$BASE/auth/register" -H 'Content-Type: application/json' -d "$credentials" >/dev/null
export CHAT4ALL_FUZZ_TOKEN
CHAT4ALL_FUZZ_TOKEN=$(curl -sf -X POST "$BASE/auth/token" -H 'Content-Type: application/json' -d "$credentials" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

cat >"$DATA/schemathesis.toml" <<'EOF'
[auth.openapi.bearer]
bearer = "${CHAT4ALL_FUZZ_TOKEN}"

[auth.openapi.admin]
bearer = "${CHAT4ALL_ADMIN_TOKEN}"

# Invalid input may also be refused as too large (413): content over 10240 bytes, a file over the limit.
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]

# Multipart parts are text on the wire: a "boolean" conversation_id arrives as the valid id "true".
[[operations]]
include-path = "/v1/files"
include-method = "POST"
checks.negative_data_rejection.enabled = false
EOF

checks=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance
checks=$checks,response_schema_conformance,negative_data_rejection,unsupported_method
status=0
# From the data directory, where schemathesis leaves its cache; one worker, as CPython 3.11's parser is not
# thread-safe under hypothesis.
(cd "$DATA" && timeout 600 "$VENV/bin/schemathesis" --config-file schemathesis.toml --no-color run \
  "$BASE/openapi.json" --checks "$checks" --max-examples "${FUZZ_MAX_EXAMPLES:-200}" \
  --seed "${FUZZ_SEED:-20261201}" --workers 1 --request-timeout 10 --generation-database none) || status=$?
if grep -q '"level":"ERROR"' "$DATA/server.log"; then
  echo "server errors logged during the run:"
  grep '"level":"ERROR"' "$DATA/server.log" | head -20
  status=1
fi
exit "$status"
