#!/usr/bin/env bash
# The README's test command: installs what the build and tests need (Debian packages),
# builds baton with AddressSanitizer + UndefinedBehaviorSanitizer into build-test/,
# starts a throw-away PostgreSQL cluster for the store tests, and runs every test with
# ctest (unit, integration, lint). Exits non-zero when anything fails.
#
#   scripts/test.sh                 everything
#   scripts/test.sh -R store        only tests whose name matches (ctest -R)
#   scripts/test.sh --build-only    install and build, run nothing
#
# BATON_TEST_PG_URL=postgres://... uses that server instead of a throw-away cluster;
# BATON_SKIP_PG=1 starts none (the store suite then skips PostgreSQL, loudly).
# The genuine Claude Code / Codex CLIs (about 640 MB) are installed in $BATON_CLI_DIR (default
# ~/.cache/baton/real-clis); BATON_SKIP_REAL_CLIS=1 installs and tests neither.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --test

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build-test -DBATON_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-test -j"$jobs"
if [[ "${1:-}" == "--build-only" ]]; then exit 0; fi

# PostgreSQL for the store suite. The script warns loudly and prints nothing when the
# server cannot run; the suite then skips its PostgreSQL cases and says so.
pg_started=0
if [[ -z "${BATON_TEST_PG_URL:-}" && -z "${BATON_SKIP_PG:-}" ]]; then
  pg_env=$(scripts/pg-test-cluster.sh start || true)
  if [[ -n "$pg_env" ]]; then
    eval "$pg_env"
    pg_started=1
  fi
fi
cleanup() { [[ $pg_started -eq 1 ]] && scripts/pg-test-cluster.sh stop >/dev/null 2>&1 || true; }
trap cleanup EXIT

ctest --test-dir build-test --output-on-failure -j"$jobs" "$@"
