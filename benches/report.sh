#!/usr/bin/env bash
# What writing the HTML report adds to `maildrill run` of the shipped folder: `run` and
# `run --report DIR` interleaved, ROUNDS times each, wall and CPU (user + system) seconds of
# every run. BASE=path/to/another/maildrill adds a third column (a build of another commit).
# Usage: benches/report.sh [ROUNDS]   (after cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-6}"
bin=target/release/maildrill
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
TIMEFORMAT='%R %U %S'
measure() { { time "$@" >/dev/null; } 2>&1 | awk '{ printf "wall %.2f cpu %.2f", $1, $2 + $3 }'; }
for i in $(seq 1 "$rounds"); do
  line="round $i:"
  if [ -n "${BASE:-}" ]; then line="$line base $(measure "$BASE" run) |"; fi
  line="$line run $(measure "$bin" run) |"
  rm -rf "$out/report"
  line="$line report $(measure "$bin" run --report "$out/report")"
  echo "$line"
done
du -sh "$out/report"
