#!/bin/sh
# run.sh - how ctest starts one browser test (tests/CMakeLists.txt): node runs the file
# given. Without node the test cannot even start, so this says what to install, and skips
# (exit 77) instead of failing when BATON_SKIP_BROWSER=1.
if ! command -v node >/dev/null 2>&1; then
  msg="node is not installed; run scripts/install-deps.sh --test to install the browser tests' dependencies (Debian chromium, Node.js, playwright-core in tests/browser)"
  if [ "${BATON_SKIP_BROWSER:-}" = 1 ]; then
    echo "SKIP: $msg (BATON_SKIP_BROWSER=1)"
    exit 77
  fi
  echo "FAIL: $msg"
  exit 1
fi
exec node "$@"
