#!/usr/bin/env bash
# Fault inject + clear pairs per second through the control API of `maildrill serve`, beside
# Java WireMock's admin API doing the same (a stub with a fault, then its removal), with the
# same driver (benches/control.rs: reqwest, keep-alive, CONCURRENCY workers) and each server's
# resident memory before and after. Loopback only, plain HTTP for both.
#
#   benches/control.sh [PAIRS] [CONCURRENCY]      (default 100000 8)
#
# Needs the peers installed once with shared/bench/setup.sh (WireMock's jar from npm, java 17).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PAIRS=${1:-100000}
CONC=${2:-8}
PEERS=${PEERS:-/tmp/peers}
JAR=$(ls "$PEERS"/node_modules/wiremock/build/wiremock-standalone-*.jar 2>/dev/null | head -1)
[ -n "$JAR" ] || { echo "WireMock missing: run ../shared/bench/setup.sh"; exit 1; }
cargo build --release --quiet --bench control 2>/dev/null || cargo bench --no-run --quiet --bench control
cargo build --release --quiet
DRIVER=$(ls -t target/release/deps/control-* | grep -v '\.d$' | head -1)
WORK=$(mktemp -d /tmp/maildrill-control-bench.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT

wait_port() { for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

echo "# $PAIRS pairs, $CONC workers, $(nproc) cores, $(date -Is)"
# maildrill serve, plain HTTP, its journal on (bounded) as in normal use.
"$ROOT/target/release/maildrill" serve --plain-http --http-port 18491 --env-file "$WORK/md.env" >"$WORK/serve.log" 2>&1 &
PIDS+=($!); SERVE=$!
wait_port 18491
TOKEN=$(grep '^MAILDRILL_CONTROL_TOKEN=' "$WORK/md.env" | cut -d= -f2)
"$DRIVER" maildrill "http://127.0.0.1:18491/_maildrill" "$SERVE" "$PAIRS" "$CONC" "$TOKEN"
echo "  maildrill serve: cpu $(ps -o times= -p "$SERVE") s"

# WireMock as people start it (request journal on), and with it off.
for journal in on off; do
  flag=()
  [ "$journal" = off ] && flag=(--no-request-journal)
  java -jar "$JAR" --port 18492 --bind-address 127.0.0.1 --root-dir "$WORK/wm-$journal" \
    --disable-banner "${flag[@]}" >"$WORK/wm.log" 2>&1 &
  PIDS+=($!); WM=$!
  wait_port 18492
  echo "  wiremock $(basename "$JAR" .jar) journal $journal:"
  "$DRIVER" wiremock "http://127.0.0.1:18492" "$WM" "$PAIRS" "$CONC"
  echo "  wiremock: cpu $(ps -o times= -p "$WM") s"
  kill "$WM"; wait "$WM" 2>/dev/null || true
done
