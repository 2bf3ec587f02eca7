#!/usr/bin/env bash
# pg-test-cluster.sh - a throw-away PostgreSQL cluster for baton's tests and benchmarks.
#
#   eval "$(scripts/pg-test-cluster.sh start)"   # initdb + start; prints `export BATON_TEST_PG_URL=...`
#   scripts/pg-test-cluster.sh url                # prints the URL of the running cluster
#   scripts/pg-test-cluster.sh status             # exit 0 when it is running
#   scripts/pg-test-cluster.sh stop               # stops it and removes its directory
#
# The cluster lives in a fresh temp directory (data + unix socket), listens on 127.0.0.1
# on a free port, trusts every local connection (-A trust: tests only!) and has one
# database, baton_test. PostgreSQL refuses to run as root, so as root the server runs as
# the `postgres` user (runuser/su); as anyone else it runs as that user. `start` is
# idempotent: when the cluster recorded in the state file is up it only prints the URL.
#
# When PostgreSQL is not installed or does not start, `start` prints a loud warning on
# stderr, prints nothing on stdout and exits 0, so the test suite runs and skips its
# PostgreSQL cases (saying so). Set BATON_PG_REQUIRED=1 to make that an error (exit 2).
#
# Environment: PG_BIN (default: newest /usr/lib/postgresql/*/bin), BATON_PG_STATE (state
# file; default ${TMPDIR:-/tmp}/baton-pg-test-$UID-<checkout hash>.state, so each clone has
# its own cluster), BATON_PG_PORT (fixed port).
set -euo pipefail

# One cluster per checkout (and user): another clone's start/stop must not touch ours.
repo_key=$(cd "$(dirname "$0")/.." && pwd -P | cksum | cut -d' ' -f1)
state="${BATON_PG_STATE:-${TMPDIR:-/tmp}/baton-pg-test-$(id -u)-$repo_key.state}"
db=baton_test

pg_bin() {
  if [[ -n "${PG_BIN:-}" ]]; then echo "$PG_BIN"; return; fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [[ -z "$d" ]] && command -v pg_ctl >/dev/null; then d=$(dirname "$(command -v pg_ctl)"); fi
  echo "$d"
}

# Run a command as the cluster's owner.
as_owner() {
  if [[ $(id -u) -ne 0 ]]; then "$@"; return; fi
  if command -v runuser >/dev/null; then runuser -u postgres -- "$@"; return; fi
  su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
}

warn() {
  {
    echo "############################################################################"
    echo "## WARNING: $*"
    echo "## PostgreSQL tests will be SKIPPED (BATON_TEST_PG_URL is not set)."
    echo "## Install it with: scripts/install-deps.sh --test   (Debian: apt-get install postgresql)"
    echo "############################################################################"
  } >&2
  if [[ "${BATON_PG_REQUIRED:-0}" == 1 ]]; then exit 2; fi
  exit 0
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

load_state() {
  [[ -f "$state" ]] || return 1
  # shellcheck disable=SC1090
  . "$state"
  [[ -n "${DIR:-}" && -n "${PORT:-}" ]]
}

running() {
  load_state || return 1
  local bin
  bin=$(pg_bin)
  [[ -n "$bin" ]] || return 1
  as_owner "$bin/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1
}

url() { echo "postgres://postgres@127.0.0.1:$PORT/$db"; }

cmd_start() {
  if running; then
    echo "export BATON_TEST_PG_URL=$(url)"
    return
  fi
  rm -f "$state"
  local bin
  bin=$(pg_bin)
  [[ -n "$bin" && -x "$bin/initdb" ]] || warn "PostgreSQL server binaries not found (set PG_BIN)."
  if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
    warn "running as root and there is no 'postgres' user to run the server as."
  fi
  DIR=$(mktemp -d "${TMPDIR:-/tmp}/baton-pg.XXXXXX")
  PORT="${BATON_PG_PORT:-$(free_port)}"
  if [[ $(id -u) -eq 0 ]]; then chown postgres: "$DIR"; fi
  chmod 700 "$DIR"
  if ! as_owner "$bin/initdb" -D "$DIR/data" -U postgres -A trust -E UTF8 --no-sync \
      >"$DIR/initdb.log" 2>&1; then
    cat "$DIR/initdb.log" >&2 || true
    rm -rf "$DIR"
    warn "initdb failed."
  fi
  if ! as_owner "$bin/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 30 start \
      -o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$DIR -c max_connections=200" \
      >/dev/null 2>&1; then
    tail -n 20 "$DIR/server.log" >&2 || true
    rm -rf "$DIR"
    warn "the PostgreSQL server did not start (port $PORT)."
  fi
  if ! as_owner "$bin/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$db" >/dev/null 2>&1; then
    as_owner "$bin/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$DIR"
    warn "could not create database $db."
  fi
  printf 'DIR=%q\nPORT=%q\n' "$DIR" "$PORT" >"$state"
  echo "pg-test-cluster: PostgreSQL running in $DIR on 127.0.0.1:$PORT" >&2
  echo "export BATON_TEST_PG_URL=$(url)"
}

cmd_stop() {
  if ! load_state; then
    echo "pg-test-cluster: no cluster recorded in $state" >&2
    return 0
  fi
  local bin
  bin=$(pg_bin)
  if [[ -n "$bin" && -d "$DIR/data" ]]; then
    as_owner "$bin/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 ||
      as_owner "$bin/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  case "$DIR" in
  "${TMPDIR:-/tmp}"/baton-pg.*) rm -rf "$DIR" ;;
  esac
  rm -f "$state"
  echo "pg-test-cluster: stopped" >&2
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
url)
  running || { echo "pg-test-cluster: not running; use start" >&2; exit 1; }
  url
  ;;
status) running ;;
*)
  echo "usage: $0 start|stop|url|status" >&2
  exit 64
  ;;
esac
