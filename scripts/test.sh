#!/usr/bin/env bash
# The whole test suite, as CI runs it on a clean clone:
#  1. every Swift test target, built strictly (a module may import only what Package.swift
#     declares for it). Fixtures are committed, so this needs no Python.
#  2. OIP conformance: a real `wharf serve` checked with the stock Triton HTTP client, installed
#     from PyPI into .venv-conformance-ci (skipped, with a warning, if it cannot be installed).
set -euo pipefail
cd "$(dirname "$0")/.."
swift test --explicit-target-dependency-import-check error "$@"

venv=.venv-conformance-ci
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import tritonclient.http, numpy' 2>/dev/null; then
  rm -rf "$venv"
  if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check -r scripts/conformance/requirements-ci.txt; }; then
    echo "warning: could not install tritonclient from PyPI; OIP conformance check skipped" >&2
    exit 0
  fi
fi
port=$((18000 + $$ % 1000))
binary=$(swift build --show-bin-path)/wharf
"$binary" serve --model conformance=Tests/Fixtures/models/xgb3_binary_logistic.json --port "$port" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do
  "$venv/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/v2/health/ready', timeout=1)" 2>/dev/null && break
  sleep 0.05
done
"$venv/bin/python" scripts/oip_conformance.py --url "127.0.0.1:$port" --model conformance \
  --fixture xgb3_binary_logistic --expected-features 8 --no-kserve
