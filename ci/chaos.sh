#!/usr/bin/env bash
# Fault injection: the tiny mini recipe is SIGKILLed (its whole process group) at N seeded random
# moments spread over stages 0-8 and re-run after each kill; every output is compared with an
# uninterrupted run (ci/chaos.py says how). Last lines: kills=N identical=M and
# chaos_identical_fraction=M/N; the exit code is 0 only when every kill left identical outputs
# and no process of the killed run. Uses and removes egs/mini's tiny outputs, like ci/run_mini.sh
# (do not run both at once). About 3 runs of the tiny recipe in time.
#   ci/chaos.sh                   # 20 kills, seed 0
#   ci/chaos.sh --kills 30 --seed 1
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 ci/chaos.py "$@"
