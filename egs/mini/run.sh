#!/usr/bin/env bash
# The offline 8-task demo: a synthetic multi-voice corpus, the USTokenizer, acoustic tokens of the
# shipped Unit-Mel codec, DualSpeechLM training, decoding and scoring of all 8 tasks on CPU.
# See README.md.
#
#   ./run.sh                      # the demo (--size default: real Whisper tiny.en + SmolLM2-135M)
#   ./run.sh --size tiny          # CI: tiny corpus, random tiny models (a few minutes)
#   ./run.sh --size tiny --stage 0 --stop-stage 2     # data stages only
#   ./run.sh --train-codec true   # retrain the Unit-Mel codec on this corpus (stage 4, ~26 min)
#
# --size tiny|small|default picks the corpus size and the configs (tiny: *_debug.yaml where a
# stage has one, else *_mini.yaml; small and default: *_mini.yaml); every other option goes to the
# shared pipeline (./run.sh --help). Each size keeps its own data/<size>, dump/<size> and
# exp/<size>, so sizes never invalidate each other.
set -euo pipefail
cd "$(dirname "$0")"

size=default
train_codec=false
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --size) [ $# -ge 2 ] || { echo "run.sh: --size needs tiny, small or default" >&2; exit 1; }
            size=$2; shift 2 ;;
    --size=*) size=${1#*=}; shift ;;
    --train-codec) [ $# -ge 2 ] || { echo "run.sh: --train-codec needs true or false" >&2; exit 1; }
                   train_codec=$2; shift 2 ;;
    --train-codec=*) train_codec=${1#*=}; shift ;;
    --help|-h) echo "  --size                   [default]                    tiny | small | default (corpus size and configs)"
               echo "  --train-codec            [false]                      true: train Unit-Mel in stage 4 (../codec/conf/codec_unitmel.yaml)"
               args+=("$1"); shift ;;
    *) args+=("$1"); shift ;;
  esac
done
case "$size" in          # tiny trains the fast Griffin-Lim MelVQ codec (CI time); the demo sizes
  tiny) cfg=debug; codec=conf/codec_melvq.yaml ;;   # extract with the shipped Unit-Mel codec
  small|default) cfg=mini; codec=conf/codec_unitmel.yaml ;;   # (docs/acoustic.md)
  *) echo "run.sh: --size must be tiny, small or default, got '$size'" >&2; exit 1 ;;
esac
case "$train_codec" in
  true) codec=../codec/conf/codec_unitmel.yaml ;;   # the shipped codec's own training config
  false) ;;
  *) echo "run.sh: --train-codec must be true or false, got '$train_codec'" >&2; exit 1 ;;
esac
conf() {  # conf/<stage>_debug.yaml for tiny where the stage has one, else conf/<stage>_mini.yaml
  if [ -f "conf/$1_$cfg.yaml" ]; then echo "conf/$1_$cfg.yaml"; else echo "conf/$1_mini.yaml"; fi
}

. ./path.sh
codec_flag=(); [ "$train_codec" = true ] && codec_flag=(--train-codec true)
DS_RUN_COMMAND="$(printf '%q ' ./run.sh --size "$size" ${codec_flag[@]+"${codec_flag[@]}"} "${args[@]}")"
export DS_RUN_COMMAND=${DS_RUN_COMMAND% }
results=exp/$size/RESULTS.md
[ "$size" = default ] && results=RESULTS.md       # the committed table is the default demo's
reference=()   # the corpus a committed table of this size was made with: a differing one is warned about
[ -f "conf/corpus_fingerprint_$size.json" ] && reference=(--reference-fingerprint "conf/corpus_fingerprint_$size.json")

./pipeline.sh \
  --corpus mini --corpus-db "db/mini_$size" --manifests-in-corpus true \
  --make-corpus "dualspeech.bin.make_mini_corpus --size $size --seed 0" \
  --train-parts train --dev-parts dev --test-parts test \
  --datadir "data/$size" --dumpdir "dump/$size" --expdir "exp/$size" --nj 2 \
  --ustokenizer-config "$(conf ustokenizer)" \
  --codec-config "$codec" --speaker-config conf/speaker_resemblyzer.yaml \
  --train-config "$(conf dualspeechlm)" --decode-config "$(conf decode)" \
  --score-config "$(conf score)" --results-md "$results" --controls true \
  --results-title "mini ($size): offline 8-task demo" ${reference[@]+"${reference[@]}"} \
  "${args[@]}"
