#!/usr/bin/env bash
# Categories at scale: one issue of four comparisons sent to N confirmed readers into Postfix's
# smtp-sink on loopback, once with no reader choosing categories (the reference) and once with
# every reader choosing one of three categories (a third each: Chat, Image, Code), and once
# with every reader choosing all three (the whole issue again: what choices cost by
# themselves), alternated in one window. Reports for each run the send rate, the
# messages sent, and the renders the send cost, counted two ways: the "issue variant rendered"
# log lines of `issue send` and `SUM(renders)` of issue_variants (what
# `verdicts_issue_renders_total` in /metrics adds to the one render per issue). Three choices
# must cost at most three renders, whatever N.
#
# The issue: A (Chat, Chat), B (Image, Image), C (Code, Code), D (Chat, Code). Chat readers get
# A and D, Image readers B, Code readers C and D: three distinct sets, each a proper part.
#
# Usage: bench/categories.sh [N=100000] [DB=sqlite|postgres] [CONCURRENCY=16] [ROUNDS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
DB=${2:-sqlite}
CONC=${3:-16}
ROUNDS=${4:-2}
PG_ADMIN=${VERDICTS_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}
export PGOPTIONS="-c client_min_messages=warning"
[ -x /usr/sbin/smtp-sink ] || { echo "needs postfix (smtp-sink)"; exit 1; }
if [ -z "${VERDICTS_BENCH_BIN:-}" ]; then cargo build --release --quiet; fi
BIN=${VERDICTS_BENCH_BIN:-$PWD/target/release/verdicts}
WORK=$(mktemp -d)
trap 'kill $SINK_PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
smtp-sink -u nobody -m 1024 127.0.0.1:$PORT 1024 &
SINK_PID=$!
sleep 0.3

export VERDICTS__MAIL__TRANSPORT=smtp VERDICTS__SMTP__URL=smtp://127.0.0.1:$PORT
export VERDICTS__DELIVERY__CONCURRENCY=$CONC VERDICTS__SECURITY__SECRET_KEY=bench-secret-0123456789abcdef0123456789

# The four comparisons: the fixture page under four names and categories.
mkdir -p "$WORK/seed"
(cd "$WORK/seed" && VERDICTS__DATABASE__URL="sqlite://$WORK/seed/v.db" "$BIN" migrate >/dev/null \
  && VERDICTS__DATABASE__URL="sqlite://$WORK/seed/v.db" "$BIN" comparisons import \
       --published-at 2026-11-18T10:00:00Z "$OLDPWD"/tests/fixtures/claude-4-sonnet-vs-smolvlm2-2b.txt >/dev/null \
  && VERDICTS__DATABASE__URL="sqlite://$WORK/seed/v.db" "$BIN" --json comparisons list >"$WORK/seed/list.json")
python3 - "$WORK/seed/list.json" "$WORK/four.json" <<'PY'
import json, sys
base = json.load(open(sys.argv[1]))[0]
out = []
for i, (slug, cats) in enumerate([("a", ("Chat", "Chat")), ("b", ("Image", "Image")),
                                  ("c", ("Code", "Code")), ("d", ("Chat", "Code"))]):
    c = json.loads(json.dumps(base))
    c.pop("issue_week", None)
    c["slug"] = f"bench-{slug}"
    c["title"] = f"Bench {slug.upper()} vs Other"
    c["url"] = f"https://shiporskip.example/compare/bench-{slug}"
    c["published_at"] = f"2026-11-1{6 + i}T10:00:00Z"
    for t, cat in zip(c["tools"], cats):
        t["category"] = cat
    out.append(c)
json.dump(out, open(sys.argv[2], "w"))
PY

sql() {  # runs SQL against the bench database
  if [ "$DB" = postgres ]; then psql "$VERDICTS__DATABASE__URL" -qAtc "$1"; else sqlite3 "$WORK/app/verdicts.db" "$1"; fi
}

prepare_db() {  # fresh database: N confirmed readers, the four comparisons, issue #1
  local choices=$1
  rm -rf "$WORK/app" && mkdir -p "$WORK/app"
  if [ "$DB" = postgres ]; then
    DBNAME=verdicts_bench_cat_$$
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DBNAME WITH (FORCE)" -c "CREATE DATABASE $DBNAME" >/dev/null
    export VERDICTS__DATABASE__URL="${PG_ADMIN%/*}/$DBNAME"
    (cd "$WORK/app" && "$BIN" migrate >/dev/null)
    sql "INSERT INTO subscribers (email, status, source, created_at, updated_at, confirmed_at)
      SELECT 'bench' || g || '@example.org', 'confirmed', 'bench', 0, 0, 0 FROM generate_series(1, $N) g" >/dev/null
  else
    export VERDICTS__DATABASE__URL="sqlite://$WORK/app/verdicts.db"
    (cd "$WORK/app" && "$BIN" migrate >/dev/null)
    sql "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < $N)
      INSERT INTO subscribers (email, status, source, created_at, updated_at, confirmed_at)
      SELECT 'bench' || i || '@example.org', 'confirmed', 'bench', 0, 0, 0 FROM g;"
  fi
  if [ "$choices" = yes ]; then
    sql "INSERT INTO subscriber_categories (subscriber_id, category)
      SELECT id, CASE id % 3 WHEN 0 THEN 'Chat' WHEN 1 THEN 'Image' ELSE 'Code' END FROM subscribers" >/dev/null
  elif [ "$choices" = all ]; then
    # Every reader chose all three: the whole issue for everyone (the same messages as the
    # reference), so the difference is what the choices cost the snapshot and the send.
    for c in Chat Image Code; do
      sql "INSERT INTO subscriber_categories (subscriber_id, category) SELECT id, '$c' FROM subscribers" >/dev/null
    done
  fi
  (cd "$WORK/app" && "$BIN" comparisons import "$WORK/four.json" >/dev/null)
  (cd "$WORK/app" && "$BIN" issue create --week 2026-W47 >/dev/null)
}

run() {
  local label=$1 choices=$2
  prepare_db "$choices"
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$WORK/app" && RUST_LOG=verdicts=info "$BIN" --json issue send 1 >"$WORK/send.json" 2>"$WORK/send.log")
  t1=$(date +%s.%N)
  local logged stored skipped
  logged=$(grep -c "issue variant rendered" "$WORK/send.log" || true)
  stored=$(sql "SELECT COALESCE(SUM(renders), 0) FROM issue_variants")
  skipped=$(sql "SELECT COUNT(*) FROM deliveries WHERE status = 'skipped'")
  python3 - "$label" "$DB" "$N" "$t0" "$t1" "$logged" "$stored" "$skipped" "$WORK/send.json" <<'PY'
import json, sys
label, db, n, t0, t1, logged, stored, skipped, out = sys.argv[1:]
sent = json.load(open(out))["deliveries"]["sent"]
rate = sent / (float(t1) - float(t0))
print(f"| {db} | {label} | {int(n):,} | {sent:,} | {int(skipped):,} | {rate:,.0f}/s | {logged} | {stored} |")
PY
  if [ "$DB" = postgres ]; then psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS verdicts_bench_cat_$$ WITH (FORCE)" >/dev/null; fi
}

echo "| database | run | readers | sent | skipped | send rate (whole command) | variant renders (log) | variant renders (issue_variants) |"
echo "|---|---|---|---|---|---|---|---|"
for _ in $(seq 1 "$ROUNDS"); do
  run "no categories (reference)" no
  run "3 category choices" yes
  run "all 3 chosen by everyone (whole issue)" all
done
