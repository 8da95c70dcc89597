"""The trainer's engines on CPU processes (gloo): FSDP2 equals DDP and resumes exactly; fp32
master weights under a bf16 backbone; DeepSpeed configuration (and ZeRO-2/3 runs when
deepspeed is installed: test_training_engines_deepspeed.py)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dualspeech.training.checkpoint import latest_checkpoint, load

TOY = Path(__file__).parents[1] / "training_toy.py"
REPO = Path(__file__).resolve().parents[2]
# FSDP reduce-scatters what DDP all-reduces: same sums over 2 ranks, so equal up to float
# rounding of the order of additions (measured: identical on this machine).
FSDP_TOL = 1e-5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(exp: Path, steps: int, *sets: str, env: dict | None = None, nproc: int = 2) -> dict:
    """Run the toy under torchrun with ``nproc`` CPU processes; rank 0's final trainable weights."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(TOY), str(exp),
           str(steps), *sets]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return {r: torch.load(exp / f"final-rank{r}.pt", weights_only=True) for r in range(nproc)}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_fsdp_equals_ddp_and_resumes_exactly(tmp_path):
    common = ("model=lm", "save_every=2", "grad_accum=2", "valid=true", "valid_every=2")
    ddp = launch(tmp_path / "ddp", 4, *common)
    fsdp = launch(tmp_path / "fsdp", 4, *common, "engine=fsdp")
    state = load(latest_checkpoint(tmp_path / "fsdp"), "trainer.pt")
    assert state["engine"] == "fsdp" and state["num_processes"] == 2
    # every rank ends with the same full parameters, equal to DDP's; validation (uneven
    # forwards per rank) saw the same weights
    assert max_diff(fsdp[0], fsdp[1]) == 0.0
    assert len(valid_rows(tmp_path / "ddp")) == 2
    assert valid_rows(tmp_path / "fsdp") == pytest.approx(valid_rows(tmp_path / "ddp"), rel=1e-5)
    assert max_diff(ddp[0], fsdp[0]) < FSDP_TOL
    moved = load(tmp_path / "fsdp/checkpoints/step-00000002", "model.pt")
    assert max_diff(moved, fsdp[0]) > 1e-4, "nothing trained between step 2 and 4"
    # the checkpoint holds full (gathered) tensors, not one rank's shard
    assert tuple(moved["inp.weight"].shape) == (128, 8)
    # resume in a new process group from step 2: bit-identical to the uninterrupted run
    shutil.rmtree(latest_checkpoint(tmp_path / "fsdp"))
    resumed = launch(tmp_path / "fsdp", 4, *common, "engine=fsdp")
    assert max_diff(resumed[0], fsdp[0]) == 0.0


def valid_rows(exp: Path) -> list[float]:
    rows = (exp / "log" / "metrics.csv").read_text().splitlines()
    return [float(r.rsplit(",", 1)[1]) for r in rows if ",valid," in r]


def test_deepspeed_batch_settings_come_from_the_trainer(caplog):
    from dualspeech.training.engines.deepspeed import configure_deepspeed

    ds = {"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto",
          "gradient_accumulation_steps": 1, "zero_optimization": {"stage": 2}}
    with caplog.at_level("WARNING"):
        configure_deepspeed(ds, grad_accum=4, clip_grad=1.0, num_processes=8)
    assert ds["train_micro_batch_size_per_gpu"] == 1      # one token-budgeted sampler batch
    assert ds["gradient_accumulation_steps"] == 4 and ds["train_batch_size"] == 32
    assert ds["gradient_clipping"] == 1.0
    assert "gradient_accumulation_steps=1 replaced by 4" in caplog.text


def test_fsdp_wraps_decoder_layers_and_repeated_blocks():
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from training_toy import ToyLM

    from dualspeech.training.engines.fsdp import layer_classes

    names = {c.__name__ for c in layer_classes(ToyLM())}
    assert names == {"LlamaDecoderLayer"}


def deepspeed_env(stage: int) -> dict:
    return {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": str(stage)}


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_equals_ddp_and_resumes_exactly(tmp_path, stage):
    """ZeRO on 2 CPU processes (gloo): with grad_accum=2 the optimizer steps once per global
    batch (else it would diverge from DDP by far more than rounding); every rank's partition is
    checkpointed and a new process group resumes bit-identically."""
    pytest.importorskip("deepspeed", reason="deepspeed is not installed (tools/requirements.txt)")
    common = ("model=lm", "save_every=2", "grad_accum=2", "valid=true", "valid_every=2")
    ddp = launch(tmp_path / "ddp", 4, *common)
    final = launch(tmp_path / "ds", 4, *common, env=deepspeed_env(stage))
    last = latest_checkpoint(tmp_path / "ds")
    ds = load(last, "model.pt")   # full weights (ZeRO-3: gathered from the partitions)
    assert max_diff(ddp[0], ds) < FSDP_TOL
    # the model fit returns is whole on every rank (ZeRO-3: gathered, hooks removed)
    assert max_diff(final[0], ds) == 0.0 and max_diff(final[1], ds) == 0.0
    parts = sorted(p.name for p in (last / "engine").rglob("*optim_states.pt"))
    assert len(parts) == 2, parts   # one ZeRO optimizer partition per rank
    assert load(last, "trainer.pt")["engine"] == "deepspeed"
    shutil.rmtree(last)
    launch(tmp_path / "ds", 4, *common, env=deepspeed_env(stage))
    assert max_diff(load(last, "model.pt"), ds) == 0.0


def train_losses(exp: Path) -> list[float]:
    import csv

    with open(exp / "log" / "metrics.csv", newline="") as f:
        return [float(r["value"]) for r in csv.DictReader(f)
                if r["split"] == "train" and r["name"] == "loss"]


# bf16 backbone weights / activations vs fp32: over 20 steps of the debug model the two loss
# curves differed by at most 7.4e-5 (relative) when measured; the bound leaves 13x headroom
BF16_LOSS_RTOL = 1e-3


@pytest.mark.slow
def test_bf16_backbone_keeps_fp32_masters_that_move(tmp_path):
    """model.dtype=bfloat16 (the paper setting): the trainable norms, speech rows, LoRA and
    AcousticGPT weights are fp32 masters and all move at lr 1e-4; the loss curve follows fp32."""
    from dualspeech.bin.train import main
    from dualspeech.bin.write_shards import main as write_shards
    from dualspeech.config import load_yaml
    from dualspeech.data.vocab import SpeechVocab
    from dualspeech.models.dualspeechlm import DualSpeechLM
    from dualspeech.testing.toy_corpus import write_toy_corpus

    conf = REPO / "egs/mini/conf/dualspeechlm_debug.yaml"
    data = write_toy_corpus(tmp_path / "data", "toy", "train", n_per_task=6, num_speech_tokens=32,
                            n_codes=1024, spk_dim=256)
    write_shards(["--conf", str(conf), "--data-root", str(data), "--sets", "toy:train"])

    def train(dtype: str) -> Path:
        exp = tmp_path / dtype
        args = ["--conf", str(conf), "--exp-dir", str(exp), "--data-root", str(data),
                "--train", "toy:train", "--valid", "toy:train"]
        for s in ("trainer.max_steps=20", "trainer.lr=1.0e-4", "trainer.warmup_steps=0",
                  "trainer.min_lr=1.0e-4", "trainer.save_every=0", "trainer.valid_every=0",
                  "trainer.log_every=1", "data.valid_max_examples=2", f"model.dtype={dtype}"):
            args += ["--set", s]
        main(args)
        return exp

    fp32, bf16 = train("float32"), train("bfloat16")
    final = load(checkpoint_dir(bf16, 20), "model.pt")
    assert {v.dtype for v in final.values()} == {torch.float32}
    cfg = load_yaml(bf16 / "config.yaml")
    start = DualSpeechLM.from_config(cfg, SpeechVocab.load(bf16 / "tokenizer"))
    init = {n: p.detach().float() for n, p in start.named_parameters() if p.requires_grad}
    assert init.keys() == final.keys()
    still = [k for k in final if torch.equal(final[k], init[k])]
    groups = {g: [k for k in final if g in k] for g in ("norm", "speech_embed", "acoustic_gpt.")}
    assert all(groups.values()), groups
    assert not still, f"bf16 run: weights that never changed: {still[:8]}"
    a, b = train_losses(fp32), train_losses(bf16)
    assert len(a) == len(b) == 20
    worst = max(abs(x - y) / x for x, y in zip(a, b))
    assert worst < BF16_LOSS_RTOL, f"bf16 loss curve departs from fp32 by up to {worst:.4f}"


def checkpoint_dir(exp: Path, step: int) -> Path:
    return exp / "checkpoints" / f"step-{step:08d}"


@pytest.mark.slow
def test_dualspeechlm_fsdp_trains_validates_and_exports_like_ddp(tmp_path):
    """The debug DualSpeechLM on 2 gloo processes: one task per batch, so one rank may run
    AcousticGPT while the other does not (it must stay in the root unit); validation at the end,
    then export through PEFT save_pretrained on rank 0."""
    from dualspeech.bin.write_shards import main as write_shards
    from dualspeech.testing.toy_corpus import write_toy_corpus

    conf = REPO / "egs/mini/conf/dualspeechlm_debug.yaml"
    data = write_toy_corpus(tmp_path / "data", "toy", "train", n_per_task=6, num_speech_tokens=32,
                            n_codes=1024, spk_dim=256)
    write_shards(["--conf", str(conf), "--data-root", str(data), "--sets", "toy:train"])

    def run(engine: str) -> dict:
        exp = tmp_path / engine
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
               "-m", "dualspeech.bin.train", "--conf", str(conf), "--exp-dir", str(exp),
               "--data-root", str(data), "--train", "toy:train", "--valid", "toy:train"]
        for s in ("trainer.max_steps=4", "trainer.save_every=0", "trainer.valid_every=0",
                  "data.valid_max_examples=3", f"+trainer.engine={engine}"):
            cmd += ["--set", s]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert (exp / "model" / "adapter" / "adapter_model.safetensors").is_file()
        return load(checkpoint_dir(exp, 4), "model.pt")

    ddp, fsdp = run("ddp"), run("fsdp")
    assert max_diff(ddp, fsdp) < FSDP_TOL
