#!/usr/bin/env bash
# The README's test command works from a fresh clone: clone the committed tree into a
# temporary folder, run `scripts/test.sh --build-only` there (dependency install +
# sanitizer build from nothing) and `scripts/run.sh --help` (the release build), check
# the binary runs, then plant a failing test and
# check that the test command exits non-zero (so CI cannot pass over a failure).
set -euo pipefail
src="${BATON_SOURCE_DIR:?}"
if [[ -n "${BATON_IN_FRESH_CLONE:-}" ]]; then echo "nested run: skipped"; exit 0; fi
if ! git -C "$src" rev-parse HEAD >/dev/null 2>&1; then
  echo "SKIPPED: $src is not a git checkout"; exit 0
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/baton-clone-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
git clone -q --no-hardlinks "$src" "$tmp/baton"
cd "$tmp/baton"
export BATON_IN_FRESH_CLONE=1
# Use the outer run's PostgreSQL (if any) rather than starting another.
[[ -n "${BATON_TEST_PG_URL:-}" ]] || export BATON_SKIP_PG=1

scripts/test.sh --build-only
./build-test/baton --version | grep -q '^baton '
# The README's run command: its optimised build (warnings differ at -O2) and the
# serve command line it starts (--help makes it exit instead of serving).
scripts/run.sh --help | grep -q 'usage: baton serve'

# A failing test must fail the test command.
printf '#!/bin/sh\necho "planted failure"\nexit 1\n' > tests/integration/test_zz_planted_failure.sh
chmod +x tests/integration/test_zz_planted_failure.sh
if scripts/test.sh -R 'integration/zz_planted_failure' >"$tmp/out.txt" 2>&1; then
  cat "$tmp/out.txt"
  echo "FAIL: the test command exited 0 although a test failed" >&2
  exit 1
fi
grep -q 'planted failure' "$tmp/out.txt"
grep -q 'exec scripts/test.sh' .ci/run
echo "fresh clone builds; a failing test fails the test command"
