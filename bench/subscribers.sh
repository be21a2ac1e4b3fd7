#!/usr/bin/env bash
# `verdicts subscribers import` of N generated rows into a fresh database, then `subscribers
# export` of them, on SQLite and PostgreSQL, RUNS times each: wall time, rows/s and peak RSS
# (GNU time), the 1-minute load average before each run, and a check that all N rows went in
# and came out.
#
# Usage: bench/subscribers.sh [N=1000000] [RUNS=3] [DBS=sqlite,postgres]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
RUNS=${2:-3}
DBS=${3:-sqlite,postgres}
PG_ADMIN=${VERDICTS_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}
[ -x /usr/bin/time ] || { echo "needs GNU time (apt-get install time)"; exit 1; }
# VERDICTS_BENCH_BIN runs another build (say, the previous commit's) for an A/B comparison.
if [ -z "${VERDICTS_BENCH_BIN:-}" ]; then cargo build --release --quiet; fi
BIN=${VERDICTS_BENCH_BIN:-$PWD/target/release/verdicts}
WORK=$(mktemp -d)
DBNAME=verdicts_bench_subscribers_$$
trap 'psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DBNAME WITH (FORCE)" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

# The same file as docs/benchmarks.md: user{i}@example{i%97}.org, Name {i}.
python3 - "$N" "$WORK/list.csv" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    f.write("email,name\n")
    for i in range(n):
        f.write(f"user{i}@example{i % 97}.org,Name {i}\n")
PY

# Prints one table row: label, seconds, peak KB, rows, load.
row() {
  python3 - "$@" <<'PY'
import sys
label, secs, kb, rows, load = sys.argv[1:]
secs, kb, rows = float(secs), int(kb), int(rows)
print(f"| {label} | {rows:,} | {secs:.2f} s | {rows / secs:,.0f} | {kb / 1000:.1f} MB | {load} |")
PY
}

echo "| run | rows | time | rows/s | peak RSS | load (1 min) |"
echo "|---|---|---|---|---|---|"
for db in ${DBS//,/ }; do
  for run in $(seq 1 "$RUNS"); do
    rm -rf "$WORK/app" && mkdir -p "$WORK/app"
    if [ "$db" = postgres ]; then
      psql "$PG_ADMIN" -qc "SET client_min_messages = warning" \
        -c "DROP DATABASE IF EXISTS $DBNAME WITH (FORCE)" -c "CREATE DATABASE $DBNAME" >/dev/null
      export VERDICTS__DATABASE__URL="${PG_ADMIN%/*}/$DBNAME"
    else
      export VERDICTS__DATABASE__URL="sqlite://$WORK/app/verdicts.db"
    fi
    (cd "$WORK/app" && RUST_LOG=warn "$BIN" migrate >/dev/null)
    load=$(cut -d' ' -f1 /proc/loadavg)
    (cd "$WORK/app" && RUST_LOG=warn /usr/bin/time -f '%e %M' -o "$WORK/time" \
       "$BIN" --json subscribers import "$WORK/list.csv" >"$WORK/import.json")
    added=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["added"])' "$WORK/import.json")
    [ "$added" = "$N" ] || { echo "import added $added of $N rows"; exit 1; }
    read -r secs kb <"$WORK/time"
    row "$db import #$run" "$secs" "$kb" "$added" "$load"

    load=$(cut -d' ' -f1 /proc/loadavg)
    (cd "$WORK/app" && RUST_LOG=warn /usr/bin/time -f '%e %M' -o "$WORK/time" \
       "$BIN" subscribers export >"$WORK/out.csv" 2>"$WORK/export.log")
    exported=$(($(wc -l <"$WORK/out.csv") - 1))
    [ "$exported" = "$N" ] || { echo "export wrote $exported of $N rows"; exit 1; }
    read -r secs kb <"$WORK/time"
    row "$db export #$run" "$secs" "$kb" "$exported" "$load"
  done
done
