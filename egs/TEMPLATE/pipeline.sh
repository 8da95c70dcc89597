#!/usr/bin/env bash
# The staged DualSpeech pipeline every recipe runs. egs/<recipe>/run.sh calls it from the recipe
# directory with the corpus settings first and the user's options last (later options win):
#
#   ./pipeline.sh --corpus librispeech --train-parts "train-clean-100" ... "$@"
#
# Stages (same numbers in every recipe; see docs/recipes.md):
#   0 check / link the corpus        3 USTokens (train the tokenizer if asked, then extract)
#   1 manifests, cuts, task examples 4 acoustic tokens + speaker embeddings
#   2 check the task examples        5 task data (check examples against token-bearing cuts)
#   6 train DualSpeechLM   7 decode the test sets   8 score -> RESULTS.md
# A stage is skipped when its inputs, configs and arguments hash to what its marker in
# exp/stages/ recorded and its outputs are unchanged; --force true re-runs the selected stages.
set -euo pipefail

help_message="Usage: ./run.sh [options]   (run from egs/<recipe>/; options below, later ones win)
Example: ./run.sh --stage 1 --stop-stage 3 --nj 8"

# ---- what to run
stage=0                  # first stage to run
stop_stage=100           # last stage to run
skip_data_prep=false     # skip stages 0-2 (data already prepared)
skip_tokenize=false      # skip stages 3-5 (tokens already extracted)
skip_train=false         # skip stage 6 (use an existing model: --lm-exp)
skip_eval=false          # skip stages 7-8
force=false              # re-run selected stages even when up to date
# ---- resources
nj=4                     # shard jobs for data preparation and token extraction
ngpu=0                   # GPUs per job for extraction / training / decoding (0 = CPU)
python=python            # python with dualspeech installed (path.sh puts the repo .venv first)
# ---- corpus (run.sh and db.sh set these)
corpus=                  # corpus name known to `python -m dualspeech.bin.prepare_corpus`
corpus_vars=             # db.sh variables with corpus locations, linked as db/<name in lower case>; NAME? = optional
corpus_db=               # the corpus as later stages read it (default: db/<corpus>)
download=false           # stage 0: download the corpus with local/download.sh (where the recipe has one)
prepare_args=            # extra arguments for prepare_corpus (e.g. "--hours 100")
make_corpus=             # python module and arguments that generate a synthetic corpus in stage 0, run as "--python -m <this> --out-dir <corpus-db> --nj N"
manifests_in_corpus=false # the corpus dir already holds manifests/ cuts/ tasks/ (generated corpora)
train_parts=             # training parts: "part" (this corpus) or "corpus:part"
dev_parts=               # validation parts
test_parts=              # test parts (decoded and scored)
# ---- directories (relative to the recipe)
datadir=data             # manifests/, cuts/ (speech), tasks/ (task examples)
dumpdir=dump             # token-bearing cuts and token arrays
expdir=exp               # models, decodes, logs, stage markers
# ---- tokenizers (stages 3-4)
ustokenizer_config=      # train a USTokenizer with this config in stage 3 ...
ustokenizer_ckpt=        # ... or extract with this trained checkpoint (skips training)
ustokenizer_parts=       # parts the USTokenizer trains on (default: train parts)
ustokenizer_args=        # extra arguments for train_ustokenizer (e.g. "--set trainer.max_steps=10")
codec_config=            # acoustic codec config (melvq / vqmel are trained in stage 4; wavtokenizer needs its files)
codec_args=              # extra arguments for train_codec (e.g. "--set vqmel_train.steps=100")
speaker_config=          # speaker encoder config
# ---- DualSpeechLM (stages 6-8)
train_config=            # DualSpeechLM training config
train_args=              # extra arguments for train (e.g. "--set trainer.max_steps=20")
train_launcher=          # what runs `-m dualspeech.bin.train[_ustokenizer]` on several GPUs/nodes, verbatim (default: utils/launch.sh from --ngpu/--num-nodes/--launch-config)
num_nodes=1              # nodes for training (stages 3 and 6); > 1 needs Slurm: one srun of accelerate launch per job (docs/training.md)
launch_config=           # accelerate config for training (conf/launch/{ddp,fsdp,deepspeed_zero2}.yaml); process counts come from --ngpu/--num-nodes
lm_exp=                  # experiment dir (default: exp/<train_config name>[_<hash of --train-args>])
merge_lora=false         # stage 6 also writes <lm-exp>/merged (LoRA merged into the LLM), which stage 7 decodes
decode_config=           # decoding config
decode_args=             # extra arguments for decode
decode_nj=               # decoding shard jobs (default: --nj)
controls=false           # stage 7 also decodes the controls (decode.control: docs/metrics.md) that stage 8 puts beside every number
score_config=            # scoring config
score_args=              # extra arguments for score (e.g. "--set score.dnsmos=false")
results_md=RESULTS.md    # where stage 8 writes the results table
results_title=           # heading of RESULTS.md (default: the recipe name)
reference_fingerprint=   # corpus fingerprint the committed results were made with: stages 0 and 8 warn when this corpus differs

utils=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../utils" && pwd)
# shellcheck source=../../utils/log.sh
. "$utils/log.sh"
# shellcheck source=../../utils/parse_options.sh
. "$utils/parse_options.sh"
[ $# -eq 0 ] || die "unexpected arguments: $* (options look like --name value; see --help)"
# shellcheck source=../../utils/stage.sh
. "$utils/stage.sh"
stage_dir=$expdir/stages

# ---- derived settings
sets_of() {  # "part corpus:part ...": one "corpus:part" a line (a bare part gets --corpus)
  local s parts
  read -ra parts <<< "$1"
  for s in ${parts[@]+"${parts[@]}"}; do
    if [[ "$s" == *:* ]] || [ -z "$corpus" ]; then echo "$s"; else echo "$corpus:$s"; fi
  done
}
unique() { printf '%s\n' "$@" | awk 'NF && !seen[$0]++'; }   # the words, each once, in order
mapfile -t train_sets < <(sets_of "$train_parts")
mapfile -t dev_sets < <(sets_of "$dev_parts")
mapfile -t test_sets < <(sets_of "$test_parts")
mapfile -t ust_sets < <(sets_of "${ustokenizer_parts:-$train_parts}")
mapfile -t all_sets < <(unique ${train_sets[@]+"${train_sets[@]}"} ${dev_sets[@]+"${dev_sets[@]}"} ${test_sets[@]+"${test_sets[@]}"})
for s in ${all_sets[@]+"${all_sets[@]}"} ${ust_sets[@]+"${ust_sets[@]}"}; do
  [[ "$s" == *:* ]] || die "part '$s' needs a corpus: write corpus:part or set --corpus"
done
# the option strings as the commands get them (split into words, never globbed)
read -ra prepare_argv <<< "$prepare_args"; read -ra ustokenizer_argv <<< "$ustokenizer_args"
read -ra codec_argv <<< "$codec_args"; read -ra train_argv <<< "$train_args"
read -ra decode_argv <<< "$decode_args"; read -ra score_argv <<< "$score_args"
speech_cuts() { echo "$datadir/cuts/${1%%:*}_cuts_${1#*:}.jsonl.gz"; }   # stage 2 output of a set
token_cuts() { echo "$dumpdir/$2/${1%%:*}_cuts_${1#*:}.jsonl.gz"; }      # $2: ustokens|acoustic|cuts
recipe=$(basename "$PWD")
# shellcheck source=/dev/null   # the recipe's own db.sh (checked with the recipe)
[ -f db.sh ] && . ./db.sh
db_links() {  # the corpus dirs stage 0 made available under db/
  local v; echo "$corpus_db"
  for v in $corpus_vars; do v=${v%\?}; [ ! -e "db/${v,,}" ] || [ "db/${v,,}" = "$corpus_db" ] || echo "db/${v,,}"; done
}
corpus_locations() { local v; for v in $corpus_vars; do v=${v%\?}; printf '%s=%s ' "$v" "${!v:-}"; done; }
args_tag() {  # args_tag ARGS: "" or "_<8 hex>" naming a directory after extra arguments (ESPnet's tags)
  [ -z "$1" ] || printf '_%s' "$(printf '%s' "$1" | sha256sum | cut -c1-8)"
}
[ -n "$lm_exp" ] || lm_exp=$expdir/$(basename "${train_config:-dualspeechlm}" .yaml)$(args_tag "$train_args")
if [ -n "$ustokenizer_config" ]; then                # a tokenizer trained here wins over --ustokenizer-ckpt
  ustokenizer_ckpt=$expdir/$(basename "$ustokenizer_config" .yaml)/final.pt
fi
device=cpu; [ "$ngpu" -gt 0 ] && device=cuda
logdir=$expdir/log
[ -n "$corpus_db" ] || corpus_db=db/$corpus
[ -n "$decode_nj" ] || decode_nj=$nj

in_stage() {  # in_stage N: N is selected by --stage/--stop-stage and not in a skipped group
  local n=$1
  [ "$n" -ge "$stage" ] && [ "$n" -le "$stop_stage" ] || return 1
  case $n in
    0|1|2) [ "$skip_data_prep" = false ] ;;
    3|4|5) [ "$skip_tokenize" = false ] ;;
    6) [ "$skip_train" = false ] ;;
    *) [ "$skip_eval" = false ] ;;
  esac
}

config_files() {  # config_files CONF: confs=(CONF and the files it includes): a stage's config inputs
  local listed                       # Python reads the YAML (includes in any form); a missing
  confs=("$1")                       # CONF stays as it is, for stage_begin to name
  [ -f "$1" ] || return 0
  listed=$($python -m dualspeech.bin.resolve_config "$1" --files) || die "cannot read the config $1 (above)"
  mapfile -t confs <<< "$listed"
}

# how a training entry point is started: python, or utils/launch.sh (GPUs, nodes)
if [ -n "$train_launcher" ]; then read -ra launcher <<< "$train_launcher"
elif [ "$ngpu" -gt 1 ] || [ "$num_nodes" -gt 1 ] || [ -n "$launch_config" ]; then
  launcher=(utils/launch.sh --num-nodes "$num_nodes" --gpus-per-node "$ngpu" --python "$python"
            ${launch_config:+--config-file "$launch_config"})
else read -ra launcher <<< "$python"; fi
train_nodes=(); [ "$num_nodes" -gt 1 ] && train_nodes=(--nodes "$num_nodes")   # gpu_cmd of training jobs

extract_jobs() {  # extract_jobs LOGNAME SET ENTRY IN OUT STORAGE ARGS...: one sharded extraction of a set
  local logname=$1 tag=${2/:/.} entry=$3 in_cuts=$4 out_cuts=$5 storage=$6; shift 6
  $gpu_cmd --gpu "$ngpu" JOB=0:$((nj - 1)) "$logdir/$logname.$tag.JOB.log" \
    $python -m "dualspeech.bin.$entry" "$@" --cuts "$in_cuts" --out-cuts "$out_cuts" \
    --storage-dir "$storage/$tag" --nj "$nj" --job JOB --device "$device"
}
same_config_or_die() {  # same_config_or_die DIR CONFIG [--check]: DIR resumes only from the config files it began with
  local dir=$1 now f confs=()
  config_files "$2"
  now=$(for f in "${confs[@]}"; do printf '%s sha256:%s\n' "$f" "$(sha256sum < "$f" | cut -c1-16)"; done)
  if [ -s "$dir/config_files.txt" ] && [ "$(cat "$dir/config_files.txt")" != "$now" ]; then
    die "$dir holds a run of other config files, and its checkpoints would resume under the new ones:
$(diff "$dir/config_files.txt" <(echo "$now") | sed -n 's/^< /  before: /p; s/^> /  now:    /p')
Move or delete $dir to start over (--force true moves it aside), or keep it and pass --lm-exp NEW_DIR."
  fi
  [ "${3:-}" = --check ] && return 0
  mkdir -p "$dir"; echo "$now" > "$dir/config_files.txt"
}
need() {  # need VAR: a setting the selected stages cannot run without
  [ -n "${!1}" ] || die "--${1//_/-} is not set (needed by the stages you selected; see --help)"
}

. ./cmd.sh

# ---- the exact command line, kept with the experiment
mkdir -p "$expdir"
printf '%s\t%s\t%s\n' "$(date '+%Y-%m-%dT%H:%M:%S')" "${DS_RUN_COMMAND:-$ds_command_line}" \
  "$ds_command_line" >> "$expdir/command_history.tsv"
printf '#!/usr/bin/env bash\n# The last command run in this recipe (written by TEMPLATE/pipeline.sh).\ncd %q || exit 1\n%s "$@"\n' \
  "$PWD" "${DS_RUN_COMMAND:-$ds_command_line}" > "$expdir/run.sh"
chmod +x "$expdir/run.sh"
log "$recipe: stages $stage..$stop_stage, nj=$nj ngpu=$ngpu; command saved in $expdir/run.sh"

if in_stage 0; then
  # A synthetic corpus is always handed to its generator: its own stamp covers the generator
  # version, arguments and outputs (a no-op in seconds when current), which a marker over this
  # command line alone cannot see. Later stages hash the manifests it writes.
  if [ -n "$make_corpus" ]; then
    read -ra make_corpus_argv <<< "$make_corpus"
    $cpu_cmd "$logdir/stage0_corpus.log" $python -m "${make_corpus_argv[@]}" --out-dir "$corpus_db" --nj "$nj"
  fi
  if stage_begin 0 corpus --args "$corpus_db|$corpus_vars|$(corpus_locations)|$make_corpus|$download"; then
    if [ "$download" = true ]; then
      [ -x local/download.sh ] || die "$recipe has no local/download.sh: get the corpus by hand (README.md)"
      $cpu_cmd "$logdir/stage0_download.log" local/download.sh "$python"
    fi
    for v in $corpus_vars; do
      name=${v%\?}; dir=${!name:-}
      if [ -z "$dir" ]; then
        [ "$name" != "$v" ] && { log "optional $name is not set in db.sh: skipping what needs it"; continue; }
        die "$name is not set: put the corpus location in db.sh (or export $name=DIR); README.md shows where to get it and the expected layout"
      fi
      [ -e "$dir" ] || die "$name=$dir (db.sh) does not exist; README.md shows where to get it and the expected layout"
      mkdir -p db
      ln -sfn "$(cd "$(dirname "$dir")" && pwd)/$(basename "$dir")" "db/${name,,}"
    done
    [ -e "$corpus_db" ] || die "$corpus_db is missing after stage 0 (expected the generated corpus or a db.sh link)"
    stage_end 0 corpus "$corpus_db"
  fi
  if [ -n "$reference_fingerprint" ] && [ -f "$corpus_db/fingerprint.json" ]; then   # warns, never stops
    $python -m dualspeech.bin.corpus_fingerprint --corpus-dir "$corpus_db" --reference "$reference_fingerprint"
  fi
fi

if in_stage 1; then
  mapfile -t corpus_dirs < <(db_links)
  if stage_begin 1 manifests --inputs "${corpus_dirs[@]}" --args "$corpus $prepare_args $manifests_in_corpus" \
       --clean "$datadir/manifests" "$datadir/cuts" "$datadir/tasks"; then
    if [ -x local/data.sh ]; then                     # recipes with several corpora
      $cpu_cmd "$logdir/stage1_manifests.log" local/data.sh "$datadir" "$nj" "$python"
    elif [ "$manifests_in_corpus" = true ]; then      # generated corpora ship their manifests
      mkdir -p "$datadir"
      for d in manifests cuts tasks; do
        [ -d "$corpus_db/$d" ] || die "$corpus_db/$d missing: the corpus generator of stage 0 did not finish (re-run stage 0)"
        cp -r "$corpus_db/$d" "$datadir/"
      done
    else
      $cpu_cmd "$logdir/stage1_manifests.log" $python -m dualspeech.bin.prepare_corpus "$corpus" \
        --corpus-dir "$corpus_db" --output-dir "$datadir" --nj "$nj" ${prepare_argv[@]+"${prepare_argv[@]}"}
    fi
    stage_end 1 manifests "$datadir/manifests" "$datadir/cuts" "$datadir/tasks"
  fi
  missing=()                                          # parts asked for that the corpus lacks
  for set in ${all_sets[@]+"${all_sets[@]}"}; do [ -f "$(speech_cuts "$set")" ] || missing+=("$set"); done
  [ ${#missing[@]} -eq 0 ] || die "stage 1: the prepared data has no ${missing[*]} (no $(speech_cuts "${missing[0]}")).
The corpus locations in db.sh ($(corpus_locations)) lack these parts, or all their utterances were skipped ($datadir/skipped_*.log).
Get the parts (README.md), or leave them out of --train-parts / --dev-parts / --test-parts."
fi

if in_stage 2; then
  if stage_begin 2 check --inputs "$datadir/cuts" "$datadir/tasks" --args "${all_sets[*]-}" --clean "$datadir/checked"; then
    $cpu_cmd "$logdir/stage2_check.log" $python -m dualspeech.bin.check_task_data --sets ${all_sets[@]+"${all_sets[@]}"} \
      --tasks-dir "$datadir/tasks" --cuts-dir "$datadir/cuts" --out-dir "$datadir/checked"
    stage_end 2 check "$datadir/checked"
  fi
fi

if in_stage 3; then
  if [ -n "$ustokenizer_config" ]; then               # train the tokenizer here
    [ ${#ust_sets[@]} -gt 0 ] || die "--ustokenizer-parts / --train-parts are empty: nothing to train the USTokenizer on"
    config_files "$ustokenizer_config"
    if stage_begin 3 ustokenizer --inputs "${confs[@]}" "$datadir/tasks" "$datadir/cuts" \
         --args "${ust_sets[*]}|${dev_sets[*]-}|$ustokenizer_args|${launcher[*]}" --move-aside "$(dirname "$ustokenizer_ckpt")"; then
      $gpu_cmd --gpu "$ngpu" ${train_nodes[@]+"${train_nodes[@]}"} "$logdir/stage3_ustokenizer.log" "${launcher[@]}" -m dualspeech.bin.train_ustokenizer \
        --conf "$ustokenizer_config" --exp-dir "$(dirname "$ustokenizer_ckpt")" --data-dir "$datadir" \
        --train-sets "${ust_sets[@]}" ${dev_sets[@]+--valid-sets "${dev_sets[@]}"} ${ustokenizer_argv[@]+"${ustokenizer_argv[@]}"}
      stage_end 3 ustokenizer "$ustokenizer_ckpt"
    fi
  fi
  [ -f "$ustokenizer_ckpt" ] || die "no USTokenizer checkpoint $ustokenizer_ckpt: train one (--ustokenizer-config, e.g. in egs/multitask) or pass --ustokenizer-ckpt"
  if stage_begin 3 ustokens --inputs "$ustokenizer_ckpt" "$datadir/cuts" --args "${all_sets[*]-}|$nj" --clean "$dumpdir/ustokens"; then
    for set in ${all_sets[@]+"${all_sets[@]}"}; do
      extract_jobs stage3_ustokens "$set" extract_ustokens "$(speech_cuts "$set")" \
        "$(token_cuts "$set" ustokens)" "$dumpdir/ustokens" --checkpoint "$ustokenizer_ckpt"
    done
    stage_end 3 ustokens "$dumpdir/ustokens"
  fi
fi

# The codec config as later stages use it: codec_resolved is the codec section with the
# checkpoint trained here (melvq, vqmel), or the config's own section (pretrained codecs).
codec_exp=$expdir/$(basename "${codec_config:-codec}" .yaml)
codec_resolved=$codec_exp/codec.yaml
if in_stage 4; then
  need codec_config; need speaker_config
  config_files "$codec_config"
  train_cuts=(); for s in ${train_sets[@]+"${train_sets[@]}"}; do train_cuts+=("$(speech_cuts "$s")"); done
  if stage_begin 4 codec --inputs "${confs[@]}" ${train_cuts[@]+"${train_cuts[@]}"} \
       --args "${train_sets[*]-}|$codec_args" --move-aside "$codec_exp"; then
    # trains a trainable codec (melvq, vqmel) into $codec_exp, or checks a pretrained one's files
    # (e.g. WavTokenizer: stops here, naming the files and how to get them); writes $codec_resolved
    $cpu_cmd "$logdir/stage4_codec.log" $python -m dualspeech.bin.train_codec --conf "$codec_config" \
      --cuts ${train_cuts[@]+"${train_cuts[@]}"} --out-dir "$codec_exp" ${codec_argv[@]+"${codec_argv[@]}"}
    stage_end 4 codec "$codec_exp"
  fi
  config_files "$speaker_config"
  if stage_begin 4 tokens --inputs "$codec_exp" "${confs[@]}" "$dumpdir/ustokens" \
       --args "${all_sets[*]-}|$nj" --clean "$dumpdir/acoustic" "$dumpdir/speaker" "$dumpdir/cuts"; then
    for set in ${all_sets[@]+"${all_sets[@]}"}; do
      extract_jobs stage4_acoustic "$set" extract_acoustic "$(token_cuts "$set" ustokens)" \
        "$(token_cuts "$set" acoustic)" "$dumpdir/acoustic" --conf "$codec_resolved"
      extract_jobs stage4_speaker "$set" extract_speaker "$(token_cuts "$set" acoustic)" \
        "$(token_cuts "$set" cuts)" "$dumpdir/speaker" --conf "$speaker_config"
    done
    stage_end 4 tokens "$dumpdir/cuts"
  fi
fi

# Stage 5's output is the data root of training and decoding: tasks/ (checked examples) next to
# cuts/ (speech cuts with ustokens, acoustic_tokens, speaker_embedding), and shards/: the train
# and dev examples rendered once with the training config's tokenizer, which stage 6 streams.
collect_token_meta() {  # token_meta=(the meta.json of stages 3-4 for the training sets): they size the model
  local set d
  token_meta=()
  for set in ${train_sets[@]+"${train_sets[@]}"}; do
    for d in ustokens acoustic speaker; do
      [ ! -f "$dumpdir/$d/${set/:/.}/meta.json" ] || token_meta+=("$dumpdir/$d/${set/:/.}/meta.json")
    done
  done
}
if in_stage 5; then
  mapfile -t shard_sets < <(unique ${train_sets[@]+"${train_sets[@]}"} ${dev_sets[@]+"${dev_sets[@]}"})
  [ ${#shard_sets[@]} -eq 0 ] || need train_config
  config_files "$train_config"
  if stage_begin 5 task_data --inputs "$datadir/checked" "$dumpdir/cuts" "${confs[@]}" \
       --args "${all_sets[*]-}|${shard_sets[*]-}|$train_args" --clean "$dumpdir/tasks" "$dumpdir/shards"; then
    $cpu_cmd "$logdir/stage5_task_data.log" $python -m dualspeech.bin.check_task_data --sets ${all_sets[@]+"${all_sets[@]}"} \
      --tasks-dir "$datadir/checked" --cuts-dir "$dumpdir/cuts" --out-dir "$dumpdir/tasks" --require-tokens
    if [ ${#shard_sets[@]} -gt 0 ]; then    # a killed run resumes at its first unwritten shard
      collect_token_meta
      $cpu_cmd "$logdir/stage5_shards.log" $python -m dualspeech.bin.write_shards --conf "$train_config" \
        ${train_argv[@]+"${train_argv[@]}"} --data-root "$dumpdir" --sets "${shard_sets[@]}" --nj "$nj" \
        ${token_meta[@]+--token-meta "${token_meta[@]}"}
    fi
    stage_end 5 task_data "$dumpdir/tasks" ${shard_sets[@]+"$dumpdir/shards"}
  fi
fi

if in_stage 6 && [ ${#train_sets[@]} -eq 0 ]; then
  log "stage 6: no --train-parts in this recipe, nothing to train (decode a model with --lm-exp DIR)"
elif in_stage 6; then
  need train_config
  init_ckpt=       # model.speech_init.method=ustokenizer: the speech rows start from stage 3's USTokenizer
  # the value training sees: the YAML with the --set of --train-args
  init_method=$($python -m dualspeech.bin.resolve_config "$train_config" ${train_argv[@]+"${train_argv[@]}"} \
    --get model.speech_init.method) || die "cannot read model.speech_init.method of $train_config with --train-args (above)"
  [ "$init_method" != ustokenizer ] || init_ckpt=$ustokenizer_ckpt
  # an edited config stops here; other changed inputs (or --force) move the old experiment aside
  [ "$force" = true ] || same_config_or_die "$lm_exp" "$train_config" --check
  config_files "$train_config"
  if stage_begin 6 train --inputs "${confs[@]}" "$dumpdir/tasks" "$dumpdir/cuts" ${init_ckpt:+"$init_ckpt"} \
       --args "${train_sets[*]}|${dev_sets[*]-}|$train_args|${launcher[*]}|$merge_lora" --move-aside "$lm_exp"; then
    same_config_or_die "$lm_exp" "$train_config"     # --train-args are in the dir name (args_tag)
    collect_token_meta    # token sizes recorded by stages 3-4 size the model (and check the config)
    $gpu_cmd --gpu "$ngpu" ${train_nodes[@]+"${train_nodes[@]}"} "$logdir/stage6_train.log" "${launcher[@]}" -m dualspeech.bin.train \
      --conf "$train_config" --exp-dir "$lm_exp" --data-root "$dumpdir" --train "${train_sets[@]}" \
      ${dev_sets[@]+--valid "${dev_sets[@]}"} ${token_meta[@]+--token-meta "${token_meta[@]}"} \
      ${init_ckpt:+--set "model.speech_init.ustokenizer_ckpt=$init_ckpt"} ${train_argv[@]+"${train_argv[@]}"}
    if [ "$merge_lora" = true ]; then                 # a plain HF model: faster decoding, no peft
      $cpu_cmd "$logdir/stage6_merge.log" $python -m dualspeech.bin.merge --exp-dir "$lm_exp" --out "$lm_exp/merged"
    fi
    merged=(); [ "$merge_lora" = true ] && merged=("$lm_exp/merged")
    # self-contained model dirs for infer / serve (docs/inference.md): the USTokenizer, codec,
    # speaker encoder and decode defaults, checked against the tokens the model was trained on
    parts=()
    [ ! -f "$ustokenizer_ckpt" ] || parts+=(--ustokenizer "$ustokenizer_ckpt")
    [ ! -f "$codec_resolved" ] || parts+=(--codec-conf "$codec_resolved")
    [ -z "$speaker_config" ] || parts+=(--speaker-conf "$speaker_config")
    [ -z "$decode_config" ] || parts+=(--decode-conf "$decode_config")
    for dir in "$lm_exp/model" ${merged[@]+"${merged[@]}"}; do
      [ ${#parts[@]} -gt 0 ] || break
      $cpu_cmd "$logdir/stage6_export_$(basename "$dir").log" $python -m dualspeech.bin.export \
        --model "$dir" --out "$dir" "${parts[@]}" ${token_meta[@]+--token-meta "${token_meta[@]}"}
    done
    stage_end 6 train "$lm_exp/model" ${merged[@]+"${merged[@]}"}
  fi
fi

decode_tag=$(basename "${decode_config:-decode}" .yaml)$(args_tag "$decode_args")
decode_dir=$lm_exp/decode_$decode_tag                # other --decode-args: another dir, the old decode stays
score_dir=$lm_exp/score_$decode_tag
control_dir=$lm_exp/controls_$decode_tag             # --controls true: <control>/<test_set>/hyp.jsonl
if in_stage 7 && [ ${#test_sets[@]} -eq 0 ]; then
  log "stage 7: no --test-parts in this recipe, nothing to decode"
elif in_stage 7; then
  need decode_config
  model_dir=$lm_exp/model; [ "$merge_lora" = true ] && model_dir=$lm_exp/merged
  [ -d "$model_dir" ] || die "no trained model in $model_dir: run stage 6 or point --lm-exp at a trained experiment"
  codec_conf_arg=()                                  # the codec of stage 4 decodes generated speech
  [ -f "$codec_resolved" ] && codec_conf_arg=(--codec-conf "$codec_resolved")
  config_files "$decode_config"
  if stage_begin 7 decode --inputs "${confs[@]}" "$model_dir" "$dumpdir/tasks" ${codec_conf_arg[@]+"${codec_conf_arg[1]}"} \
       --args "${test_sets[*]}|$decode_args|$decode_nj" --clean "$decode_dir"; then
    $gpu_cmd --gpu "$ngpu" JOB=0:$((decode_nj - 1)) "$logdir/stage7_decode.JOB.log" \
      $python -m dualspeech.bin.decode --conf "$decode_config" --model "$model_dir" \
      --data-root "$dumpdir" --sources "${test_sets[@]}" --out-dir "$decode_dir" \
      ${codec_conf_arg[@]+"${codec_conf_arg[@]}"} --shard JOB --num-shards "$decode_nj" ${decode_argv[@]+"${decode_argv[@]}"}
    stage_end 7 decode "$decode_dir"
  fi
  control_names=()                                   # the one list: dualspeech/inference/config.py
  if [ "$controls" = true ]; then
    names=$($python -m dualspeech.bin.resolve_config --choices decode.control) || die "cannot list the control decodes (above)"
    mapfile -t control_names <<< "$names"
  fi
  if [ "$controls" = true ] && stage_begin 7 controls --inputs "${confs[@]}" "$model_dir" "$lm_exp/model" \
       "$dumpdir/tasks" ${codec_conf_arg[@]+"${codec_conf_arg[1]}"} --args "${test_sets[*]}|$decode_args|$decode_nj|${control_names[*]}" \
       --clean "$control_dir"; then
    for control in "${control_names[@]}"; do
      control_model=$model_dir; [ "$control" = untrained ] && control_model=$lm_exp/model   # not merged
      $gpu_cmd --gpu "$ngpu" JOB=0:$((decode_nj - 1)) "$logdir/stage7_control_$control.JOB.log" \
        $python -m dualspeech.bin.decode --conf "$decode_config" --model "$control_model" \
        --data-root "$dumpdir" --sources "${test_sets[@]}" --out-dir "$control_dir/$control" \
        ${codec_conf_arg[@]+"${codec_conf_arg[@]}"} --shard JOB --num-shards "$decode_nj" ${decode_argv[@]+"${decode_argv[@]}"} \
        --set "+decode.control=$control"
    done
    stage_end 7 controls "$control_dir"
  fi
fi

if in_stage 8 && [ ${#test_sets[@]} -gt 0 ]; then
  need score_config
  control_arg=(); [ "$controls" = true ] && control_arg=(--control-dir "$control_dir")
  results_dir=$(dirname "$results_md")                # samples.html (listening page) goes next to it
  corpus_files=()                                     # the table names the corpus (and warns if it is not the reference's)
  [ ! -f "$corpus_db/fingerprint.json" ] || corpus_files=("$corpus_db/fingerprint.json")
  corpus_arg=(${corpus_files[@]+--corpus-fingerprint "${corpus_files[@]}"})
  if [ -n "$reference_fingerprint" ]; then
    corpus_files+=("$reference_fingerprint"); corpus_arg+=(--reference-fingerprint "$reference_fingerprint")
  fi
  config_files "$score_config"
  if stage_begin 8 score --inputs "${confs[@]}" "$decode_dir" ${control_arg[@]+"${control_arg[1]}"} \
       ${corpus_files[@]+"${corpus_files[@]}"} \
       --args "$results_title|$results_md|$score_args|$controls" --clean "$score_dir"; then
    $cpu_cmd "$logdir/stage8_score.log" $python -m dualspeech.bin.score --conf "$score_config" \
      --decode-dir "$decode_dir" --out-dir "$score_dir" --title "${results_title:-$recipe}" \
      ${control_arg[@]+"${control_arg[@]}"} --data-root "$dumpdir" --samples-html "$score_dir/samples.html" \
      ${corpus_arg[@]+"${corpus_arg[@]}"} ${score_argv[@]+"${score_argv[@]}"}
    mkdir -p "$results_dir"
    cp "$score_dir/RESULTS.md" "$results_md"
    rm -rf "$results_dir/samples.html" "$results_dir/samples"
    cp -r "$score_dir/samples.html" "$score_dir/samples" "$results_dir/"
    stage_end 8 score "$score_dir" "$results_md" "$results_dir/samples.html" "$results_dir/samples"
  fi
  [ -f "$results_md" ] && { log "results ($results_md):"; cat "$results_md"; }
fi
log "$recipe: finished stages $stage..$stop_stage; wall time of each stage (from its marker in $stage_dir):"
stage_table
