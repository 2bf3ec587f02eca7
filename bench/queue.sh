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

# run_pg_round() { ... }   # PostgreSQL engineer: bt-bench-queue "$BATON_TEST_PG_URL" ...

median() { # tag field
  python3 - "$out" "$1" "$2" <<'PY'
import json, statistics, sys
vals = [json.loads(l)[sys.argv[3]] for l in open(sys.argv[1]) if json.loads(l)["tag"] == sys.argv[2]]
print(f"{statistics.median(vals):.3f}" if vals else "-")
PY
}

for r in $(seq 1 "$ROUNDS"); do
  run_sqlite_round
  # [[ -n "${BATON_TEST_PG_URL:-}" ]] && run_pg_round
done

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
echo "raw JSON lines:"
sed 's/^/    /' "$out"
