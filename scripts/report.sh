#!/usr/bin/env bash
# Regenerates docs/report.md from the measured runs in docs/results/ (scripts/report/build.py; the prose lives in
# scripts/report/template.md). `--check` only compares, for CI: it fails when the report is out of date.
set -euo pipefail
exec python3 "$(dirname "$0")/report/build.py" "$@"
