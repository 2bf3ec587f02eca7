#!/usr/bin/env bash
# The CLI skeleton: help, version, per-command help, and helpful errors with a
# "did you mean" for unknown commands and options (exit code 2 for usage errors).
set -uo pipefail
b="${BATON_BINARY:?}"
fail=0
check() { # check NAME EXPECTED_RC PATTERN -- CMD...
  local name=$1 want=$2 pat=$3; shift 4
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [[ $rc -ne $want ]]; then echo "FAIL $name: exit $rc, want $want: $out"; fail=1; return; fi
  if ! grep -qE -- "$pat" <<<"$out"; then echo "FAIL $name: no /$pat/ in: $out"; fail=1; return; fi
  echo "ok   $name"
}
check version     0 '^baton [0-9]+\.[0-9]+\.[0-9]+'          -- "$b" --version
check help        0 'validate'                                -- "$b" --help
check help-lists  0 'Exit codes'                              -- "$b" help
check help-cmd    0 'usage: baton validate'                   -- "$b" help validate
check cmd-help    0 'usage: baton validate'                   -- "$b" validate --help
check no-args     2 'usage: baton'                            -- "$b"
check typo-cmd    2 "'valdate' is not a baton command. Did you mean 'validate'"  -- "$b" valdate
check typo-opt    2 "unknown option '--confg'. Did you mean '--config'"          -- "$b" validate --confg x.yaml
check missing-val 2 "needs a value"                           -- "$b" validate --config
check help-typo   2 "Did you mean 'config'"                   -- "$b" help confg
exit $fail
