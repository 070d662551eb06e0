#!/usr/bin/env bash
# Token endpoint throughput of `maildrill serve` beside Java WireMock (journal on and off) and
# oauth2-mock-server, in one run of the shared peer script (wrk, loopback only).
#
#   benches/http.sh [REPS]        (default 3; env as in shared/bench/peers-http.sh)
#
# Needs the peers installed once with shared/bench/setup.sh. Our server serves the tenant in
# benches/http-tenant.toml over plain HTTP (--plain-http), like the peers; its journal stays on
# (bounded), as in normal use. The sendMail case is skipped for us: the peers' request carries a
# fake bearer token that our Graph mock rightly refuses with 401.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BENCH=${MAILDRILL_PEER_BENCH:-$ROOT/../shared/bench}
cargo build --release --quiet
ENV_FILE=$(mktemp /tmp/maildrill-bench.XXXXXX.env)
trap 'rm -f "$ENV_FILE" "$(dirname "$ENV_FILE")/maildrill-ca.pem"' EXIT
export OURS_HTTP_CMD="$ROOT/target/release/maildrill serve --plain-http --scenario $ROOT/benches/http-tenant.toml --http-port {PORT} --env-file $ENV_FILE"
export OURS_TOKEN_PATH=/tenant-a/oauth2/v2.0/token
export OURS_SENDMAIL=
"$BENCH/peers-http.sh" "${1:-3}"
