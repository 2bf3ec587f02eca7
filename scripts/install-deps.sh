#!/usr/bin/env bash
# Installs the Debian packages that building, running and testing baton need.
# Idempotent and quiet when everything is already present. Debian 12, run as root
# (or with sudo available).
#
#   scripts/install-deps.sh          build + run dependencies
#   scripts/install-deps.sh --test   also what the test suite needs (PostgreSQL, git, python3, wrk...),
#                                    Debian's chromium and Node.js with playwright-core (npm ci in
#                                    tests/browser, the version its package-lock.json pins) for the
#                                    dashboard's browser tests, and the genuine Claude Code and Codex
#                                    CLIs from npm, at pinned versions, for tests/integration/test_real_clis.py
#
# The CLIs go to $BATON_CLI_DIR (default ${XDG_CACHE_HOME:-~/.cache}/baton/real-clis), outside
# the repository; about 640 MB. BATON_SKIP_REAL_CLIS=1 skips them (that test then skips too).
set -euo pipefail

# Pinned: versions known to work offline against tests/fakes/llm_server.py. Bumping one
# means re-running tests/integration/test_real_clis.py against the new version.
CLAUDE_CODE_VERSION=2.1.197
CODEX_VERSION=0.169.0
# Node.js for the browser tests when the system's is older than 20 (Debian 12 ships 18).
BROWSER_NODE_VERSION=22.23.3

build_pkgs=(
  build-essential cmake pkg-config git ca-certificates
  libuv1-dev libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libyaml-dev
  libsqlite3-dev libpq-dev libssl-dev libedit-dev zlib1g-dev
)
test_pkgs=(
  libcmocka-dev python3 postgresql postgresql-contrib curl procps clang-format cppcheck
  chromium
)

test_mode=0
[[ "${1:-}" == "--test" ]] && test_mode=1
real_clis=0
[[ $test_mode -eq 1 && "${BATON_SKIP_REAL_CLIS:-}" != 1 ]] && real_clis=1

want=("${build_pkgs[@]}")
if [[ $test_mode -eq 1 ]]; then
  want+=("${test_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
# npm installs the CLIs; Debian 12's nodejs 18 runs Codex's JS launcher (it needs node >= 16;
# Claude Code is a native binary). A node that is already there, e.g. NodeSource's package with
# its bundled npm, is used as it is.
# The browser tests need node too (playwright-core 1.65 wants node >= 20: checked below).
if [[ $test_mode -eq 1 ]] && ! { command -v node && command -v npm; } >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

if [[ ${#missing[@]} -gt 0 ]]; then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm failed (output in $1) installing $2: say whether the registry was unreachable.
npm_failed() {
  local unreachable='ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|network'
  if grep -qE "$unreachable" "$1"; then
    echo "install-deps: npm cannot reach its registry ($(npm config get registry 2>/dev/null))" \
      "to install $2. Check the network, or npm's proxy/registry settings" \
      "(npm config set proxy ...)${3:+, or $3}." >&2
  else
    echo "install-deps: npm could not install $2:" >&2
  fi
  grep -v '^npm error  *at ' "$1" | tail -n 15 >&2
  exit 1
}

# npm install PKGS... into DIR (its own package.json records the pins), or fail saying why
# and what to set to skip (HINT). Few, short retries: an unreachable registry fails in
# seconds instead of minutes.
npm_install_into() {
  local dir=$1 hint=$2 out
  shift 2
  mkdir -p "$dir"
  out=$(mktemp)
  if ! npm install --prefix "$dir" --save-exact --no-audit --no-fund --loglevel=error \
    --fetch-retries=2 --fetch-retry-mintimeout=1000 --fetch-retry-maxtimeout=5000 \
    "$@" >"$out" 2>&1; then
    npm_failed "$out" "$* into $dir" "$hint"
  fi
  rm -f "$out"
}

# The dashboard's browser tests: playwright-core (no browser download: the tests use
# /usr/bin/chromium) in tests/browser/node_modules, reinstalled with npm ci when missing or
# not the version package-lock.json pins.
if [[ $test_mode -eq 1 ]]; then
  browser_dir=$(cd "$(dirname "$0")/.." && pwd)/tests/browser
  # playwright-core 1.65 needs Node.js >= 20; Debian 12's nodejs is 18. Then npm itself
  # installs a pinned Node.js (the npm package `node`, a prebuilt binary from the registry)
  # into $BATON_NODE_DIR, where tests/browser/run.sh finds it.
  node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  node_dir=${BATON_NODE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/baton/node}
  if [[ $node_major -lt 20 ]] &&
    [[ "$("$node_dir/node_modules/.bin/node" --version 2>/dev/null)" != "v$BROWSER_NODE_VERSION" ]]; then
    echo "install-deps: node $(node --version 2>/dev/null) is older than the browser tests'" \
      "Node.js 20: installing node@$BROWSER_NODE_VERSION into $node_dir" >&2
    npm_install_into "$node_dir" "set BATON_SKIP_BROWSER=1 to skip the browser tests" \
      "node@$BROWSER_NODE_VERSION"
  fi
  browser_fresh() {
    (cd "$browser_dir" && node -e '
      const fs = require("fs");
      const want = JSON.parse(fs.readFileSync("package-lock.json")).packages;
      for (const [p, v] of Object.entries(want)) {
        if (!p) continue;
        const have = JSON.parse(fs.readFileSync(p + "/package.json")).version;
        if (have !== v.version) process.exit(1);
      }' 2>/dev/null)
  }
  if ! browser_fresh; then
    echo "install-deps: npm ci in $browser_dir (playwright-core for the browser tests)" >&2
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    if ! (cd "$browser_dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund \
      --loglevel=error --fetch-retries=2 --fetch-retry-mintimeout=1000 \
      --fetch-retry-maxtimeout=5000) >"$log" 2>&1; then
      npm_failed "$log" "playwright-core into $browser_dir" \
        "set BATON_SKIP_BROWSER=1 to skip the browser tests"
    fi
    rm -f "$log"
  fi
fi

[[ $real_clis -eq 1 ]] || exit 0

# The genuine CLIs, into a folder of their own (a package.json there records the pins).
cli_dir=${BATON_CLI_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/baton/real-clis}
bin=$cli_dir/node_modules/.bin
have_clis() {
  [[ "$("$bin/claude" --version 2>/dev/null)" == "$CLAUDE_CODE_VERSION (Claude Code)" ]] &&
    [[ "$("$bin/codex" --version 2>/dev/null)" == "codex-cli $CODEX_VERSION" ]]
}
have_clis && exit 0

pkgs=("@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" "@openai/codex@$CODEX_VERSION")
echo "install-deps: installing ${pkgs[*]} into $cli_dir (about 640 MB)" >&2
npm_install_into "$cli_dir" "set BATON_SKIP_REAL_CLIS=1 to skip the real-CLI test" "${pkgs[@]}"
if ! have_clis; then
  echo "install-deps: after npm install, $bin/claude and $bin/codex do not report" \
    "$CLAUDE_CODE_VERSION and $CODEX_VERSION:" >&2
  "$bin/claude" --version >&2 || true
  "$bin/codex" --version >&2 || true
  exit 1
fi
