#!/usr/bin/env bash
# Stage 1 of the multitask recipe: every corpus of the paper into one data dir, from the db/
# links stage 0 made. The corpus recipes' own stage-1 scripts are reused where they have one.
# Usage: local/data.sh DATADIR NJ [PYTHON]   (run by the pipeline from the recipe dir with its --python)
set -euo pipefail
datadir=$1 nj=$2 python=${3:-python}
../librispeech/local/data.sh "$datadir" "$nj" "$python"        # LibriSpeech ASR (+ SQA, SC)
../cvss/local/data.sh "$datadir" "$nj" "$python"               # CoVoST 2 S2TT, CVSS-C T2ST
prepare() { "$python" -m dualspeech.bin.prepare_corpus "$@" --output-dir "$datadir" --nj "$nj"; }
prepare libritts_r --corpus-dir db/libritts_r
prepare iemocap --corpus-dir db/iemocap
prepare libriheavy --corpus-dir db/libriheavy --librilight-dir db/librilight --subset medium --hours 1000
prepare vctk --corpus-dir db/vctk
