#!/usr/bin/env bash
# Soak: `maildrill serve` for DURATION under HTTP load (wrk, the token endpoint over HTTPS, half
# the requests with an expired secret) and SMTP load (postfix's smtp-source, with
# --open-smtp) at once; its resident memory sampled every 10 s. Reports the first, last and
# peak RSS, the requests and messages served, and every reply that was not what was asked for
# (the expired-secret 401s are asked for). Loopback only.
#
#   benches/soak.sh [DURATION_S]        (default 600)
#
# Needs wrk and smtp-source (shared/bench/setup.sh installs both).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DUR=${1:-600}
BENCH=${MAILDRILL_PEER_BENCH:-$ROOT/../shared/bench}
command -v wrk >/dev/null && command -v smtp-source >/dev/null || {
  echo "wrk and smtp-source needed: run ../shared/bench/setup.sh"; exit 1; }
cargo build --release --quiet
WORK=$(mktemp -d /tmp/maildrill-soak.XXXXXX)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
wait_port() { for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

"$ROOT/target/release/maildrill" serve --scenario benches/http-tenant.toml --open-smtp \
  --http-port 18501 --smtp-port 18502 --env-file "$WORK/md.env" >"$WORK/serve.log" 2>&1 &
PIDS+=($!); SERVE=$!
wait_port 18501; wait_port 18502
rss() { awk '/VmRSS/{print $2}' "/proc/$SERVE/status"; }
echo "# soak ${DUR}s: serve pid $SERVE, $(nproc) cores, $(date -Is)"
FIRST=$(rss); PEAK=$FIRST

TOKEN_URL="https://127.0.0.1:18501/tenant-a/oauth2/v2.0/token"
for body in ok expired; do
  WRK_BODY_FILE="$BENCH/http/body-token-$body.txt" WRK_CTYPE=application/x-www-form-urlencoded \
    timeout $((DUR + 30)) wrk -t1 -c8 -d"${DUR}s" -s "$BENCH/http/post.lua" "$TOKEN_URL" \
    >"$WORK/wrk-$body.txt" 2>&1 &
  PIDS+=($!)
done
# smtp-source: 4 sessions in parallel, 1 KB messages, as many as DUR allows.
timeout "$DUR" smtp-source -c -s 4 -m 100000000 -l 1024 -f sender@contoso.example \
  -t rcpt@example.com 127.0.0.1:18502 >"$WORK/smtp.txt" 2>"$WORK/smtp.err" &
PIDS+=($!); SMTP=$!

for i in $(seq 10 10 "$DUR"); do
  sleep 10
  now=$(rss); [ "$now" -gt "$PEAK" ] && PEAK=$now
  echo "  t=${i}s rss_kib=$now"
done
wait "$SMTP" 2>/dev/null || true
sleep 2
LAST=$(rss)
echo "RESULT first_rss_kib=$FIRST last_rss_kib=$LAST peak_rss_kib=$PEAK"
for body in ok expired; do
  echo "  wrk token-$body: $(grep '^RESULT' "$WORK/wrk-$body.txt" || tail -2 "$WORK/wrk-$body.txt")"
done
echo "  smtp-source: $(tail -c 200 "$WORK/smtp.txt" | tr '\r\n' '  ' | tail -c 120) errors: $(grep -c . "$WORK/smtp.err" || true) lines"
head -3 "$WORK/smtp.err" || true
echo "  serve cpu: $(ps -o times= -p "$SERVE") s"
