#!/usr/bin/env bash
# The GPU check: what CPU CI cannot run, on one GPU in a few minutes (budget: 8 minutes on one
# H100/H200-class GPU). One PASS / FAIL / SKIP line per item, a summary, and a non-zero exit
# status when any item fails:
#
#   train_<config>_<engine>   bf16 training (model.dtype bfloat16 + trainer.mixed_precision bf16)
#                             of the debug and mini configs for a few steps, under each engine
#                             that fits one GPU: plain (one process), fsdp (accelerate, FSDP
#                             config, 1 process), zero2 (accelerate, DeepSpeed ZeRO-2 config,
#                             1 process; SKIP when deepspeed is not installed). Launch commands
#                             come from utils/launch.sh with egs/multitask/conf/launch/*.yaml.
#                             The CPU dry run trains fsdp as trainer.engine=fsdp on 2 gloo
#                             processes instead (accelerate's FSDP plugin needs an accelerator).
#   ustokens_autocast         USToken extraction with the Whisper frontend under autocast (bf16
#                             on CUDA, as extraction does by default) vs fp32: same lengths,
#                             >= 90 % identical ids
#   decode_<config>           decoding (all 8 tasks, two examples each) with the model trained
#                             by train_<config>_plain (first config) and a MelVQ codec on the GPU
#
#   ci/gpu_check.sh                        # on the GPU machine (needs the environment: make install)
#   GPU_CHECK_DEVICE=cpu ci/gpu_check.sh   # dry run of the same commands on CPU, fewer steps
#   GPU_CHECK_CONFIGS=debug ci/gpu_check.sh   # only some configs (default: debug mini)
#   GPU_CHECK_ENGINES="plain zero2" ...       # only some engines (default: plain fsdp zero2)
# Logs go to $GPU_CHECK_DIR (default: a new temporary directory, printed at the end).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
repo=$PWD
device=${GPU_CHECK_DEVICE:-cuda}
configs=${GPU_CHECK_CONFIGS:-debug mini}
engines=${GPU_CHECK_ENGINES:-plain fsdp zero2}
python=${PYTHON:-python}; [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && python=$repo/.venv/bin/python
PATH="$(dirname "$python"):$PATH"; export PATH   # accelerate of the same environment
work=${GPU_CHECK_DIR:-$(mktemp -d -t gpu_check.XXXXXX)}
mkdir -p "$work/log"
start=$(date +%s)
case $device in
  cuda) steps=6; item_timeout=150; gpus=1 ;;
  cpu) steps=2; item_timeout=600; gpus=0; export CUDA_VISIBLE_DEVICES="" ;;
  *) echo "GPU_CHECK_DEVICE must be cuda or cpu, got '$device'" >&2; exit 2 ;;
esac
if [ "$device" = cuda ] && ! "$python" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "gpu_check: no CUDA device visible to $python (run GPU_CHECK_DEVICE=cpu for the dry run)" >&2
  exit 2
fi

passed=(); failed=(); skipped=()
item() {  # item NAME COMMAND...: run it with a time limit, log it, print one line
  local name=$1 t0 rc log=$work/log/$1.log; shift
  t0=$(date +%s)
  timeout "$item_timeout" bash -c '"$@"' _ "$@" > "$log" 2>&1; rc=$?   # functions: exported below
  local took=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then
    printf 'PASS  %-24s %4ds\n' "$name" "$took"; passed+=("$name")
  else
    printf 'FAIL  %-24s %4ds  exit %d%s, log %s\n' "$name" "$took" "$rc" \
      "$([ $rc -eq 124 ] && echo " (over ${item_timeout}s)")" "$log"
    { grep -E '^(\[rank[0-9]+\]: )?[A-Za-z_.]*(Error|Exception): ' "$log" | grep -v ChildFailedError \
        | tail -n 3; tail -n 2 "$log"; } | cut -c1-300 | sed 's/^/      | /'
    failed+=("$name")
  fi
}
skip() { printf 'SKIP  %-24s %s\n' "$1" "$2"; skipped+=("$1"); }

conf_of() { echo "egs/mini/conf/dualspeechlm_$1.yaml"; }

# A toy token corpus whose sizes fit each config, and its training shards (stage 5's format).
prepare() {
  local conf=$1 data=$2
  rm -rf "$data"   # fresh toy data (stage 5's shards refuse changed inputs)
  "$python" - "$conf" "$data" <<'EOF' || return 1
import sys
from dualspeech.config import load_config
from dualspeech.testing.toy_corpus import write_toy_corpus
cfg = load_config(sys.argv[1])
m = cfg["model"]
for part in ("train", "test"):
    write_toy_corpus(sys.argv[2], "toy", part, n_per_task=4, num_speech_tokens=m["speech"]["num_tokens"],
                     n_codes=m["acoustic_gpt"]["n_codes"], spk_dim=m["acoustic_gpt"]["spk_dim"])
EOF
  "$python" -m dualspeech.bin.write_shards --conf "$conf" --data-root "$data" --sets toy:train
}

train() {  # train CONFIG ENGINE: bf16 training for $steps steps
  local name=$1 engine=$2 launch=(utils/launch.sh --gpus-per-node "$gpus" --python "$python") extra=()
  case $engine in
    zero2) launch+=(--config-file egs/multitask/conf/launch/deepspeed_zero2.yaml) ;;
    fsdp)
      if [ "$device" = cuda ]; then launch+=(--config-file egs/multitask/conf/launch/fsdp.yaml)
      else   # accelerate's FSDP plugin refuses CPU; the trainer's FSDP2 runs on 2 gloo processes
        launch=(utils/launch.sh --launcher torchrun --gpus-per-node 2); extra=(--set +trainer.engine=fsdp)
        export OMP_NUM_THREADS=1   # (each item runs in its own shell)
      fi ;;
  esac
  local exp=$work/exp/${name}_$engine
  rm -rf "$exp"
  "${launch[@]}" -- -m dualspeech.bin.train --conf "$(conf_of "$name")" --exp-dir "$exp" \
    --data-root "$work/data_$name" --train toy:train --valid toy:train \
    --set model.dtype=bfloat16 --set trainer.mixed_precision=bf16 --set trainer.max_steps="$steps" \
    --set trainer.save_every="$steps" --set trainer.valid_every=0 --set trainer.log_every=1 \
    --set data.valid_max_examples=4 ${extra[@]+"${extra[@]}"} || return 1
  [ -d "$exp/model" ] || { echo "no $exp/model after training" >&2; return 1; }
  "$python" - "$exp" <<'EOF'
import csv, math, sys
rows = [r for r in csv.DictReader(open(f"{sys.argv[1]}/log/metrics.csv")) if r["split"] == "train"]
losses = [float(r["value"]) for r in rows if r["name"] == "loss"]
assert losses and all(math.isfinite(v) for v in losses), f"train losses: {losses}"
print("train losses:", [round(v, 3) for v in losses])
EOF
}

ustokens() {  # USToken ids with the Whisper frontend under autocast vs fp32, on $device
  "$python" - "$device" <<'EOF'
import sys
import numpy as np, torch
from dualspeech.pretrained import load_whisper
from dualspeech.tokenizers.ustokenizer.config import USTokenizerConfig, VQConfig
from dualspeech.tokenizers.ustokenizer.extract import frontend_autocast, whisper_autocast_dtype
from dualspeech.tokenizers.ustokenizer.model import USTokenizer
device = sys.argv[1]
choice = "auto" if device == "cuda" else "bf16"    # CUDA: extraction's default; CPU: forced
dtype = whisper_autocast_dtype(device, choice)
assert dtype is not None, f"autocast {choice} on {device} resolved to fp32"
torch.manual_seed(0)
cfg = USTokenizerConfig(whisper="random:whisper-debug", pad_to_30s=True, channels=64,
                        vq=VQConfig(codebook_size=64, dim=16, kmeans_init_batches=1, kmeans_iters=10))
tok = USTokenizer(cfg, load_whisper(cfg.whisper)).to(device)
t = torch.arange(16000 * 4, device=device) / 16000
waves = [0.3 * torch.sin(2 * torch.pi * (120 + 40 * k) * t * (1 + 0.3 * t)) *
         (1 + 0.5 * torch.sin(2 * torch.pi * 3 * t)) for k in range(6)]
with torch.no_grad():
    tok.train().encode(waves)
tok.eval()
ref = tok.tokenize(waves)
with frontend_autocast(tok, dtype):
    low = tok.tokenize(waves)
assert [len(a) for a in ref] == [len(b) for b in low]
same = sum(int((a == b).sum()) for a, b in zip(ref, low)) / sum(len(a) for a in ref)
print(f"autocast {dtype}: {same:.3f} of ids equal fp32")
assert same >= 0.9, same
EOF
}

decode() {  # decode CONFIG: the trained plain model, all tasks, a MelVQ codec, on $device
  local name=$1 exp=$work/exp/${1}_plain out=$work/decode_$1
  [ -d "$exp/model" ] || { echo "no trained model $exp/model (train_${name}_plain failed)" >&2; return 1; }
  "$python" - "$(conf_of "$name")" "$work/codec_$name" <<'EOF' || return 1
import sys
from pathlib import Path
from dualspeech.config import load_config
from dualspeech.testing.toy import toy_codec
n = load_config(sys.argv[1])["model"]["acoustic_gpt"]["n_codes"]
out = Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)
toy_codec(out / "melvq.pt", n, griffin_lim_iters=2)
(out / "codec.yaml").write_text(f"codec:\n  name: melvq\n  checkpoint: {out / 'melvq.pt'}\n  griffin_lim_iters: 2\n")
EOF
  rm -rf "$out"
  "$python" -m dualspeech.bin.decode --conf egs/mini/conf/decode_mini.yaml --model "$exp/model" \
    --data-root "$work/data_$name" --sources toy:test --out-dir "$out" \
    --codec-conf "$work/codec_$name/codec.yaml" --set decode.device="$device" \
    --set decode.max_examples=2 --set decode.speech.max_new_tokens=20 \
    --set decode.acoustic.max_len=32 --set decode.text.max_new_tokens=8 || return 1
  "$python" - "$out" <<'EOF'
import json, sys
from pathlib import Path
recs = [json.loads(l) for f in Path(sys.argv[1]).glob("*/hyp.jsonl") for l in open(f)]
tasks = {r["task"] for r in recs}
errors = [r for r in recs if r["status"] == "error"]
print(f"{len(recs)} decoded, tasks {sorted(tasks)}, {len(errors)} errors")
assert len(tasks) == 8 and not errors, errors[:2]
assert list(Path(sys.argv[1]).glob("*/wav/*.wav")), "no generated speech"
EOF
}

export -f conf_of prepare train ustokens decode
export python work device steps gpus
echo "gpu_check: device $device, configs: $configs, $steps training steps, work dir $work"
has_deepspeed=false
"$python" -c "import deepspeed" > /dev/null 2>&1 && has_deepspeed=true
for name in $configs; do
  [ -f "$(conf_of "$name")" ] || { echo "gpu_check: no config $(conf_of "$name")" >&2; exit 2; }
  item "data_$name" prepare "$(conf_of "$name")" "$work/data_$name"
  for engine in $engines; do
    if [ "$engine" = zero2 ] && [ "$has_deepspeed" = false ]; then
      skip "train_${name}_$engine" "deepspeed is not installed (pip install deepspeed -c tools/constraints.txt)"
      continue
    fi
    item "train_${name}_$engine" train "$name" "$engine"
  done
done
item ustokens_autocast ustokens
first=${configs%% *}
item "decode_$first" decode "$first"

total=$(( ${#passed[@]} + ${#failed[@]} + ${#skipped[@]} ))
echo "gpu_check summary: ${#passed[@]} of $total passed, ${#failed[@]} failed${failed[*]:+ (${failed[*]})}, ${#skipped[@]} skipped; $(( $(date +%s) - start )) s on $device; logs in $work/log"
[ ${#failed[@]} -eq 0 ]
