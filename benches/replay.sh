#!/usr/bin/env bash
# Wall time of scenario replays and the rate of chaos cases, in a release build.
#
#   benches/replay.sh [CASES]     (default 1000 chaos cases, seed 7, no shrinking)
#
# Prints the wall time of the 45-day incident replay and of the whole scenarios/ folder (best of
# three), then `maildrill chaos` over 24-hour random timelines on every core. Nothing else should
# run on the machine meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=target/release/maildrill
best() {
    local best=
    for _ in 1 2 3; do
        local start end ms
        start=$(date +%s%N)
        "$@" >/dev/null
        end=$(date +%s%N)
        ms=$(( (end - start) / 1000000 ))
        if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
    done
    echo "$best"
}
echo "incident (sell-2025-02-14.toml, 45 days): $(best $BIN run scenarios/sell-2025-02-14.toml) ms wall"
echo "folder (scenarios/, $(ls scenarios/*.toml | wc -l) files): $(best $BIN run) ms wall"
$BIN chaos --cases "${1:-1000}" --seed 7 --shrink-budget 0 | tail -1
