#!/usr/bin/env bash
# bench/http.sh - HTTP throughput and latency of `baton serve`, interleaved with two
# anchors so all three see the same machine load:
#   nginx   `return 200` with a small JSON body (the ceiling for a one-process server);
#   fastapi the seed 002 routes in Python FastAPI + uvicorn (bench/fastapi_app.py, the
#           seed's own stack; uvloop + httptools when installed, one process).
# Routes: GET /health (baton reads the store twice: worker list + task stats) and
# GET /work/next?worker_id=bench on an empty queue (baton: a durable worker upsert and a
# claim in SQLite, FULL sync, group-committed per loop turn).
# Also records baton's idle resident memory (VmRSS) after start, after one request, and
# after all runs, and the largest resident mappings (kB per library) at idle.
#
#   bench/http.sh [BUILD_DIR]      (default: build-bench, configured Release here)
#
# Env: RUNS (default 3), DURATION (10s), THREADS (2), CONNS (64), PYTHON (/usr/bin/python3).
# Prints one line per run and a median summary; paste it into bench/RESULTS.md with the
# command. Debian packages: wrk nginx-light python3-fastapi python3-uvicorn
# (python3-uvloop python3-httptools for uvicorn's fast path).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$SRC/build-bench}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
PYTHON=${PYTHON:-/usr/bin/python3}
SCRATCH=$(mktemp -d /tmp/baton-bench.XXXXXX)
BATON_PID=
FASTAPI_PID=
NGINX_STARTED=

cleanup() {
    [ -n "$BATON_PID" ] && kill -TERM "$BATON_PID" 2>/dev/null && wait "$BATON_PID" 2>/dev/null || true
    [ -n "$FASTAPI_PID" ] && kill -TERM "$FASTAPI_PID" 2>/dev/null && wait "$FASTAPI_PID" 2>/dev/null || true
    [ -n "$NGINX_STARTED" ] && nginx -p "$SCRATCH/nginx" -c conf -s stop 2>/dev/null || true
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "bench/http.sh: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
if ! command -v nginx >/dev/null; then
    echo "bench/http.sh: installing nginx-light for the reference server" >&2
    apt-get install -y -qq nginx-light >/dev/null || { echo "bench/http.sh: cannot install nginx-light" >&2; exit 1; }
fi
if ! "$PYTHON" -c 'import fastapi, uvicorn' 2>/dev/null; then
    echo "bench/http.sh: installing python3-fastapi python3-uvicorn for the FastAPI anchor" >&2
    apt-get install -y -qq python3-fastapi python3-uvicorn >/dev/null ||
        { echo "bench/http.sh: cannot install python3-fastapi python3-uvicorn" >&2; exit 1; }
fi

if [ ! -x "$BUILD/baton" ]; then
    cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBATON_SANITIZE=OFF -DBATON_TESTS=OFF >/dev/null
    cmake --build "$BUILD" --target baton -j"$(nproc)" >/dev/null
fi

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# Resident kB per mapping (library, [heap], the binary), largest first.
rss_top() {
    awk '/^[0-9a-f]+-/ {lib = $6 == "" ? "(anon)" : $6} /^Rss:/ {r[lib] += $2}
         END {for (l in r) print r[l], l}' "/proc/$1/smaps" | sort -rn | head -"${2:-12}"
}

# baton, logging at warn so the access log does not measure the terminal. No tokens:
# loopback only and every scope open, so /work/next needs no worker token. The API's
# per-client rate limit (server.rate_limit, 1200/min by default) is off: wrk is one client.
cd "$SCRATCH"
printf 'server:\n  rate_limit: {requests: 0}\n' >"$SCRATCH/baton.yaml"
LOG_LEVEL=warn "$BUILD/baton" serve --port 0 --config "$SCRATCH/baton.yaml" --store "sqlite:$SCRATCH/bench.db" >"$SCRATCH/baton.out" 2>"$SCRATCH/baton.err" &
BATON_PID=$!
for _ in $(seq 50); do grep -q 'listening on' "$SCRATCH/baton.out" && break; sleep 0.1; done
BATON_PORT=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$SCRATCH/baton.out")
[ -n "$BATON_PORT" ] || { cat "$SCRATCH/baton.err" >&2; exit 1; }
sleep 0.5
RSS_START=$(rss_kb "$BATON_PID")
TOP_START=$(rss_top "$BATON_PID")

# nginx returning a similar small JSON body, one worker (baton is one thread).
NGINX_PORT=$(free_port)
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

# FastAPI + uvicorn, one process.
FASTAPI_PORT=$(free_port)
"$PYTHON" -m uvicorn fastapi_app:app --app-dir "$SRC/bench" --host 127.0.0.1 --port "$FASTAPI_PORT" \
    --no-access-log --log-level warning >"$SCRATCH/fastapi.log" 2>&1 &
FASTAPI_PID=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$FASTAPI_PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$FASTAPI_PORT/health" >/dev/null || { cat "$SCRATCH/fastapi.log" >&2; exit 1; }

curl -fsS "http://127.0.0.1:$BATON_PORT/health" >/dev/null
curl -fsS "http://127.0.0.1:$BATON_PORT/work/next?worker_id=bench" >/dev/null
RSS_FIRST=$(rss_kb "$BATON_PID")

RESULTS="$SCRATCH/results"
: >"$RESULTS"
run() { # name url
    local out rps p50 p99 errs
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$2")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    errs=$(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ' || true)
    printf '%-16s %10s req/s  p50 %-8s p99 %-8s %s\n' "$1" "$rps" "$p50" "$p99" "$errs"
    echo "$1 $rps $p50 $p99" >>"$RESULTS"
}

echo "# wrk -t$THREADS -c$CONNS -d$DURATION --latency; $(nproc) cores; $(date -u +%FT%TZ)"
for i in $(seq "$RUNS"); do
    run baton/health "http://127.0.0.1:$BATON_PORT/health"
    run nginx/return200 "http://127.0.0.1:$NGINX_PORT/"
    run fastapi/health "http://127.0.0.1:$FASTAPI_PORT/health"
    run baton/work-next "http://127.0.0.1:$BATON_PORT/work/next?worker_id=bench"
    run fastapi/work-next "http://127.0.0.1:$FASTAPI_PORT/work/next?worker_id=bench"
done
sleep 1
RSS_AFTER=$(rss_kb "$BATON_PID")

# Medians per series (latencies normalised to ms), then ratios.
"$PYTHON" - "$RESULTS" <<'PY'
import statistics, sys
def ms(v):
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float(v)
rows = {}
for line in open(sys.argv[1]):
    name, rps, p50, p99 = line.split()
    rows.setdefault(name, []).append((float(rps), ms(p50), ms(p99)))
med = {n: tuple(statistics.median(x[i] for x in v) for i in range(3)) for n, v in rows.items()}
print("\n# medians of %d runs" % len(next(iter(rows.values()))))
print("| server/route | req/s | p50 ms | p99 ms |")
print("|---|---|---|---|")
for n, (r, a, b) in med.items():
    print("| %s | %s | %.2f | %.2f |" % (n, format(round(r), ","), a, b))
def ratio(a, b):
    return "%.2f×" % (med[a][0] / med[b][0]) if a in med and b in med else "n/a"
print("\nbaton/health vs nginx: %s; vs fastapi: %s; baton/work-next vs fastapi: %s"
      % (ratio("baton/health", "nginx/return200"), ratio("baton/health", "fastapi/health"),
         ratio("baton/work-next", "fastapi/work-next")))
PY
echo "baton VmRSS: ${RSS_START} kB idle after start, ${RSS_FIRST} kB after the first requests, ${RSS_AFTER} kB after all runs"
echo "baton idle, resident kB by mapping (largest first):"
sed 's/^/  /' <<<"$TOP_START"
