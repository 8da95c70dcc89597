#!/usr/bin/env bash
# LibriSpeech: ASR; with SALMONN SQA annotations (LIBRISPEECH_SQA in db.sh) also SQA, and the
# spoken SC corpus synthesised from them (local/data.sh; add e.g. --train-parts "... sc:<part>").
# Stages, options and Slurm: ./run.sh --help and ../../docs/recipes.md; corpus location: db.sh.
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh

./pipeline.sh \
  --corpus librispeech --corpus-vars "LIBRISPEECH LIBRISPEECH_SQA?" \
  --train-parts "train-clean-100 train-clean-360 train-other-500" \
  --dev-parts dev-clean --test-parts "test-clean test-other" \
  --ustokenizer-ckpt ../multitask/exp/ustokenizer_paper/final.pt \
  --codec-config conf/codec.yaml --speaker-config conf/speaker.yaml \
  --train-config conf/dualspeechlm.yaml --decode-config conf/decode.yaml --score-config conf/score.yaml \
  "$@"
