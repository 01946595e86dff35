#!/usr/bin/env bash
# Fuzz the model loader with libFuzzer for a bounded time.
#   scripts/fuzz.sh [SECONDS]   (default 60)
# Seeds: every fixture model and every hostile file. New inputs that reach new code are kept in
# .build-fuzz/corpus (ignored by git); crashes are written to fuzz-artifacts/ and make the script
# fail. Add a crash file to Tests/Fixtures/hostile (with its expected error) once it is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
swift build --package-path Fuzz --scratch-path .build-fuzz -c debug \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
binary=".build-fuzz/debug/FuzzModelLoader"
mkdir -p .build-fuzz/corpus fuzz-artifacts
"$binary" -max_total_time="$seconds" -max_len=262144 -rss_limit_mb=2048 -timeout=10 \
  -artifact_prefix=fuzz-artifacts/ .build-fuzz/corpus Tests/Fixtures/models Tests/Fixtures/hostile
