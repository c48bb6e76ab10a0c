#!/usr/bin/env bash
# Alternated A/B of two `tradecapture` binaries replaying the same traces into SQLite:
#
#   bench/replay_ab.sh OLD_BIN NEW_BIN [PAIRS] TRACE...
#
# For each TRACE, PAIRS times (default 3): OLD then NEW, each
#   BIN replay --store sqlite:<fresh tmp db> --outcomes /dev/null TRACE
# printing one line per run: the trace, the pair, which binary, the 1-minute load average before
# the run, the lines/s the host reports, and user/system CPU seconds and peak RSS (KB) from
# /usr/bin/time. Build OLD_BIN from an older commit in a worktree, e.g.
#   git worktree add /tmp/old REV && cmake -S /tmp/old -B /tmp/old/build -DCMAKE_BUILD_TYPE=Release
#   cmake --build /tmp/old/build --target tradecapture
set -euo pipefail

if [[ $# -lt 3 || $1 == -h || $1 == --help ]]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  [[ $# -lt 3 ]] && exit 2 || exit 0
fi
old=$1 new=$2
shift 2
pairs=3
if [[ $1 =~ ^[0-9]+$ ]]; then pairs=$1; shift; fi
for bin in "$old" "$new"; do
  [[ -x $bin ]] || { echo "replay_ab.sh: $bin is not executable" >&2; exit 2; }
done
[[ -x /usr/bin/time ]] || bash "$(dirname "$0")/../scripts/install-deps.sh" >/dev/null

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tc-replay-ab.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
for trace in "$@"; do
  for ((pair = 1; pair <= pairs; ++pair)); do
    for which in old new; do
      bin=${!which}
      rm -f "$tmp"/ab.db*
      load=$(cut -d' ' -f1 /proc/loadavg)
      /usr/bin/time -f "%U %S %M" -o "$tmp/time" "$bin" replay --store "sqlite:$tmp/ab.db" \
        --outcomes /dev/null "$trace" 2>"$tmp/err" || { tail -5 "$tmp/err" >&2; exit 1; }
      rate=$(grep -o '([0-9]* lines/s)' "$tmp/err" | tr -d '()' | cut -d' ' -f1)
      echo "$(basename "$trace") pair$pair $which load=$load lines/s=$rate" \
        "user/sys/maxrss=$(cat "$tmp/time")"
    done
  done
done
