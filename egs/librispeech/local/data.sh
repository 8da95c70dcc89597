#!/usr/bin/env bash
# Stage 1 of this recipe: LibriSpeech manifests (ASR; SQA when db/librispeech_sqa links the
# SALMONN-style annotations) and, with the annotations, the spoken SC set synthesised by TTS.
# Usage: local/data.sh DATADIR NJ [PYTHON]   (run by the pipeline from the recipe dir with its --python)
set -euo pipefail
datadir=$1 nj=$2 python=${3:-python}
sqa=()
[ -e db/librispeech_sqa ] && sqa=(--sqa-json db/librispeech_sqa)
"$python" -m dualspeech.bin.prepare_corpus librispeech --corpus-dir db/librispeech \
  --output-dir "$datadir" --nj "$nj" "${sqa[@]}"
if [ ${#sqa[@]} -gt 0 ]; then
  "$python" -m dualspeech.bin.prepare_corpus sc --corpus-dir db/librispeech \
    --output-dir "$datadir" --nj "$nj" "${sqa[@]}"
fi
