#!/usr/bin/env bash
# CI: the tiny mini recipe is deterministic. Run after ci/run_mini.sh, whose fresh run is the
# first: this runs the recipe a second time from scratch in a copy of egs/mini made in a temporary
# directory (another path, as a fresh clone would be; the code is this checkout's), with an empty
# cache of derived weights and transcripts (DUALSPEECH_CACHE, as on a fresh machine), and compares
# the two exp/tiny/RESULTS.md byte for byte (the table carries the corpus fingerprint, so equal
# tables also mean equal corpora). On a difference it prints the diff and which checkpoints
# differ (stage 3 USTokenizer, stage 4 codec, stage 6 model), to show where the runs parted.
#   ci/run_twice.sh               # one more tiny run (as long as ci/run_mini.sh's)
#   KEEP=1 ci/run_twice.sh        # keep the copy (its path is printed) instead of removing it
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
first=$repo/egs/mini
[ -f "$first/exp/tiny/RESULTS.md" ] || { echo "[ci] no egs/mini/exp/tiny/RESULTS.md: run ci/run_mini.sh first" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/dualspeech-rerun.XXXXXX")
second=$work/mini
if [ "${KEEP:-0}" = 1 ]; then trap 'echo "[ci] second run kept in $second"' EXIT; else trap 'rm -rf "$work"' EXIT; fi
# the recipe's own files; its links (path.sh, cmd.sh, pipeline.sh, utils) point into this checkout
mkdir -p "$second"
cp -r "$first/run.sh" "$first/conf" "$second/"
for link in path.sh cmd.sh pipeline.sh utils; do ln -s "$(readlink -f "$first/$link")" "$second/$link"; done
start=$(date +%s)
rc=0
(cd "$second" && DUALSPEECH_CACHE=$work/cache ./run.sh --size tiny) > "$work/run.log" 2>&1 || rc=$?
echo "[ci] second egs/mini/run.sh --size tiny (in $second): exit code $rc after $(( $(date +%s) - start )) s"
if [ $rc -ne 0 ]; then tail -n 40 "$work/run.log" >&2; exit $rc; fi
if cmp -s "$first/exp/tiny/RESULTS.md" "$second/exp/tiny/RESULTS.md"; then
  echo "[ci] the two tiny runs wrote the same RESULTS.md"
  exit 0
fi
echo "[ci] the two tiny runs wrote different RESULTS.md (< first run, > second run):" >&2
diff "$first/exp/tiny/RESULTS.md" "$second/exp/tiny/RESULTS.md" >&2 || true
checkpoints() { (cd "$1" && find exp/tiny dump/tiny \( -name '*.pt' -o -name '*.safetensors' \) \
  ! -path '*/checkpoints/*' -exec sha256sum {} + | LC_ALL=C sort -k2); }
echo "[ci] checkpoints that differ between the runs:" >&2
diff <(checkpoints "$first") <(checkpoints "$second") | sed -n 's/^> [0-9a-f]* *//p' >&2 || true
exit 1
