#!/usr/bin/env bash
# The test command: starts the real servers the distributed adapters are tested against (the tansu broker,
# PostgreSQL, SeaweedFS; each installed by its scripts/servers/*.sh when missing), runs every crate's tests with
# CHAT4ALL_REQUIRE_SERVERS=1 so that none of those tests can pass by skipping, and stops the servers by pid.
# Arguments go to `cargo test` (e.g. `bash scripts/test.sh -p chat4all-postgres`). The tests build in the release
# profile: it compiles every dependency once for the tests and for the release binary the other scripts run (left
# at target/release/chat4all, with the distributed adapters), instead of once per profile.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=$(mktemp -d /tmp/chat4all-test.XXXXXX)
SERVERS=(tansu postgres seaweedfs)
stop_servers() {
  for server in "${SERVERS[@]}"; do bash "scripts/servers/$server.sh" stop "$RUN_DIR" || true; done
  rm -rf "$RUN_DIR"
}
trap stop_servers EXIT
for server in "${SERVERS[@]}"; do
  bash "scripts/servers/$server.sh" install
  bash "scripts/servers/$server.sh" start "$RUN_DIR"
  # shellcheck disable=SC1090
  source "$RUN_DIR/$server.env"
done
export CHAT4ALL_REQUIRE_SERVERS=1
cargo test --release --workspace --locked --features chat4all-server/distributed "$@"
