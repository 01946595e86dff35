#!/usr/bin/env bash
# Fuzz a decoder with libFuzzer for a bounded time.
#   scripts/fuzz.sh [TARGET] [SECONDS]
#   TARGET: models (the model-file loader, default) or requests (the OIP request decoder)
# Seeds: the fixture models and hostile files, or Fuzz/seeds/requests. New inputs that reach new
# code are kept in .build-fuzz/corpus-TARGET (ignored by git); crashes are written to
# fuzz-artifacts/ and make the script fail. Once fixed, add a crash to the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:-models}"
seconds="${2:-60}"
case "$target" in
  models) product=FuzzModelLoader; seeds=(Tests/Fixtures/models Tests/Fixtures/hostile) ;;
  requests) product=FuzzInferenceRequest; seeds=(Fuzz/seeds/requests) ;;
  *) echo "unknown target $target (models or requests)" >&2; exit 2 ;;
esac
swift build --package-path Fuzz --scratch-path .build-fuzz -c debug --product "$product" \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
mkdir -p ".build-fuzz/corpus-$target" fuzz-artifacts
".build-fuzz/debug/$product" -max_total_time="$seconds" -max_len=262144 -rss_limit_mb=2048 -timeout=10 \
  -artifact_prefix=fuzz-artifacts/ ".build-fuzz/corpus-$target" "${seeds[@]}"
