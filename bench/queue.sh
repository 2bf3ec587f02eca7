#!/usr/bin/env bash
# queue.sh - issue 3's queue benchmark: the store's queue against its anchor, interleaved
# (anchor, baton, anchor, baton, ...) because this machine's speed drifts 20-40% between
# minutes; the medians of ROUNDS rounds go to stdout as a Markdown table.
#
#   bench/queue.sh [BUILD_DIR]       env: ROUNDS (5), N (20000), BATCH (32), SCRATCH (dir
#                                    on the real disk, default under the build dir)
#
# Structure for other backends: each backend has run_<backend>_round (one of each
# measurement, appending JSON lines to $out) and a summary; PostgreSQL adds
# run_pg_round / summarize_pg below (BATON_TEST_PG_URL) next to the SQLite ones.
set -euo pipefail
build=${1:-build}
Q=$build/bench/bt-bench-queue
NAIVE=$build/bench/bt-bench-sqlite-naive
ROUNDS=${ROUNDS:-5}
N=${N:-20000}
BATCH=${BATCH:-32}
SCRATCH=${SCRATCH:-$build/bench-scratch}
mkdir -p "$SCRATCH"
out=$(mktemp)
trap 'rm -f "$out"; rm -rf "$SCRATCH"' EXIT

# One round: anchor, baton k=1, anchor, baton k=8, anchor, baton k=1 with a subscriber
# (as `baton serve` has: metrics), anchor.
run_sqlite_round() {
  rm -f "$SCRATCH"/naive.db*
  "$NAIVE" "$SCRATCH/naive.db" "$N" | sed 's/^{/{"tag":"sqlite_naive",/' >>"$out"
  for v in "1" "8" "1 sub"; do
    set -- $v
    rm -f "$SCRATCH"/q.db*
    "$Q" "sqlite:$SCRATCH/q.db" "$N" "$1" "$BATCH" ${2:-} |
      sed "s/^{/{\"tag\":\"sqlite_k$1${2:-}\",/" >>"$out"
    rm -f "$SCRATCH"/naive.db*
    "$NAIVE" "$SCRATCH/naive.db" "$N" | sed 's/^{/{"tag":"sqlite_naive",/' >>"$out"
  done
}

# PostgreSQL rounds (BATON_TEST_PG_URL; scripts/pg-test-cluster.sh start): baton's PG
# backend (1 and 8 claimers at PG_BATCH, and 4 claimers x 500 = pg-boss's tuned shape),
# interleaved with two anchors on the same server: the naive pgbench loop of
# perf-anchors.md b4 (claim txn, then complete txn, partial "ready" index; 1 and 8
# clients) and pg-boss 10.4.2 tuned (batchSize 500, 4 work() subscriptions, polling
# 0.5 s; bench/pgboss.mjs). SKIP_SQLITE=1 runs only these.
PGURL=${BATON_TEST_PG_URL:-}
PG_N=${PG_N:-20000}
PG_BATCH=${PG_BATCH:-100}
PG_T=${PG_T:-10}
PSQL=(psql -qX -v ON_ERROR_STOP=1)
here=$(cd "$(dirname "$0")" && pwd)
pgboss_ok=0

pg_drop_schema() { "${PSQL[@]}" "$PGURL" -c "SET client_min_messages=warning; DROP SCHEMA IF EXISTS $1 CASCADE" >/dev/null; }

pg_baton() { # tag claimers batch
  pg_drop_schema bench_q
  "$Q" "$PGURL?schema=bench_q" "$PG_N" "$2" "$3" | sed "s/^{/{\"tag\":\"$1\",/" >>"$out"
}

pg_naive() { # clients
  "${PSQL[@]}" "$PGURL" >/dev/null <<'SQL'
SET client_min_messages = warning;
DROP TABLE IF EXISTS bench_jobs;
CREATE TABLE bench_jobs (id bigserial PRIMARY KEY, state text NOT NULL DEFAULT 'ready',
                         payload jsonb, created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO bench_jobs (payload) SELECT '{"kind":"noop"}' FROM generate_series(1, 400000);
CREATE INDEX bench_jobs_ready ON bench_jobs (id) WHERE state = 'ready';
VACUUM ANALYZE bench_jobs;
SQL
  cat >"$SCRATCH/claim2.sql" <<'SQL'
UPDATE bench_jobs SET state = 'running' WHERE id = (SELECT id FROM bench_jobs WHERE state = 'ready' ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id \gset
UPDATE bench_jobs SET state = 'done' WHERE id = :id;
SQL
  local j=1
  [[ $1 -gt 1 ]] && j=2
  rm -f "$SCRATCH"/pgb_log*
  (cd "$SCRATCH" && pgbench -n -c "$1" -j "$j" -T "$PG_T" -f claim2.sql -l --log-prefix=pgb_log \
    "$PGURL" >pgb.out 2>&1)
  python3 - "$SCRATCH" "$1" >>"$out" <<'PY'
import glob, json, re, statistics, sys
d, c = sys.argv[1], int(sys.argv[2])
tps = float(re.search(r"tps = ([0-9.]+) \(without", open(d + "/pgb.out").read()).group(1))
lat = sorted(int(l.split()[2]) / 1000.0 for f in glob.glob(d + "/pgb_log*") for l in open(f))
print(json.dumps({"tag": f"pg_naive_c{c}", "items_per_s": tps, "claim_p50_ms": lat[len(lat) // 2],
                  "claim_p99_ms": lat[int(len(lat) * 0.99)], "clients": c}))
PY
}

pg_pgboss() {
  [[ $pgboss_ok == 1 ]] || return 0
  pg_drop_schema pgboss_bench
  node "$here/pgboss.mjs" "$PGURL" "$PG_N" 500 4 0.5 | sed 's/^{/{"tag":"pgboss",/' >>"$out"
}

pg_setup() {
  if [[ ! -d "$here/node/node_modules/pg-boss" ]]; then
    npm install --prefix "$here/node" --no-audit --no-fund >/dev/null 2>&1 ||
      echo "queue.sh: npm install of pg-boss failed; the pg-boss anchor is skipped" >&2
  fi
  [[ -d "$here/node/node_modules/pg-boss" ]] && pgboss_ok=1
  return 0
}

run_pg_round() {
  pg_naive 1
  pg_baton pg_k1 1 "$PG_BATCH"
  pg_naive 8
  pg_baton pg_k8 8 "$PG_BATCH"
  pg_pgboss
  pg_baton pg_k4b500 4 500
}

summarize_pg() {
  local boss naive1 naive8
  boss=$(median pgboss items_per_s)
  naive1=$(median pg_naive_c1 items_per_s)
  naive8=$(median pg_naive_c8 items_per_s)
  echo
  echo "| backend | claimers | batch | items/s | claim p50 ms | claim p99 ms | pgbench naive items/s (same clients) | pg-boss tuned items/s | ratio vs pg-boss | ratio vs naive |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for t in k1 k8 k4b500; do
    local k b naive ips
    case $t in k1) k=1 b=$PG_BATCH naive=$naive1 ;; k8) k=8 b=$PG_BATCH naive=$naive8 ;; k4b500) k=4 b=500 naive=$naive8 ;; esac
    ips=$(median pg_$t items_per_s)
    echo "| postgres | $k | $b | ${ips%.*} | $(median pg_$t claim_p50_ms) | $(median pg_$t claim_p99_ms) | ${naive%.*} | ${boss%.*} | $(python3 -c "print(f'{$ips/$boss:.2f}x' if '$boss' != '-' else '-')") | $(python3 -c "print(f'{$ips/$naive:.2f}x')") |"
  done
  echo
  echo "pgbench naive (claim txn + complete txn per item): c1 ${naive1%.*}/s p50 $(median pg_naive_c1 claim_p50_ms) ms p99 $(median pg_naive_c1 claim_p99_ms) ms; c8 ${naive8%.*}/s p50 $(median pg_naive_c8 claim_p50_ms) ms p99 $(median pg_naive_c8 claim_p99_ms) ms (latency of the claim+complete pair)"
  echo "pg-boss enqueue/s (insert of 1000-job arrays): $(median pgboss enqueue_per_s | cut -d. -f1); baton PG enqueue/s (1000 creates per loop turn): $(median pg_k1 enqueue_per_s | cut -d. -f1)"
}

median() { # tag field
  python3 - "$out" "$1" "$2" <<'PY'
import json, statistics, sys
vals = [json.loads(l)[sys.argv[3]] for l in open(sys.argv[1]) if json.loads(l)["tag"] == sys.argv[2]]
print(f"{statistics.median(vals):.3f}" if vals else "-")
PY
}

[[ -n "$PGURL" ]] && pg_setup
for r in $(seq 1 "$ROUNDS"); do
  [[ "${SKIP_SQLITE:-0}" == 1 ]] || run_sqlite_round
  if [[ -n "$PGURL" ]]; then run_pg_round; fi
done

if [[ "${SKIP_SQLITE:-0}" != 1 ]]; then

anchor=$(median sqlite_naive items_per_s)
echo "| backend | claimers | subscriber | batch | items/s | claim p50 ms | claim p99 ms | CPU µs/item | anchor items/s (naive, FULL) | ratio |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for t in k1 k8 k1sub; do
  k=${t#k}; k=${k%sub}
  sub=no; [[ $t == *sub ]] && sub=yes
  ips=$(median sqlite_$t items_per_s)
  ratio=$(python3 -c "print(f'{$ips/$anchor:.2f}x')")
  echo "| sqlite | $k | $sub | $BATCH | ${ips%.*} | $(median sqlite_$t claim_p50_ms) | $(median sqlite_$t claim_p99_ms) | $(median sqlite_$t cpu_us_per_item) | ${anchor%.*} | $ratio |"
done
echo
echo "anchor: claim p50 $(median sqlite_naive claim_p50_ms) ms (one commit + fsync), CPU $(median sqlite_naive cpu_us_per_item) µs/item"
echo "enqueue/s (1000 creates per loop turn, one commit each): $(median sqlite_k1 enqueue_per_s | cut -d. -f1)"
fi
if [[ -n "$PGURL" ]]; then summarize_pg; fi
echo "raw JSON lines:"
sed 's/^/    /' "$out"
