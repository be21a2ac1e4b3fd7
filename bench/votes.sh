#!/usr/bin/env bash
# Load run of POST /vote/{token} on loopback, SQLite (and PostgreSQL with `pg`): a release
# `verdicts serve`, an issue of two comparisons and N confirmed readers, and bench/vote_load.py
# posting a distinct genuine vote per request (reader × comparison × tool) over keep-alive
# connections. Afterwards every vote answered 200 must be a row of `votes`.
# Usage: bench/votes.sh [seconds=20] [connections=32] [readers=20000] [sqlite|pg]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_RUN=${1:-20}
CONNS=${2:-32}
READERS=${3:-20000}
DB=${4:-sqlite}
PG_ADMIN=${VERDICTS_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}
KEY=bench-votes-key-0123456789abcdef0123456789
if [ -z "${VERDICTS_BENCH_BIN:-}" ]; then cargo build --release --quiet; fi
BIN=${VERDICTS_BENCH_BIN:-$PWD/target/release/verdicts}
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if [ "$DB" = pg ]; then
  db=verdicts_bench_votes_$$
  psql "$PG_ADMIN" -qc "CREATE DATABASE $db" >/dev/null
  url="${PG_ADMIN%/*}/$db"
else
  url="sqlite://data/verdicts.db"
fi
export VERDICTS__DATABASE__URL=$url VERDICTS__SECURITY__SECRET_KEY=$KEY RUST_LOG=warn
cd "$dir"
"$BIN" migrate >/dev/null
"$BIN" comparisons import --published-at 2026-11-17 "$OLDPWD/tests/fixtures/claude-4-sonnet-vs-smolvlm2-2b.txt" >/dev/null
"$BIN" comparisons import --published-at 2026-11-18 "$OLDPWD/tests/fixtures/claude-haiku-open-weights-vs-smolvlm2-turbo.txt" >/dev/null
python3 -c "
print('email')
for i in range($READERS): print(f'reader{i}@example.org')" > readers.csv
"$BIN" subscribers import readers.csv >/dev/null
"$BIN" issue create --week 2026-W47 >/dev/null
VERDICTS__HTTP__BIND=127.0.0.1:$port VERDICTS__HTTP__RATE_LIMIT_PER_MINUTE=0 \
  "$BIN" serve >"$dir/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
python3 "$OLDPWD/bench/vote_load.py" --port "$port" --key "$KEY" --readers "$READERS" \
  --seconds "$SECONDS_RUN" --connections "$CONNS" > result.txt
kill -TERM $pid; wait $pid || true
if [ "$DB" = pg ]; then
  stored=$(psql "$url" -Atc "SELECT COUNT(*) FROM votes")
else
  stored=$(python3 -c "import sqlite3; print(sqlite3.connect('data/verdicts.db').execute('SELECT COUNT(*) FROM votes').fetchone()[0])")
fi
cat result.txt
echo "stored: $stored"
ok=$(sed -nE 's/.*ok=([0-9]+).*/\1/p' result.txt)
[ "$ok" = "$stored" ] && echo "every vote answered 200 is stored" || { echo "MISMATCH: $ok answered, $stored stored"; exit 1; }
cd "$OLDPWD"; rm -rf "$dir"
if [ "$DB" = pg ]; then psql "$PG_ADMIN" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null; fi
