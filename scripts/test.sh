#!/usr/bin/env bash
# The whole test suite, as CI runs it on a clean clone: builds strictly (a module may import
# only what Package.swift declares for it) and runs every test target.
# Fixtures are committed, so no Python is needed; scripts/make_fixtures.sh regenerates them.
set -euo pipefail
cd "$(dirname "$0")/.."
swift test --explicit-target-dependency-import-check error "$@"
