#!/usr/bin/env bash
# Download corpus parts with one of lhotse's download functions (recipes' local/download.sh).
#   utils/download_lhotse.sh FUNCTION DIR "PART PART ..." [PYTHON]   (PYTHON: the pipeline's --python)
# DIR is the corpus directory as db.sh names it; the archives unpack into DIR's parent under
# DIR's name, so DIR must end in the name the archives use (LibriSpeech, LibriTTS_R).
# lhotse skips parts that are already unpacked.
set -euo pipefail
[ $# -eq 3 ] || [ $# -eq 4 ] || { echo "usage: $0 FUNCTION DIR \"PARTS\" [PYTHON]" >&2; exit 1; }
func=$1 dir=$2 parts=$3 python=${4:-python}
[ -n "$dir" ] || { echo "$0: the corpus directory is not set in db.sh" >&2; exit 1; }
mkdir -p "$(dirname "$dir")"
"$python" - "$func" "$(dirname "$dir")" "$(basename "$dir")" "$parts" <<'PY'
import sys
from pathlib import Path

import lhotse.recipes

func, parent, name, parts = sys.argv[1:]
out = Path(getattr(lhotse.recipes, func)(parent, parts.split()))
if out.name != name:
    sys.exit(f"{func} unpacked into {out}; set the db.sh directory to it (it must end in {out.name})")
PY
