#!/usr/bin/env bash
# Sends one issue to N subscribers into Postfix's smtp-sink on loopback, and in the same run
# measures the raw SMTP limit with `smtp-source -d` (before and after, mean): the same number of messages of the same
# size over the same number of connections to the same sink. Reports both, their ratio and
# verdicts' peak RSS, for DKIM off, ed25519, rsa-2048 and both (rsa+ed25519, RFC 8463), with
# OpenSSL's own RSA-2048 signing speed on this machine in the same run (`openssl speed`), to
# compare with the CPU a signature costs verdicts (CPU per message minus DKIM off's); and `tls`:
# DKIM off over `smtps://` through stunnel (Debian stunnel4, a certificate from a CA made here,
# trusted with smtp.ca_file) in front of the same sink, against the same plain smtp-source
# limit — the cost of TLS.
#
# It also reports the CPU every message cost verdicts, PostgreSQL (its backends, also those that
# closed) and smtp-sink during the send, and the CPU ceiling those figures allow: the machine's
# cores over their sum, as a ratio to the same limit. On a small machine where all three share
# the cores, no sender with a database ledger gets above that ceiling.
#
# Usage: bench/delivery.sh [N=100000] [CONCURRENCY=16] [DB=sqlite|postgres]
#                          [MODES=off,ed25519,rsa,rsa+ed25519,tls]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
CONC=${2:-16}
DB=${3:-sqlite}
MODES=${4:-off,ed25519,rsa}
PG_ADMIN=${VERDICTS_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}
[ -x /usr/sbin/smtp-sink ] || { echo "needs postfix (smtp-sink, smtp-source)"; exit 1; }
# VERDICTS_BENCH_BIN runs another build (say, the previous commit's) for an A/B comparison.
if [ -z "${VERDICTS_BENCH_BIN:-}" ]; then cargo build --release --quiet; fi
BIN=${VERDICTS_BENCH_BIN:-$PWD/target/release/verdicts}
WORK=$(mktemp -d)
TUNNEL_PID=
trap 'kill $SINK_PID $TUNNEL_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
smtp-sink -u nobody -m 1024 127.0.0.1:$PORT 1024 &
SINK_PID=$!
sleep 0.3

# TLS in front of the sink for the `tls` run: stunnel with a certificate from a private CA.
if [[ ",$MODES," == *,tls,* ]]; then
  command -v stunnel4 >/dev/null || { echo "the tls run needs stunnel4 (apt-get install stunnel4)"; exit 1; }
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" -days 2 -subj "/CN=bench CA" 2>/dev/null
  openssl req "${ec[@]}" -keyout "$WORK/tls.key" -out "$WORK/tls.csr" -subj "/CN=127.0.0.1" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$WORK/ext.cnf"
  openssl x509 -req -in "$WORK/tls.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
    -out "$WORK/tls.pem" -days 2 -extfile "$WORK/ext.cnf" 2>/dev/null
  TLS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  printf 'foreground = yes\npid =\ndebug = 0\n[smtps]\naccept = 127.0.0.1:%s\nconnect = 127.0.0.1:%s\ncert = %s\nkey = %s\n' \
    "$TLS_PORT" "$PORT" "$WORK/tls.pem" "$WORK/tls.key" > "$WORK/stunnel.conf"
  stunnel4 "$WORK/stunnel.conf" >/dev/null 2>&1 &
  TUNNEL_PID=$!
  sleep 0.3
fi

# Keys for the DKIM runs.
python3 -c "import base64,os; print(base64.b64encode(os.urandom(32)).decode())" > "$WORK/ed25519.key"
openssl genrsa -traditional -out "$WORK/rsa.pem" 2048 2>/dev/null

export VERDICTS__MAIL__TRANSPORT=smtp VERDICTS__SMTP__URL=smtp://127.0.0.1:$PORT
export VERDICTS__DELIVERY__CONCURRENCY=$CONC VERDICTS__SECURITY__SECRET_KEY=bench-secret-0123456789abcdef0123456789
export RUST_LOG=warn

# Rows inserted behind the application's back are counted by whoever inserts them (migration
# 0017): the seed recounts.
RECOUNT="UPDATE subscriber_counts SET n = (SELECT COUNT(*) FROM subscribers s WHERE s.status = subscriber_counts.status);"
prepare_db() {  # fresh database with N confirmed subscribers and a frozen issue
  rm -rf "$WORK/app" && mkdir -p "$WORK/app"
  if [ "$DB" = postgres ]; then
    DBNAME=verdicts_bench_$$
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DBNAME WITH (FORCE)" -c "CREATE DATABASE $DBNAME" >/dev/null
    export VERDICTS__DATABASE__URL="${PG_ADMIN%/*}/$DBNAME"
    (cd "$WORK/app" && "$BIN" migrate >/dev/null)
    psql "${PG_ADMIN%/*}/$DBNAME" -qc "INSERT INTO subscribers (email, status, source, created_at, updated_at, confirmed_at)
      SELECT 'bench' || g || '@example.org', 'confirmed', 'bench', 0, 0, 0 FROM generate_series(1, $N) g" \
      -c "$RECOUNT" >/dev/null
  else
    export VERDICTS__DATABASE__URL="sqlite://$WORK/app/verdicts.db"
    (cd "$WORK/app" && "$BIN" migrate >/dev/null)
    sqlite3 "$WORK/app/verdicts.db" "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < $N)
      INSERT INTO subscribers (email, status, source, created_at, updated_at, confirmed_at)
      SELECT 'bench' || i || '@example.org', 'confirmed', 'bench', 0, 0, 0 FROM g; $RECOUNT"
  fi
  (cd "$WORK/app" && \
     "$BIN" comparisons import --published-at 2026-11-18T10:00:00Z "$OLDPWD"/tests/fixtures/*.txt >/dev/null)
  (cd "$WORK/app" && "$BIN" issue create --week 2026-W47 >/dev/null)
}

# CPU time (clock ticks, user + system) of every process named $1 so far, with its children that
# ended (PostgreSQL backends that closed are counted in the postmaster's).
proc_ticks() {
  local total=0 pid
  for pid in $(pgrep -x "$1"); do
    total=$((total + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

run_mode() {
  local mode=$1
  unset VERDICTS__DKIM__DOMAIN VERDICTS__DKIM__SELECTOR VERDICTS__DKIM__PRIVATE_KEY_FILE \
    VERDICTS__DKIM__ED25519_SELECTOR VERDICTS__DKIM__ED25519_KEY_FILE
  unset VERDICTS__SMTP__CA_FILE
  export VERDICTS__SMTP__URL=smtp://127.0.0.1:$PORT
  if [ "$mode" = tls ]; then
    export VERDICTS__SMTP__URL=smtps://127.0.0.1:$TLS_PORT VERDICTS__SMTP__CA_FILE=$WORK/ca.pem
  elif [ "$mode" != off ]; then
    export VERDICTS__DKIM__DOMAIN=shiporskip.example VERDICTS__DKIM__SELECTOR=bench
    case "$mode" in
      rsa) export VERDICTS__DKIM__PRIVATE_KEY_FILE=$WORK/rsa.pem ;;
      ed25519) export VERDICTS__DKIM__PRIVATE_KEY_FILE=$WORK/ed25519.key ;;
      rsa+ed25519) export VERDICTS__DKIM__PRIVATE_KEY_FILE=$WORK/rsa.pem \
          VERDICTS__DKIM__ED25519_SELECTOR=bench-ed VERDICTS__DKIM__ED25519_KEY_FILE=$WORK/ed25519.key ;;
      *) echo "unknown DKIM mode $mode"; exit 2 ;;
    esac
  fi
  OLDPWD=$PWD prepare_db
  # Size of one message (the preview .eml), for smtp-source's payload.
  (cd "$WORK/app" && "$BIN" issue preview --week 2026-W47 --out "$WORK/pv" >/dev/null)
  local size; size=$(stat -c %s "$WORK/pv/issue.eml")
  # The reference runs once before and once after verdicts; their mean is the limit, so a drift
  # of this (noisy, shared) machine during the run does not favour either side.
  local r0 r1 r2 r3
  r0=$(date +%s.%N)
  smtp-source -d -s "$CONC" -m "$N" -l "$size" -f bench@shiporskip.example -t sink@example.org 127.0.0.1:$PORT
  r1=$(date +%s.%N)
  local t0 t1 rss cpu_user cpu_sys pg0 pg1 sink0 sink1
  pg0=$(proc_ticks postgres); sink0=$(proc_ticks smtp-sink)
  t0=$(date +%s.%N)
  (cd "$WORK/app" && /usr/bin/time -f "%U %S %M" -o "$WORK/rss" "$BIN" --json issue send 1 >"$WORK/send.json")
  t1=$(date +%s.%N)
  pg1=$(proc_ticks postgres); sink1=$(proc_ticks smtp-sink)
  read -r cpu_user cpu_sys rss < <(tail -1 "$WORK/rss")
  local sent; sent=$(python3 -c "import json; print(json.load(open('$WORK/send.json'))['deliveries']['sent'])")
  r2=$(date +%s.%N)
  smtp-source -d -s "$CONC" -m "$N" -l "$size" -f bench@shiporskip.example -t sink@example.org 127.0.0.1:$PORT
  r3=$(date +%s.%N)
  python3 - "$mode" "$DB" "$N" "$CONC" "$size" "$t0" "$t1" "$r0" "$r1" "$r2" "$r3" "$rss" "$sent" "$cpu_user" "$cpu_sys" \
    $((pg1 - pg0)) $((sink1 - sink0)) "$(getconf CLK_TCK)" <<'PY'
import os, sys
mode, db, n, conc, size, t0, t1, r0, r1, r2, r3, rss, sent, cu, cs, pg, sink, hz = sys.argv[1:]
cpu_us = (float(cu) + float(cs)) / int(sent) * 1e6
n, sent = int(n), int(sent)
ours = sent / (float(t1) - float(t0))
before = n / (float(r1) - float(r0))
after = n / (float(r3) - float(r2))
raw = (before + after) / 2
pg_us = int(pg) / int(hz) / sent * 1e6
sink_us = int(sink) / int(hz) / sent * 1e6
# The CPU ceiling: the machine's cores divided by the CPU every message costs verdicts, the
# database and the sink together (all three share the cores), as a ratio to the limit.
cores = os.cpu_count()
ceiling = cores / ((cpu_us + pg_us + sink_us) / 1e6) / raw
print(f"| {db} | {mode} | {n:,} | {conc} | {int(size):,} B | {ours:,.0f}/s | {raw:,.0f}/s ({before:,.0f} · {after:,.0f}) | **{ours/raw:.2f}** | {int(rss)/1024:.1f} MB | {cpu_us:.0f} µs | {pg_us:.0f} µs | {sink_us:.0f} µs | {ceiling:.2f} | {sent:,} |")
PY
  if [ "$DB" = postgres ]; then psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS verdicts_bench_$$ WITH (FORCE)" >/dev/null; fi
}

# OpenSSL's RSA-2048 signing on this machine now, one core: the reference for our signer.
openssl speed -seconds 3 rsa2048 2>/dev/null | awk '/^rsa 2048/ {sub(/s$/, "", $4); printf "openssl speed rsa2048: %.0f µs per signature (%s signs/s, one core)\n\n", $4 * 1e6, $6}'
echo "| database | DKIM (tls: off, over smtps:// through stunnel) | messages | connections | size | verdicts | smtp-source -d: mean (before · after) | ratio | peak RSS | verdicts CPU per message | PostgreSQL CPU per message | smtp-sink CPU per message | CPU ceiling (ratio) | sent |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
IFS=, read -ra modes <<<"$MODES"
for m in "${modes[@]}"; do run_mode "$m"; done
