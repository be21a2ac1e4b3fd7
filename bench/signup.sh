#!/usr/bin/env bash
# Load run of POST /subscribe on loopback with wrk, on SQLite and on PostgreSQL.
# Reports signups/s, p50/p99 latency, errors, and checks that every accepted signup is in the
# database afterwards. Usage: bench/signup.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_RUN=${1:-20}
CONNS=${2:-32}
PG_ADMIN=${VERDICTS_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
# VERDICTS_BENCH_BIN runs another build (say, the previous commit's) for an A/B comparison.
if [ -z "${VERDICTS_BENCH_BIN:-}" ]; then cargo build --release --quiet; fi
BIN=${VERDICTS_BENCH_BIN:-$PWD/target/release/verdicts}

run_one() {
  local label=$1 url=$2
  local dir; dir=$(mktemp -d)
  local port; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  (cd "$dir" && VERDICTS__DATABASE__URL=$url VERDICTS__HTTP__BIND=127.0.0.1:$port \
     VERDICTS__SIGNUP__RATE_LIMIT_PER_MINUTE=0 RUST_LOG=warn exec "$BIN" serve >"$dir/serve.log" 2>&1) &
  local pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  local out
  out=$(wrk -t2 -c"$CONNS" -d"${SECONDS_RUN}s" --latency -s bench/signup.lua "http://127.0.0.1:$port/subscribe" | grep '^RESULT')
  kill -TERM $pid; wait $pid || true
  local requests non2xx p50 p99 dur stored
  requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$out")
  non2xx=$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$out")
  dur=$(sed -E 's/.*duration_us=([0-9]+).*/\1/' <<<"$out")
  p50=$(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$out")
  p99=$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$out")
  stored=$(cd "$dir" && VERDICTS__DATABASE__URL=$url "$BIN" --json subscribers list --status pending 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  python3 - "$label" "$requests" "$dur" "$non2xx" "$p50" "$p99" "$stored" "$out" <<'PY'
import sys
label, req, dur, non2xx, p50, p99, stored, raw = sys.argv[1:]
req, dur, non2xx, stored = int(req), int(dur), int(non2xx), int(stored)
print(f"| {label} | {req/(dur/1e6):,.0f} | {int(p50)/1000:.1f} ms | {int(p99)/1000:.1f} ms | {non2xx} | {req - non2xx} accepted, {stored} stored |")
print(f"  raw: {raw}", file=sys.stderr)
PY
  rm -rf "$dir"
}

echo "| database | signups/s | p50 | p99 | errors | accepted vs stored |"
echo "|---|---|---|---|---|---|"
run_one SQLite "sqlite://data/verdicts.db"
db=verdicts_bench_$$
psql "$PG_ADMIN" -qc "CREATE DATABASE $db" >/dev/null
run_one PostgreSQL "${PG_ADMIN%/*}/$db"
psql "$PG_ADMIN" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null
