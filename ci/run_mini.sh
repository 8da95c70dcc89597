#!/usr/bin/env bash
# CI: the mini recipe end to end at --size tiny (synthetic corpus, random tiny models, all 9
# stages), from scratch, then a check that the results table has a row for each of the 8 tasks.
# Run after the unit tests (the environment must be installed: make install).
#   ci/run_mini.sh                 # fresh run (removes the tiny outputs of earlier runs first)
#   KEEP=1 ci/run_mini.sh          # keep earlier outputs: unchanged stages are skipped
# Extra arguments go to egs/mini/run.sh (e.g. --stop-stage 5).
set -euo pipefail
cd "$(dirname "$0")/../egs/mini"
start=$(date +%s)
[ "${KEEP:-0}" = 1 ] || rm -rf db/mini_tiny data/tiny dump/tiny exp/tiny
rc=0
./run.sh --size tiny "$@" || rc=$?
echo "[ci] egs/mini/run.sh --size tiny: exit code $rc after $(( $(date +%s) - start )) s"
[ $rc -eq 0 ] || exit $rc
if [ -f exp/tiny/RESULTS.md ]; then
  missing=""
  for task in asr s2tt ser sqa tts t2st vc sc; do
    grep -q "| $task |" exp/tiny/RESULTS.md || missing+=" $task"
  done
  [ -z "$missing" ] || { echo "[ci] results table lacks tasks:$missing" >&2; exit 1; }
  echo "[ci] results table has all 8 tasks"
elif [ $# -eq 0 ]; then
  echo "[ci] no exp/tiny/RESULTS.md after a full run" >&2; exit 1
fi
