#!/usr/bin/env bash
# The offline codec the project ships (dualspeech/assets/codec_unitmel.pt, model card beside it):
# its corpus, training with the learning curve, the benchmark, and the install into the package.
#
#   ./run.sh                        # all stages (about an hour on 2 CPU cores)
#   ./run.sh --stage 2 --stop-stage 2   # the benchmark of a trained codec only
#
# Stages:
#   0  the codec corpus: every installed voice except the mini corpus's test voices (db/codec)
#   1  train the codec on it (exp/unitmel: unitmel.pt, codec.yaml; the curve in exp/unitmel/train.log)
#   2  benchmark: bench codec_resynthesis on the mini default test voices (unseen) and dev voices
#      (seen), Whisper base; the mini corpus is made first if absent (exp/unitmel/resynthesis.txt)
#   3  install: copy the checkpoint to dualspeech/assets/ and print the sha256 line of
#      dualspeech/pretrained/assets.py (update that line and the model card's figures by hand)
set -euo pipefail
cd "$(dirname "$0")"
. ./path.sh
. utils/log.sh

stage=0            # first stage to run
stop_stage=3       # last stage to run
nj=2               # parallel TTS jobs (stage 0)
utts_per_voice=120 # codec corpus size: utterances per voice (21 voices)
conf=conf/codec_unitmel.yaml   # codec config with its unitmel_train section
train_args=        # extra train_codec arguments, e.g. "--set unitmel_train.steps=1000"
num_eval=24        # utterances scored per part in stage 2
force=false        # redo stages whose inputs did not change
help_message="Train, measure and install the shipped offline codec (see the header of run.sh)."
. utils/parse_options.sh
. utils/stage.sh

stage_dir=exp/stages
exp=exp/unitmel
mini=../mini/db/mini_default
in_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
read -ra train_argv <<< "$train_args"

if in_stage 0 && stage_begin 0 corpus --args "$utts_per_voice"; then
  python -m dualspeech.bin.make_codec_corpus --out-dir db/codec --utts-per-voice "$utts_per_voice" --nj "$nj"
  stage_end 0 corpus db/codec/cuts
fi

if in_stage 1 && stage_begin 1 train --inputs "$conf" db/codec/cuts --args "$train_args" --move-aside "$exp"; then
  mkdir -p "$exp"
  python -m dualspeech.bin.train_codec --conf "$conf" --cuts db/codec/cuts/codec_cuts_train.jsonl.gz \
    --out-dir "$exp" ${train_argv[@]+"${train_argv[@]}"} 2>&1 | tee "$exp/train.log"
  stage_end 1 train "$exp/unitmel.pt" "$exp/codec.yaml"
fi

if in_stage 2 && stage_begin 2 bench --inputs "$exp/unitmel.pt" --args "$num_eval"; then
  python -m dualspeech.bin.bench codec_resynthesis --conf "$exp/codec.yaml" --data-dir "$mini" \
    --num-eval "$num_eval" --whisper whisper:base --seen-part dev | tee "$exp/resynthesis.txt"
  stage_end 2 bench "$exp/resynthesis.txt"
fi

if in_stage 3; then
  cp "$exp/unitmel.pt" "$MAIN_ROOT/dualspeech/assets/codec_unitmel.pt"
  log "installed $MAIN_ROOT/dualspeech/assets/codec_unitmel.pt; its line in dualspeech/pretrained/assets.py:"
  echo "    \"codec_unitmel.pt\": (\"$(sha256sum < "$exp/unitmel.pt" | cut -d' ' -f1)\", \"codec_unitmel.md\"),"
fi
