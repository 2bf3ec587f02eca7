#!/usr/bin/env bash
# bench/dashboard.sh - the dashboard's first load against a Release build: runs
# tests/browser/test_dashboard_perf.mjs (300 tasks stored; bytes transferred by the first
# load of /, from the DevTools protocol, SSE excluded; the 'baton:board-rendered' mark,
# relative to navigation start) RUNS times and prints each run and the medians.
#
#   bench/dashboard.sh [BUILD_DIR]      (default: build-rel, configured Release here)
#
# Env: RUNS (default 5). Needs what the browser tests need: scripts/install-deps.sh --test
# (Debian chromium, Node.js >= 20, playwright-core in tests/browser).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build-rel}
RUNS=${RUNS:-5}

cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" --target baton -j"$(nproc 2>/dev/null || echo 2)" >/dev/null

echo "machine: $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) CPUs"
echo "baton: $BUILD/baton ($(git -C "$SRC" rev-parse --short HEAD))"
bytes=()
ms=()
for i in $(seq 1 "$RUNS"); do
  out=$(BATON_BINARY=$BUILD/baton BATON_SOURCE_DIR=$SRC BATON_BROWSER_OUT=$BUILD/browser-shots \
    "$SRC/tests/browser/run.sh" "$SRC/tests/browser/test_dashboard_perf.mjs" 2>&1 || true)
  line=$(grep -m1 '^PERF ' <<<"$out" || true)
  if [[ -z "$line" ]]; then
    echo "run $i: no PERF line; the test said:" >&2
    tail -n 30 <<<"$out" >&2
    exit 1
  fi
  echo "run $i: ${line#PERF }"
  b=$(sed -n 's/.*transfer_bytes=\([0-9]*\).*/\1/p' <<<"$line")
  m=$(sed -n 's/.*board_rendered_ms=\([0-9.]*\).*/\1/p' <<<"$line")
  bytes+=("$b")
  ms+=("${m:-nan}")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo "median over $RUNS runs: transfer $(median "${bytes[@]}") bytes, board rendered $(median "${ms[@]}") ms after navigation start"
