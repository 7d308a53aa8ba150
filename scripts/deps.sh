#!/usr/bin/env bash
# Installs the Debian 12 packages tpinfer needs that are missing (as root, or
# through sudo). Safe to run again: it installs nothing when all are present.
#   scripts/deps.sh          what building and running tpinfer needs
#   scripts/deps.sh --test   and what only the test suite uses (promtool, from
#                            the prometheus package, checks /metrics)
set -euo pipefail
packages=(
  g++ cmake ninja-build pkg-config ccache
  nlohmann-json3-dev libcli11-dev libpcre2-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-14 libclang-rt-14-dev
  openmpi-bin libopenmpi-dev iproute2 procps valgrind python3
)
if [ "${1:-}" = "--test" ]; then
  packages+=(prometheus)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
