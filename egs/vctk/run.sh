#!/usr/bin/env bash
# VCTK 0.92: the 400 seeded VC evaluation pairs (part test).
# Stages, options and Slurm: ./run.sh --help and ../../docs/recipes.md; corpus location: db.sh.
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh

./pipeline.sh \
  --corpus vctk --corpus-vars VCTK \
  --test-parts test \
  --ustokenizer-ckpt ../multitask/exp/ustokenizer_paper/final.pt \
  --codec-config conf/codec.yaml --speaker-config conf/speaker.yaml \
  --train-config conf/dualspeechlm.yaml --decode-config conf/decode.yaml --score-config conf/score.yaml \
  "$@"
