#!/usr/bin/env bash
# The recovery figures of docs/reliability.md: runs tests/faults.rs with its FIGURE lines shown.
#
#   - 421 to every 5th message against a clean run, N recipients each, through the same
#     submission server (tests/smtp_server.py, aiosmtpd: the server is the bottleneck, so
#     compare the ratio, not the rates);
#   - the relay down 1 s and 10 s under a send (seconds to the first accepted message after it
#     returned);
#   - a full disk under SQLite (a 40 MB tmpfs; needs root), filled and freed under a send and
#     signups;
#   - with DB=postgres: PostgreSQL restarted under `issue send`, writes refused under it
#     (a read-only default, connections ended), and SIGTERM with it stopped (worker, serve,
#     issue send); with LONG=1 also the 60 s outage under `issue send` (stops the shared server
#     for a minute).
#
# Usage: bench/faults.sh [N=3000] [DB=sqlite|postgres] [PROFILE=debug|release]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3000}
DB=${2:-sqlite}
PROFILE=${3:-debug}
PG_ADMIN=${VERDICTS_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}
flags=()
[ "$PROFILE" = release ] && flags+=(--release)
if [ "$DB" = postgres ]; then
  export VERDICTS_TEST_DATABASE_URL=$PG_ADMIN
fi
export VERDICTS_FAULTS_N=$N
args=(--test-threads=1 --nocapture)
[ "${LONG:-0}" = 1 ] && args+=(--include-ignored)
cargo test "${flags[@]}" --test faults -- "${args[@]}" 2>&1 | grep -E '^FIGURE|^test |test result' \
  | sed 's/^test \(.*\) \.\.\. FIGURE/FIGURE/'
