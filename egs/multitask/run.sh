#!/usr/bin/env bash
# The paper's pipeline (DualSpeechLM-USToken): every corpus prepared into one data dir, the
# USTokenizer trained on LibriSpeech + IEMOCAP (+ SQA), tokens extracted everywhere, DualSpeechLM
# trained on all 8 tasks with the paper's task mixture, all test sets decoded and scored into
# one table. Corpus locations: the corpus recipes' db.sh files. See README.md.
# Stages, options and Slurm: ./run.sh --help and ../../docs/recipes.md.
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
. ./db.sh

ls_train="librispeech:train-clean-100 librispeech:train-clean-360 librispeech:train-other-500"
sc_train="" sc_test=""   # the spoken SC corpus exists when the SQA annotations do
if [ -n "$LIBRISPEECH_SQA" ]; then
  sc_train="sc:train-clean-100 sc:train-clean-360 sc:train-other-500"; sc_test="sc:test-clean"
fi

./pipeline.sh \
  --corpus librispeech \
  --corpus-vars "LIBRISPEECH LIBRISPEECH_SQA? LIBRITTS_R CVSS_C COVOST2 COMMONVOICE_EN COMMONVOICE_ES COMMONVOICE_FR IEMOCAP LIBRIHEAVY LIBRILIGHT VCTK" \
  --train-parts "$ls_train $sc_train libritts_r:train-clean-100 libritts_r:train-clean-360 libritts_r:train-other-500 covost2:train cvss_c:train_es cvss_c:train_fr iemocap:train libriheavy:train" \
  --dev-parts "librispeech:dev-clean libritts_r:dev-clean covost2:dev cvss_c:dev_es cvss_c:dev_fr" \
  --test-parts "librispeech:test-clean librispeech:test-other $sc_test libritts_r:test-clean libritts_r:test-other covost2:test cvss_c:test_es cvss_c:test_fr iemocap:test vctk:test" \
  --ustokenizer-parts "$ls_train iemocap:train" \
  --ustokenizer-config conf/ustokenizer_paper.yaml \
  --codec-config conf/codec_wavtokenizer.yaml --speaker-config conf/speaker_wavlm.yaml \
  --train-config conf/dualspeechlm_phi35.yaml --decode-config conf/decode_paper.yaml \
  --score-config conf/score_paper.yaml --results-title "DualSpeechLM-USToken (multitask, paper setup)" \
  "$@"
