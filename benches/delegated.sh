#!/usr/bin/env bash
# How the delegated incident's replay grows with its users: the three-day incident of
# scenarios/sell-2025-02-14-delegated.toml (remediated client, Graph, a sync round every 5
# minutes per user) at 100, 500 and 2,000 users (five per customer tenant), in a release
# build; wall time, peak memory and sync rounds of each (one run each; nothing else should
# run on the machine meanwhile).
#
#   benches/delegated.sh [USERS...]     (default 100 500 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=target/release/maildrill
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '| users | tenants | wall | peak RSS | sync rounds (scheduled) | token requests |\n|---|---|---|---|---|---|\n'
for users in "${@:-100 500 2000}"; do
    for n in $users; do
        tenants=$(( n / 5 ))
        file="$work/delegated-$n.toml"
        sed -e "s/^count = 100$/count = $tenants/" scenarios/sell-2025-02-14-delegated.toml >"$file"
        /usr/bin/time -f '%e %M' -o "$work/time" "$BIN" run "$file" --json "$work/report.json" >/dev/null || true
        read -r wall rss <"$work/time"
        python3 - "$work/report.json" "$n" "$tenants" "$wall" "$rss" <<'PY'
import json, sys
path, users, tenants, wall, rss = sys.argv[1:]
report = json.load(open(path))["scenarios"][0]
# A round every 5 minutes for each user over the 72 hours.
rounds = int(users) * 72 * 12
tokens = report["stats"]["token_requests"]
print(f"| {int(users):,} | {int(tenants):,} | {float(wall):.1f} s | {int(rss) / 1024:,.0f} MiB | {rounds:,} | {tokens:,} |")
PY
    done
done
