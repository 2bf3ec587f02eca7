#!/usr/bin/env bash
# test_validate.sh - `baton validate` and `baton config show` through the real binary:
# every problem (configuration and workflows) reported at once with file:line:column,
# the example config valid with an empty environment, and secrets from the environment
# never printed.
set -euo pipefail

: "${BATON_BINARY:?BATON_BINARY must point at the baton binary}"
: "${BATON_SOURCE_DIR:?BATON_SOURCE_DIR must point at the source tree}"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# Run baton with a clean environment (plus any NAME=VALUE arguments before --).
baton_env() {
    local vars=(PATH="$PATH" HOME="$tmp")
    [[ -n ${ASAN_OPTIONS:-} ]] && vars+=(ASAN_OPTIONS="$ASAN_OPTIONS")
    [[ -n ${UBSAN_OPTIONS:-} ]] && vars+=(UBSAN_OPTIONS="$UBSAN_OPTIONS")
    while [[ $1 != -- ]]; do
        vars+=("$1")
        shift
    done
    shift
    env -i "${vars[@]}" "$BATON_BINARY" "$@"
}

# 1. Three distinct mistakes, all reported, each at its own position, exit 1.
cat >"$tmp/bad.yaml" <<'EOF'
server:
  port: 8080
agnets:
  claude:
    preset: claude
trackers:
  github:
    token: ${BATON_TEST_MISSING_TOKEN}
queue:
  backoff_base: 10 seconds
EOF
set +e
out=$(cd "$tmp" && baton_env -- validate --config bad.yaml 2>&1)
rc=$?
set -e
echo "$out"
[[ $rc -eq 1 ]] || fail "validate of bad.yaml exited $rc, want 1"
grep -qF "bad.yaml:3:1: error: unknown key 'agnets'; did you mean 'agents'?" <<<"$out" ||
    fail "unknown key not reported at 3:1"
grep -qF "bad.yaml:8:12: error: environment variable BATON_TEST_MISSING_TOKEN is not set" <<<"$out" ||
    fail "missing \$VAR not reported at 8:12"
grep -qF "bad.yaml:10:17: error: '10 seconds' is not a valid duration" <<<"$out" ||
    fail "bad duration not reported at 10:17"
grep -qE '\(fix: .+\)' <<<"$out" || fail "problems carry no fix hint"
[[ $(grep -c ': error: ' <<<"$out") -eq 3 ]] || fail "expected exactly 3 problems"

# The same through --json.
set +e
json=$(cd "$tmp" && baton_env -- validate --config bad.yaml --json)
rc=$?
set -e
[[ $rc -eq 1 ]] || fail "validate --json exited $rc, want 1"
python3 - "$json" <<'EOF' || fail "validate --json output is wrong"
import json, sys
d = json.loads(sys.argv[1])
assert d["ok"] is False, d
got = sorted((p["line"], p["column"]) for p in d["problems"])
assert got == [(3, 1), (8, 12), (10, 17)], got
for p in d["problems"]:
    assert p["file"] == "bad.yaml" and p["message"] and p["hint"], p
EOF

# 2. The example configuration is valid with an empty environment.
out=$(baton_env -- validate --config "$BATON_SOURCE_DIR/examples/baton.yaml") ||
    fail "examples/baton.yaml does not validate: $out"
grep -q ": OK" <<<"$out" || fail "no OK line: $out"
json=$(baton_env -- validate --config "$BATON_SOURCE_DIR/examples/baton.yaml" --json)
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["ok"] is True and d["problems"] == [], d' "$json" ||
    fail "validate --json of the example is not ok"

# With no --config and no ./baton.yaml: defaults plus environment, valid.
(cd "$tmp" && baton_env -- validate) >/dev/null || fail "defaults do not validate"

# 3. Workflows are validated too: an unknown variable, an unknown agent and a cycle
#    between two workflows are three located errors (a cycle is reported once, at the
#    calling step of its first workflow); nothing else is reported.
mkdir -p "$tmp/wf" "$tmp/wfok"
cat >"$tmp/wf.yaml" <<'EOF'
agents:
  claude: {type: replay, file: none.jsonl}
workflows_dir: wf
EOF
cat >"$tmp/wf/a.yaml" <<'EOF'
id: wf-a
steps:
  - id: fix
    agent: claud
    prompt: "Fix {{ task.titel }}"
  - id: more
    workflow: wf-b
EOF
cat >"$tmp/wf/b.yaml" <<'EOF'
id: wf-b
steps:
  - workflow: wf-a
EOF
set +e
out=$(cd "$tmp" && baton_env -- validate --config wf.yaml 2>&1)
rc=$?
set -e
echo "$out"
[[ $rc -eq 1 ]] || fail "validate with bad workflows exited $rc, want 1"
grep -qF "wf/a.yaml:4:12: error: unknown agent 'claud' in step 'fix'; did you mean 'claude'?" <<<"$out" ||
    fail "unknown agent not reported at wf/a.yaml:4:12"
grep -qF "wf/a.yaml:5:21: error: unknown variable 'task.titel' in the prompt of step 'fix'; did you mean 'task.title'?" <<<"$out" ||
    fail "unknown variable not reported at wf/a.yaml:5:21"
grep -qF "wf/a.yaml:7:15: error: workflow cycle: wf-a → wf-b → wf-a (step 'more')" <<<"$out" ||
    fail "cycle not reported at wf/a.yaml:7:15"
[[ $(grep -c ': error: ' <<<"$out") -eq 3 ]] || fail "expected exactly 3 workflow problems"
grep -qF "3 problems found." <<<"$out" || fail "no problem count"
set +e
json=$(cd "$tmp" && baton_env -- validate --config wf.yaml --json)
set -e
python3 - "$json" <<'EOF' || fail "validate --json of bad workflows is wrong"
import json, sys
d = json.loads(sys.argv[1])
assert d["ok"] is False, d
got = sorted((p["file"], p["line"], p["column"]) for p in d["problems"])
assert got == [("wf/a.yaml", 4, 12), ("wf/a.yaml", 5, 21), ("wf/a.yaml", 7, 15)], got
assert all(p["hint"] for p in d["problems"]), d
EOF

#    A valid user workflow (beside the built-ins) passes; the OK line counts them.
cat >"$tmp/wfok.yaml" <<'EOF'
agents:
  claude: {type: replay, file: none.jsonl}
workflows_dir: wfok
EOF
cat >"$tmp/wfok/review.yaml" <<'EOF'
metadata:
  id: my-review
  name: My review
inputs:
  - name: BASE_BRANCH
    default: main
steps:
  - id: diff
    action: git-operation
    inputs: {operation: diff, base: "{{ inputs.BASE_BRANCH }}"}
  - id: review
    persona: code_reviewer
    prompt: "Review {{ task.title }}: {{ steps.diff.output | truncate(2000) }}"
  - id: branch
    workflow: wf3
    inputs: {WORK_ITEM_ID: "{{ task.identifier }}", TITLE: "{{ task.title }}"}
EOF
out=$(cd "$tmp" && baton_env -- validate --config wfok.yaml) || fail "a valid workflow does not validate: $out"
echo "$out"
grep -qF "wfok.yaml: OK (1 agent, 0 projects, store sqlite; 27 workflows (7 unavailable: agents not configured), 27 personas)" <<<"$out" ||
    fail "OK line does not count workflows and personas: $out"
json=$(cd "$tmp" && baton_env -- validate --config wfok.yaml --json)
python3 -c '
import json, sys
d = json.loads(sys.argv[1])
assert d["ok"] is True and d["problems"] == [], d
assert d["workflows"]["count"] == 27 and d["personas"] == 27, d
un = {u["id"]: u["missing"] for u in d["workflows"]["unavailable"]}
assert un["default"] == "needs agents codex, gemini", un
assert "my-review" not in un and "wf0" not in un, un
' "$json" || fail "validate --json does not describe the workflows"

# 4. Secrets from the environment never appear in `config show`.
secret=ghp_secretvalue123
for fmt in "" "--json"; do
    out=$(cd "$tmp" && baton_env GITHUB_TOKEN=$secret GITHUB_REPO=acme/api \
        DATABASE_URL=postgres://baton:dbpw456@db:5432/baton JIRA_API_TOKEN=jiratok789 \
        -- config show --config "$BATON_SOURCE_DIR/examples/baton.yaml" $fmt)
    for s in $secret dbpw456 jiratok789; do
        if grep -qF "$s" <<<"$out"; then
            fail "config show $fmt printed the secret $s"
        fi
    done
    grep -qF "acme/api" <<<"$out" || fail "config show $fmt lost the non-secret GITHUB_REPO"
    grep -qF "***" <<<"$out" || fail "config show $fmt does not show masked secrets"
done
json=$(cd "$tmp" && baton_env GITHUB_TOKEN=$secret -- config show --json)
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["trackers"]["github"]["token"] == "***", d["trackers"]' "$json" ||
    fail "config show --json does not mask trackers.github.token"

# 5. Usage errors: no subcommand, a typo with a suggestion.
set +e
err=$(baton_env -- config 2>&1)
rc=$?
[[ $rc -eq 2 ]] || fail "'baton config' exited $rc, want 2"
err=$(baton_env -- config shwo 2>&1)
rc=$?
set -e
[[ $rc -eq 2 ]] || fail "'baton config shwo' exited $rc, want 2"
grep -qF "Did you mean 'show'?" <<<"$err" || fail "no suggestion for 'shwo': $err"
baton_env -- validate --help | grep -q "usage: baton validate" || fail "validate --help"

echo "ok"
