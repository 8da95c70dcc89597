#!/usr/bin/env bash
# CoVoST 2 en->de (S2TT) and CVSS-C es/fr->en (T2ST) over Common Voice (local/data.sh).
# Stages, options and Slurm: ./run.sh --help and ../../docs/recipes.md; corpus location: db.sh.
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh

./pipeline.sh \
  --corpus cvss_c --corpus-db db/cvss_c \
  --corpus-vars "CVSS_C COVOST2 COMMONVOICE_EN COMMONVOICE_ES COMMONVOICE_FR" \
  --train-parts "covost2:train cvss_c:train_es cvss_c:train_fr" \
  --dev-parts "covost2:dev cvss_c:dev_es cvss_c:dev_fr" \
  --test-parts "covost2:test cvss_c:test_es cvss_c:test_fr" \
  --ustokenizer-ckpt ../multitask/exp/ustokenizer_paper/final.pt \
  --codec-config conf/codec.yaml --speaker-config conf/speaker.yaml \
  --train-config conf/dualspeechlm.yaml --decode-config conf/decode.yaml --score-config conf/score.yaml \
  "$@"
