#!/usr/bin/env bash
# Times every console page, GET /api/issues/{id} and /metrics with N subscribers, first with no
# send, then with an N-recipient send in progress (started through the API, the server's worker
# sending into Postfix's smtp-sink at delivery.rate_per_second = RATE, so it stays in progress
# while the pages are timed). Each URL is fetched RUNS times with curl; the table gives the
# median and the slowest. The subscribers are seeded with one INSERT … SELECT (90 % confirmed,
# 6 % pending, 3 % unsubscribed, 1 % bounced), plus a few failed deliveries and bounce events so
# the bounces page has rows.
#
# Usage: bench/console.sh [N=1000000] [RUNS=7] [DB=sqlite|postgres] [RATE=200]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
RUNS=${2:-7}
DB=${3:-sqlite}
RATE=${4:-200}
PG_ADMIN=${VERDICTS_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}
[ -x /usr/sbin/smtp-sink ] || { echo "needs postfix (smtp-sink)"; exit 1; }
# VERDICTS_BENCH_BIN runs another build (say, the previous commit's) for an A/B comparison.
if [ -z "${VERDICTS_BENCH_BIN:-}" ]; then cargo build --release --quiet; fi
BIN=${VERDICTS_BENCH_BIN:-$PWD/target/release/verdicts}
ROOT=$PWD
WORK=$(mktemp -d)
DBNAME=verdicts_bench_console_$$
SINK_PID= SERVE_PID=
cleanup() {
  kill $SERVE_PID $SINK_PID 2>/dev/null || true
  wait $SERVE_PID 2>/dev/null || true
  if [ "$DB" = postgres ]; then
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DBNAME WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SMTP_PORT=$(free_port)
HTTP_PORT=$(free_port)
smtp-sink -u nobody 127.0.0.1:$SMTP_PORT 256 &
SINK_PID=$!

export RUST_LOG=warn
export VERDICTS__MAIL__TRANSPORT=smtp VERDICTS__SMTP__URL=smtp://127.0.0.1:$SMTP_PORT
export VERDICTS__DELIVERY__RATE_PER_SECOND=$RATE
export VERDICTS__SECURITY__SECRET_KEY=bench-secret-0123456789abcdef0123456789
export VERDICTS__HTTP__BIND=127.0.0.1:$HTTP_PORT VERDICTS__HTTP__PUBLIC_URL=http://127.0.0.1:$HTTP_PORT
export VERDICTS__ADMIN__TOKEN=bench-admin-token-0123456789
mkdir -p "$WORK/app"

SEED="INSERT INTO subscribers (email, name, status, source, created_at, updated_at, confirmed_at)
  SELECT 'user' || i || '@example' || (i % 97) || '.org', 'Name ' || i,
         CASE WHEN i % 100 < 90 THEN 'confirmed' WHEN i % 100 < 96 THEN 'pending'
              WHEN i % 100 < 99 THEN 'unsubscribed' ELSE 'bounced' END,
         'bench', 1700000000000 + i, 1700000000000 + i, 1700000000000 + i"
# Rows inserted behind the application's back are counted by whoever inserts them (migration
# 0017): the seed recounts.
RECOUNT="UPDATE subscriber_counts SET n = (SELECT COUNT(*) FROM subscribers s WHERE s.status = subscriber_counts.status);"
t0=$(date +%s.%N)
if [ "$DB" = postgres ]; then
  psql "$PG_ADMIN" -qc "SET client_min_messages = warning" \
    -c "DROP DATABASE IF EXISTS $DBNAME WITH (FORCE)" -c "CREATE DATABASE $DBNAME" >/dev/null
  export VERDICTS__DATABASE__URL="${PG_ADMIN%/*}/$DBNAME"
  (cd "$WORK/app" && "$BIN" migrate >/dev/null)
  psql "$VERDICTS__DATABASE__URL" -qc "$SEED FROM generate_series(1, $N) i" -c "$RECOUNT" -c "ANALYZE" >/dev/null
  SQL() { psql "$VERDICTS__DATABASE__URL" -qAtc "$1"; }
else
  export VERDICTS__DATABASE__URL="sqlite://$WORK/app/verdicts.db"
  (cd "$WORK/app" && "$BIN" migrate >/dev/null)
  sqlite3 "$WORK/app/verdicts.db" "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < $N)
    $SEED FROM g; $RECOUNT ANALYZE;"
  SQL() { sqlite3 "$WORK/app/verdicts.db" "$1"; }
fi
t1=$(date +%s.%N)
echo "seeded $(SQL 'SELECT COUNT(*) FROM subscribers') subscribers in $(python3 -c "print(f'{$t1 - $t0:.1f}')") s ($DB)"
(cd "$WORK/app" && "$BIN" comparisons import --published-at 2026-11-18T10:00:00Z "$ROOT"/tests/fixtures/*.txt >/dev/null)
(cd "$WORK/app" && "$BIN" issue create --week 2026-W47 >/dev/null)
printf 'bench-password-0123456789\n' |
  (cd "$WORK/app" && "$BIN" operators add bench@example.org --password-stdin >/dev/null)

(cd "$WORK/app" && exec "$BIN" serve >"$WORK/serve.log" 2>&1) &
SERVE_PID=$!
BASE=http://127.0.0.1:$HTTP_PORT
for _ in $(seq 1 100); do curl -fs "$BASE/healthz" >/dev/null 2>&1 && break; sleep 0.2; done

# Sign in to the console: the login form's CSRF token, then the session cookie.
JAR=$WORK/cookies
csrf=$(curl -fs -c "$JAR" "$BASE/admin/login" | sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' | head -1)
curl -fs -b "$JAR" -c "$JAR" -o /dev/null --data-urlencode "email=bench@example.org" \
  --data-urlencode "password=bench-password-0123456789" --data-urlencode "csrf_token=$csrf" "$BASE/admin/login"

AUTH=(-H "Authorization: Bearer $VERDICTS__ADMIN__TOKEN")
PAGES=(/admin /admin/issues/1 /admin/progress.json /admin/subscribers "/admin/subscribers?q=user123456"
       "/admin/subscribers?q=%40example42.org" "/admin/subscribers?q=example4"
       "/admin/subscribers?status=bounced" /admin/comparisons /admin/bounces /admin/log /admin/deliverability
       /admin/operators /admin/subscribers/1 /api/issues/1 /metrics)

# Prints one table row per URL: median and slowest of RUNS fetches, in ms.
time_pages() {
  local label=$1 url times code
  for url in "${PAGES[@]}"; do
    times=()
    for _ in $(seq 1 "$RUNS"); do
      read -r code t < <(curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -b "$JAR" "${AUTH[@]}" "$BASE$url")
      times+=("$t")
    done
    python3 - "$label" "$url" "$code" "${times[@]}" <<'PY'
import statistics, sys
label, url, code, *times = sys.argv[1:]
ms = sorted(float(t) * 1000 for t in times)
print(f"| {label} | `{url}` | {code} | {statistics.median(ms):.1f} ms | {ms[-1]:.1f} ms |")
PY
  done
}

echo
echo "| state | URL | status | median | slowest |"
echo "|---|---|---|---|---|"
time_pages "no send"
t0=$(date +%s.%N)
curl -fs "${AUTH[@]}" -H 'Content-Type: application/json' -d '{"force": true}' \
  "$BASE/api/issues/1/send" >"$WORK/send.json"
t1=$(date +%s.%N)
snap=$(SQL "SELECT COUNT(*) FROM deliveries WHERE issue_id = 1")
# A few failures and bounce events, so the bounces page has rows to show.
# (PostgreSQL counts a status change in the statement that makes it, as the application does.)
FAIL="UPDATE deliveries SET status = 'failed', last_error = '550 5.1.1 user unknown', attempts = 1
      WHERE id IN (SELECT id FROM deliveries WHERE status = 'pending' ORDER BY id DESC LIMIT 50)"
if [ "$DB" = postgres ]; then
  SQL "WITH moved AS ($FAIL RETURNING issue_id)
       INSERT INTO delivery_counts AS c (issue_id, status, n)
       SELECT issue_id, t.status, t.sign * COUNT(*) FROM moved
              CROSS JOIN (VALUES ('pending', -1), ('failed', 1)) AS t (status, sign)
        GROUP BY issue_id, t.status, t.sign ORDER BY 1, 2
           ON CONFLICT (issue_id, status) DO UPDATE SET n = c.n + EXCLUDED.n" >/dev/null
else
  SQL "$FAIL" >/dev/null
fi
sleep 2
time_pages "sending"
sent=$(SQL "SELECT COUNT(*) FROM deliveries WHERE issue_id = 1 AND status = 'sent'")
echo
echo "send started in $(python3 -c "print(f'{$t1 - $t0:.1f}')") s (snapshot of $snap recipients); $sent sent while timing at $RATE/s"
