#!/bin/sh
# run.sh - how ctest starts one browser test (tests/CMakeLists.txt): a Node.js >= 20 runs the
# file given. That is $BATON_NODE, else the one scripts/install-deps.sh --test installed into
# $BATON_NODE_DIR when the system's was older (Debian 12 ships 18), else the system's node.
# Without a usable node the test cannot even start, so this says what to install, and skips
# (exit 77) instead of failing when BATON_SKIP_BROWSER=1.
node_dir=${BATON_NODE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/baton/node}
node=${BATON_NODE:-}
if [ -z "$node" ]; then
  if [ -x "$node_dir/node_modules/.bin/node" ]; then
    node=$node_dir/node_modules/.bin/node
  else
    node=$(command -v node || true)
  fi
fi
major=0
if [ -n "$node" ]; then
  major=$("$node" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
fi
if [ "$major" -lt 20 ]; then
  msg="no Node.js >= 20 (found: ${node:-none} ${major}); run scripts/install-deps.sh --test to install the browser tests' dependencies (Debian chromium, Node.js, playwright-core in tests/browser)"
  if [ "${BATON_SKIP_BROWSER:-}" = 1 ]; then
    echo "SKIP: $msg (BATON_SKIP_BROWSER=1)"
    exit 77
  fi
  echo "FAIL: $msg"
  exit 1
fi
exec "$node" "$@"
