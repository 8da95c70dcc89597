"""A trainer killed (SIGKILL, no clean-up) after a checkpoint and restarted in a new process ends
with the same weights as an uninterrupted run: DualSpeechLM (debug config on the toy token
corpus) and the USTokenizer (debug config on espeak speech, with DataLoader workers drawing
prompt paraphrases). Each run is its own process (so anything tied to a process, such as the
hash salt or the RNG streams of workers, would show up), all with OMP_NUM_THREADS=1: CPU
matmul / convolution reductions are split by thread, so a different thread count changes the
last bits (the trainer warns when a resume runs with another count than the checkpoint)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dualspeech.training.checkpoint import checkpoint_dir, load

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parents[1]))


def kill_after_checkpoint(args: list[str], exp: Path, step: int, timeout: float = 600) -> None:
    """Run ``python -m <args>`` in its own process group; SIGKILL the group as soon as the
    checkpoint of ``step`` exists (the run is then inside the next steps)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + timeout
    try:
        while not checkpoint_dir(exp, step).exists():
            if proc.poll() is not None:
                raise AssertionError(f"finished before it could be killed (rc {proc.returncode}): "
                                     + proc.stderr.read().decode()[-3000:])
            if time.time() > deadline:
                raise AssertionError(f"no checkpoint of step {step} after {timeout} s")
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the run ended by itself: the kill came too late"


def run(args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]


def assert_same(ref_exp: Path, run_exp: Path, step: int) -> None:
    a = load(checkpoint_dir(ref_exp, step), "model.pt")
    b = load(checkpoint_dir(run_exp, step), "model.pt")
    assert a.keys() == b.keys() and len(a) > 3
    diff = {k: float((a[k].float() - b[k].float()).abs().max()) for k in a if not torch.equal(a[k], b[k])}
    assert not diff, f"killed + resumed run differs from the uninterrupted one: {diff}"


@pytest.mark.slow
def test_dualspeechlm_killed_and_resumed_in_a_new_process(tmp_path):
    from dualspeech.bin.write_shards import main as write_shards
    from dualspeech.testing.toy_corpus import write_toy_corpus

    conf = REPO / "egs/mini/conf/dualspeechlm_debug.yaml"
    data = write_toy_corpus(tmp_path / "data", "toy", "train", n_per_task=6, num_speech_tokens=32,
                            n_codes=1024, spk_dim=256)
    write_shards(["--conf", str(conf), "--data-root", str(data), "--sets", "toy:train"])

    def args(exp: Path) -> list[str]:
        out = ["--conf", str(conf), "--exp-dir", str(exp), "--data-root", str(data),
               "--train", "toy:train", "--valid", "toy:train"]
        for s in ("trainer.max_steps=12", "trainer.save_every=4", "trainer.keep_last=5",
                  "trainer.valid_every=0", "trainer.log_every=2", "data.valid_max_examples=2"):
            out += ["--set", s]
        return out

    run(["dualspeech.bin.train", *args(tmp_path / "ref")])
    kill_after_checkpoint(["dualspeech.bin.train", *args(tmp_path / "run")], tmp_path / "run", 4)
    run(["dualspeech.bin.train", *args(tmp_path / "run")])
    assert_same(tmp_path / "ref", tmp_path / "run", 12)


@pytest.mark.slow
def test_ustokenizer_killed_and_resumed_in_a_new_process(tmp_path):
    from fake_corpora import CONF, make_corpus

    corpus = make_corpus(tmp_path / "toy")

    def args(exp: Path) -> list[str]:
        out = ["--conf", CONF, "--exp-dir", str(exp), "--data-dir", str(corpus),
               "--train-sets", "toy:train"]
        for s in ("data.max_duration=6.0", "trainer.max_steps=12", "trainer.save_every=4",
                  "trainer.keep_last=5", "+trainer.num_workers=2", "ustokenizer.vq.dead_code_steps=3"):
            out += ["--set", s]
        return out

    run(["dualspeech.bin.train_ustokenizer", *args(tmp_path / "ref")])
    kill_after_checkpoint(["dualspeech.bin.train_ustokenizer", *args(tmp_path / "run")],
                          tmp_path / "run", 4)
    run(["dualspeech.bin.train_ustokenizer", *args(tmp_path / "run")])
    for step in (8, 12):
        assert_same(tmp_path / "ref", tmp_path / "run", step)
