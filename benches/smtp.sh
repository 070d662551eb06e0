#!/usr/bin/env bash
# SMTP throughput of `maildrill serve` beside Postfix smtp-sink and aiosmtpd, in one run of each
# shared peer script (loopback only):
#   - plain sink: smtp-source, persistent sessions and one message per connection;
#   - STARTTLS + AUTH XOAUTH2 per connection with the Python flow client.
#
#   benches/smtp.sh [REPS]        (default 3; env as in shared/bench/peers-smtp*.sh)
#
# Our server runs with --open-smtp (no AUTH required and no per-mailbox limits, so the load
# generators' dummy bearer token passes, like aiosmtpd's sink) and, for the TLS run, the
# peers' certificate. Its journal stays on (bounded).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BENCH=${MAILDRILL_PEER_BENCH:-$ROOT/../shared/bench}
cargo build --release --quiet
ENV_DIR=$(mktemp -d /tmp/maildrill-bench.XXXXXX)
trap 'rm -rf "$ENV_DIR"' EXIT
SERVE="$ROOT/target/release/maildrill serve --open-smtp --env-file $ENV_DIR/maildrill.env --smtp-port {PORT}"
OURS_SMTP_CMD="$SERVE" "$BENCH/peers-smtp.sh" "${1:-3}"
OURS_SMTP_TLS_CMD="$SERVE --smtp-cert {CERT} --smtp-key {KEY}" "$BENCH/peers-smtp-tls.sh" "${1:-3}"
