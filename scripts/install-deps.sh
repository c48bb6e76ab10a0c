#!/usr/bin/env bash
# Installs every build and test dependency of tradecapture from Debian packages.
# Idempotent: does nothing when everything is already installed.
set -euo pipefail
pkgs=(
  build-essential cmake pkg-config git ca-certificates
  libboost-dev libboost-system-dev
  libsoci-dev libsqlite3-dev libpq-dev sqlite3
  libhiredis-dev libspdlog-dev libfmt-dev doctest-dev libbenchmark-dev
  libsimdjson-dev nlohmann-json3-dev libcli11-dev librdkafka-dev prometheus-cpp-dev
  postgresql redis-server
  prometheus
  nginx curl gnuplot-nox faketime time
  help2man
  clang-14 libclang-rt-14-dev
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
