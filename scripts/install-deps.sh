#!/usr/bin/env bash
# Installs the Debian packages that building, running and testing baton need.
# Idempotent and quiet when everything is already present. Debian 12, run as root
# (or with sudo available).
#
#   scripts/install-deps.sh          build + run dependencies
#   scripts/install-deps.sh --test   also what the test suite needs (PostgreSQL, git, python3, wrk...)
set -euo pipefail

build_pkgs=(
  build-essential cmake pkg-config git ca-certificates
  libuv1-dev libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libyaml-dev
  libsqlite3-dev libpq-dev libssl-dev libedit-dev
)
test_pkgs=(
  libcmocka-dev python3 postgresql postgresql-contrib curl procps clang-format cppcheck
)

want=("${build_pkgs[@]}")
if [[ "${1:-}" == "--test" ]]; then
  want+=("${test_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
