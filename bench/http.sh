#!/usr/bin/env bash
# bench/http.sh - HTTP throughput of `baton serve` GET /health against nginx `return 200`,
# interleaved (baton, nginx, baton, nginx, ...) so both see the same machine load.
#
#   bench/http.sh [BUILD_DIR]      (default: build-bench, configured Release here)
#
# Env: RUNS (default 2), DURATION (10s), THREADS (2), CONNS (64).
# Prints one line per run and a summary; paste the output into bench/RESULTS.md with
# the command. /health reads the store twice (worker list + task stats), so this is
# the whole request path: MHD on the loop, router, async suspend/resume, SQLite.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build-bench}
RUNS=${RUNS:-2}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
SCRATCH=$(mktemp -d /tmp/baton-bench.XXXXXX)
BATON_PID=
NGINX_STARTED=

cleanup() {
    [ -n "$BATON_PID" ] && kill -TERM "$BATON_PID" 2>/dev/null && wait "$BATON_PID" 2>/dev/null || true
    [ -n "$NGINX_STARTED" ] && nginx -p "$SCRATCH/nginx" -c conf -s stop 2>/dev/null || true
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "bench/http.sh: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
if ! command -v nginx >/dev/null; then
    echo "bench/http.sh: installing nginx-light for the reference server" >&2
    apt-get install -y -qq nginx-light >/dev/null || { echo "bench/http.sh: cannot install nginx-light" >&2; exit 1; }
fi

if [ ! -x "$BUILD/baton" ]; then
    # -Wno-format-truncation: base/time.c trips it at -O2 without sanitizers (reported).
    cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBATON_SANITIZE=OFF -DBATON_TESTS=OFF \
        -DCMAKE_C_FLAGS=-Wno-format-truncation >/dev/null
    cmake --build "$BUILD" --target baton -j"$(nproc)" >/dev/null
fi

# baton, logging at warn so the access log does not measure the terminal.
cd "$SCRATCH"
LOG_LEVEL=warn "$BUILD/baton" serve --port 0 --store "sqlite:$SCRATCH/bench.db" >"$SCRATCH/baton.out" 2>"$SCRATCH/baton.err" &
BATON_PID=$!
for _ in $(seq 50); do grep -q 'listening on' "$SCRATCH/baton.out" && break; sleep 0.1; done
BATON_PORT=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$SCRATCH/baton.out")
[ -n "$BATON_PORT" ] || { cat "$SCRATCH/baton.err" >&2; exit 1; }

# nginx returning a similar small JSON body, one worker (baton is one thread).
NGINX_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$SCRATCH/nginx/logs"
cat >"$SCRATCH/nginx/conf" <<CONF
worker_processes 1;
pid $SCRATCH/nginx/nginx.pid;
error_log $SCRATCH/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / { default_type application/json; return 200 '{"status":"healthy"}'; }
  }
}
CONF
nginx -p "$SCRATCH/nginx" -c conf
NGINX_STARTED=1

run() { # name url
    local out rps p50 p99
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$2")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    local errs
    errs=$(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ' || true)
    printf '%-6s %10s req/s  p50 %-8s p99 %-8s %s\n' "$1" "$rps" "$p50" "$p99" "$errs"
}

echo "# wrk -t$THREADS -c$CONNS -d$DURATION --latency; $(nproc) cores; $(date -u +%FT%TZ)"
curl -fsS "http://127.0.0.1:$BATON_PORT/health" >/dev/null
for i in $(seq "$RUNS"); do
    run baton "http://127.0.0.1:$BATON_PORT/health"
    run nginx "http://127.0.0.1:$NGINX_PORT/"
done
