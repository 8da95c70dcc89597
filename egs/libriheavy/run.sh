#!/usr/bin/env bash
# Libriheavy over Libri-Light: the paper's 1000 h VC training subset (no test set here;
# VC is evaluated on VCTK pairs in ../vctk).
# Stages, options and Slurm: ./run.sh --help and ../../docs/recipes.md; corpus location: db.sh.
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh

./pipeline.sh \
  --corpus libriheavy --corpus-vars "LIBRIHEAVY LIBRILIGHT" \
  --prepare-args "--librilight-dir db/librilight --subset medium --hours 1000" \
  --train-parts train \
  --ustokenizer-ckpt ../multitask/exp/ustokenizer_paper/final.pt \
  --codec-config conf/codec.yaml --speaker-config conf/speaker.yaml \
  --train-config conf/dualspeechlm.yaml \
  "$@"
