#!/usr/bin/env bash
# The whole test suite, as CI runs it on a clean clone:
#  1. every Swift test target, built strictly (a module may import only what Package.swift
#     declares for it). Fixtures are committed, so this needs no Python.
#     The registry's store contract also runs against a throwaway PostgreSQL cluster started
#     here (Debian's postgresql package, installed if missing); without one the tests fail.
#     The message bus contract and the hub's JetStream test run against a throwaway
#     `nats-server -js` started here (Debian's nats-server package, installed if missing).
#  2. Kubernetes manifests: `wharf deploy kubernetes` output (and the golden files) validated
#     offline against the Kubernetes schemas with kubernetes-validate --strict (PyPI, into
#     .venv-k8s-ci; kubectl cannot validate without a cluster).
#  3. OIP conformance: a real `wharf serve` checked with the stock Triton HTTP client, installed
#     from PyPI into .venv-conformance-ci (skipped, with a warning, if it cannot be installed).
set -euo pipefail
cd "$(dirname "$0")/.."

cleanup=()
trap 'for command in "${cleanup[@]}"; do eval "$command" || true; done' EXIT

# PostgreSQL: a cluster under /tmp on its own port, trust auth, no fsync (tests only).
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$pgbin" ]; then
  [ "$(id -u)" = 0 ] || { echo "scripts/test.sh installs PostgreSQL and nats-server with apt-get: run it as root, or install them first" >&2; exit 1; }
  # A fresh image has empty package lists: update them when the package is not found.
  { apt-get -o DPkg::Lock::Timeout=300 install -y -q postgresql >/dev/null 2>&1; } \
    || { apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null && apt-get -o DPkg::Lock::Timeout=300 install -y -q postgresql >/dev/null; }
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
pgport=$((55000 + $$ % 400))
pgdata=$(mktemp -d /tmp/wharf-pgdata.XXXXXX)
runas=()
if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$pgdata"; runas=(runuser -u postgres --); fi
"${runas[@]}" "$pgbin/initdb" -D "$pgdata" -A trust -U postgres -E UTF8 --no-sync >/dev/null
"${runas[@]}" "$pgbin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 60 \
  -o "-p $pgport -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200" start >/dev/null
cleanup+=("${runas[*]} $pgbin/pg_ctl -D $pgdata -m fast stop >/dev/null; rm -rf $pgdata")
"$pgbin/psql" -q -h 127.0.0.1 -p "$pgport" -U postgres -c 'create database wharf_test' >/dev/null
export WHARF_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pgport/wharf_test"
export WHARF_REQUIRE_POSTGRES=1

# NATS with JetStream: its own ports and store directory; the ports file says when it is up.
if ! command -v nats-server >/dev/null; then
  { apt-get -o DPkg::Lock::Timeout=300 install -y -q nats-server >/dev/null 2>&1; } \
    || { apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null && apt-get -o DPkg::Lock::Timeout=300 install -y -q nats-server >/dev/null; }
fi
natsport=$((14000 + $$ % 400))
natsdir=$(mktemp -d /tmp/wharf-nats.XXXXXX)
nats-server -a 127.0.0.1 -p "$natsport" -js -sd "$natsdir" -l "$natsdir/nats.log" --ports_file_dir "$natsdir" &
natspid=$!
cleanup+=("kill $natspid 2>/dev/null; wait $natspid 2>/dev/null; rm -rf $natsdir")
for _ in $(seq 1 200); do ls "$natsdir"/*.ports >/dev/null 2>&1 && break; sleep 0.05; done
ls "$natsdir"/*.ports >/dev/null || { echo "nats-server did not start:" >&2; cat "$natsdir/nats.log" >&2; exit 1; }
export WHARF_TEST_NATS_URL="nats://127.0.0.1:$natsport"
export WHARF_REQUIRE_NATS=1

swift test --explicit-target-dependency-import-check error "$@"
binary=$(swift build --show-bin-path)/wharf

k8s=.venv-k8s-ci
if [ ! -x "$k8s/bin/kubernetes-validate" ]; then
  rm -rf "$k8s"
  python3 -m venv "$k8s" && "$k8s/bin/pip" install -q --disable-pip-version-check kubernetes-validate==1.37.0
fi
manifests=$(mktemp -d /tmp/wharf-k8s.XXXXXX)
cleanup+=("rm -rf $manifests")
"$binary" deploy kubernetes --out "$manifests/sqlite" --model demo@production --model churn@3 >/dev/null
"$binary" deploy kubernetes --out "$manifests/postgres" --postgres --namespace ml-prod --model demo@production >/dev/null
"$k8s/bin/kubernetes-validate" --strict --quiet "$manifests"/sqlite/*.yaml "$manifests"/postgres/*.yaml Tests/Fixtures/kubernetes/*.yaml
echo "kubernetes manifests: valid"

venv=.venv-conformance-ci
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import tritonclient.http, numpy' 2>/dev/null; then
  rm -rf "$venv"
  if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check -r scripts/conformance/requirements-ci.txt; }; then
    echo "warning: could not install tritonclient from PyPI; OIP conformance check skipped" >&2
    exit 0
  fi
fi
port=$((18000 + $$ % 1000))
"$binary" serve --model conformance=Tests/Fixtures/models/xgb3_binary_logistic.json --port "$port" 2>/dev/null &
server=$!
cleanup+=("kill $server 2>/dev/null")
for _ in $(seq 1 200); do
  "$venv/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/v2/health/ready', timeout=1)" 2>/dev/null && break
  sleep 0.05
done
"$venv/bin/python" scripts/oip_conformance.py --url "127.0.0.1:$port" --model conformance \
  --fixture xgb3_binary_logistic --expected-features 8 --no-kserve
