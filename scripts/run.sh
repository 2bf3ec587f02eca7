#!/usr/bin/env bash
# The README's run command: installs the build dependencies, builds an optimised baton
# into build/, and starts `baton serve` with the example configuration (embedded SQLite
# store under ./var, dashboard and API on http://127.0.0.1:8080). Extra arguments are
# passed to `baton serve`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBATON_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target baton
exec ./build/baton serve --config examples/baton.yaml "$@"
