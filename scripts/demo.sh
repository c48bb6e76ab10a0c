#!/usr/bin/env bash
# The main job on the embedded default (SQLite store, in-process lock, no server): builds, then
# replays the sample trace into sqlite:tradecapture.db and prints outcomes and positions.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/build.sh"
cd "$root"
rm -f tradecapture.db tradecapture.db-wal tradecapture.db-shm outcomes.jsonl
echo "== replay examples/sample-trades.jsonl into sqlite:tradecapture.db" >&2
build/bin/tradecapture replay --outcomes outcomes.jsonl examples/sample-trades.jsonl
echo "== outcomes (outcomes.jsonl)" >&2
cat outcomes.jsonl
echo "== positions" >&2
build/bin/tradecapture positions
