#!/usr/bin/env bash
# IEMOCAP: SER, sessions 1-4 train (part train), session 5 test (part test).
# Stages, options and Slurm: ./run.sh --help and ../../docs/recipes.md; corpus location: db.sh.
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh

./pipeline.sh \
  --corpus iemocap --corpus-vars IEMOCAP \
  --train-parts train --test-parts test \
  --ustokenizer-ckpt ../multitask/exp/ustokenizer_paper/final.pt \
  --codec-config conf/codec.yaml --speaker-config conf/speaker.yaml \
  --train-config conf/dualspeechlm.yaml --decode-config conf/decode.yaml --score-config conf/score.yaml \
  "$@"
