#!/usr/bin/env bash
# Installs the Debian packages, then configures and builds tradecapture (Release) into build/.
# Usage: scripts/build.sh [extra cmake -D options]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/install-deps.sh"
jobs=${TRADECAPTURE_JOBS:-$(nproc)}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release "$@" >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
grep -- '^-- tradecapture:' "$log" >&2 || true  # which optional parts are built, and why not
cmake --build "$root/build" -j "$jobs"
