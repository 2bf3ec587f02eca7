#!/usr/bin/env bash
# Lint checks run by ctest: `tests/lint.sh format` fails on any file clang-format would
# change; `tests/lint.sh cppcheck` fails on any cppcheck warning. Both cover src/,
# tests/ and bench/ C sources.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files -co --exclude-standard -- 'src/*.[ch]' 'tests/*.[ch]' 'bench/*.[ch]' 2>/dev/null ||
                     find src tests bench -name '*.[ch]' 2>/dev/null)
case "${1:-}" in
format)
  bad=()
  for f in "${files[@]}"; do
    [[ -f "$f" ]] || continue
    clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
  done
  if [[ ${#bad[@]} -gt 0 ]]; then
    echo "not clang-formatted (run: clang-format -i FILE):" >&2
    printf '  %s\n' "${bad[@]}" >&2
    exit 1
  fi
  echo "format: ${#files[@]} files clean"
  ;;
cppcheck)
  cppcheck -q --error-exitcode=1 --enable=warning,performance,portability --inline-suppr \
    --std=c11 -I src -I tests/unit -D_GNU_SOURCE --suppress=missingIncludeSystem \
    "${files[@]}"
  echo "cppcheck: ${#files[@]} files clean"
  ;;
*)
  echo "usage: tests/lint.sh format|cppcheck" >&2
  exit 2
  ;;
esac
