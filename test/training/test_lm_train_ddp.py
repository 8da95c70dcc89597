"""Two CPU processes (gloo) launched by torchrun take the same optimisation steps as one process
accumulating gradients over the same two micro-batches.

Why torchrun: `accelerate launch` starts a single process for multi-CPU runs on one machine
(its multi-CPU path needs mpirun); torchrun + ACCELERATE_USE_CPU=true gives accelerate a gloo
process group (docs/model.md, "Launchers")."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from dualspeech.bin.write_shards import main as write_shards
from dualspeech.testing.toy_corpus import write_toy_corpus

REPO = Path(__file__).resolve().parents[2]
DEBUG = REPO / "egs/mini/conf/dualspeechlm_debug.yaml"
STEPS = os.environ.get("DDP_STEPS", "2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], exp: Path, data: Path, grad_accum: int) -> dict:
    # Chain-of-Condition draws from each rank's own RNG stream: fix the condition so both runs
    # see identical computations; 2 steps x 2 micro-batches stay inside one sampler epoch.
    sets = [f"trainer.grad_accum={grad_accum}", "trainer.max_steps=" + STEPS, "trainer.save_every=0",
            "trainer.valid_every=0", "trainer.log_every=1", "model.condition=concat",
            "data.sampler.max_tokens=256", "data.valid_max_examples=2"]
    args = cmd + ["-m", "dualspeech.bin.train", "--conf", str(DEBUG), "--exp-dir", str(exp),
                  "--data-root", str(data), "--train", "toy:train", "--valid", "toy:train"]
    for s in sets:
        args += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return torch.load(exp / "checkpoints" / f"step-{int(STEPS):08d}" / "model.pt", weights_only=True)


def test_two_process_ddp_equals_one_process_grad_accum(tmp_path):
    data = write_toy_corpus(tmp_path / "data", "toy", "train", n_per_task=6, num_speech_tokens=32,
                            n_codes=1024, spk_dim=256)
    write_shards(["--conf", str(DEBUG), "--data-root", str(data), "--sets", "toy:train"])
    single = run([sys.executable], tmp_path / "single", data, grad_accum=2)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    ddp = run(launcher, tmp_path / "ddp", data, grad_accum=1)
    assert single.keys() == ddp.keys()
    worst = max(float((single[k] - ddp[k]).abs().max()) for k in single)
    assert worst < 1e-5, f"DDP and grad accumulation differ by up to {worst}"
    moved = [k for k in single if "lora_B" in k and single[k].abs().max() > 0]
    assert moved, "no LoRA weight moved: the comparison would be vacuous"
