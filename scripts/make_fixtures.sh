#!/usr/bin/env bash
# Regenerate Tests/Fixtures (and the manifest) with both library environments.
#
#   scripts/make_fixtures.sh            # create .venv-fixtures{,-xgb2}/ if missing, run both passes
#
# Reuse existing interpreters instead of the venvs (skips creation and installs):
#   WHARF_FIXTURE_PY=/path/to/python  WHARF_FIXTURE_PY2=/path/to/python2  scripts/make_fixtures.sh
#
# The first pass (xgboost 3.2.0, lightgbm, scikit-learn) and the second (xgboost 2.1.4) write
# into the same manifest; each replaces only its own entries.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$ROOT/scripts/fixtures"
BOOTSTRAP_PY="${PYTHON:-python3}"

# ensure_venv DIR REQUIREMENTS -> prints the venv's python
ensure_venv() {
    local dir="$1" req="$2"
    if [[ ! -x "$dir/bin/python" ]]; then
        echo "creating $dir" >&2
        "$BOOTSTRAP_PY" -m venv "$dir" >&2
        "$dir/bin/python" -m pip install --quiet --upgrade pip >&2
        "$dir/bin/python" -m pip install --quiet -r "$req" >&2
    fi
    echo "$dir/bin/python"
}

PY="${WHARF_FIXTURE_PY:-}"
PY2="${WHARF_FIXTURE_PY2:-}"
[[ -n "$PY" ]] || PY="$(ensure_venv "$ROOT/.venv-fixtures" "$HERE/requirements.txt")"
[[ -n "$PY2" ]] || PY2="$(ensure_venv "$ROOT/.venv-fixtures-xgb2" "$HERE/requirements-xgb2.txt")"

"$PY" "$HERE/make_fixtures.py" --skip-xgb2
"$PY2" "$HERE/make_fixtures.py" --xgb2-only
"$PY" "$HERE/make_metric_fixtures.py"
# The native trainer's models, checked by xgboost (needs the wharf binary).
(cd "$ROOT" && swift build --product wharf >&2)
"$PY" "$HERE/make_training_fixtures.py" --wharf "$ROOT/.build/debug/wharf"
echo "fixtures: $(du -sh "$ROOT/Tests/Fixtures" | cut -f1) in Tests/Fixtures"
