"""The shared trainer: loss goes down, exact resume after a crash, schedule, DDP on CPU."""
from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dualspeech.config import ConfigError
from dualspeech.training import latest_checkpoint, warmup_cosine_lr
from dualspeech.training.config import TrainerConfig
from dualspeech.training.checkpoint import list_checkpoints, load
from dualspeech.training.schedules import make_scheduler, restarted_lr

sys.path.insert(0, str(Path(__file__).parents[1]))
from training_toy import config, train  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """accelerate keeps one state per process; tests that change mixed_precision need a fresh one
    (a real run creates a single Trainer per process)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    yield
    AcceleratorState._reset_state()


def read_metric(exp_dir: Path, name: str, split: str = "train") -> list[tuple[int, float]]:
    with open(exp_dir / "log" / "metrics.csv") as f:
        return [(int(r["step"]), float(r["value"])) for r in csv.DictReader(f)
                if r["name"] == name and r["split"] == split]


def test_loss_goes_down(tmp_path):
    train(tmp_path, config(max_steps=40, save_every=0, log_every=5))
    mse = read_metric(tmp_path, "mse")
    assert [s for s, _ in mse] == list(range(5, 45, 5))
    assert mse[-1][1] < 0.3 * mse[0][1], mse
    assert (tmp_path / "tensorboard").is_dir()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000040"]


def test_fresh_start_drops_rows_of_a_run_killed_before_its_first_checkpoint(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, config(max_steps=40, save_every=0, log_every=5), crash_after=12)
    assert read_metric(tmp_path, "mse") and latest_checkpoint(tmp_path) is None
    train(tmp_path, config(max_steps=10, save_every=0, log_every=5))
    assert [s for s, _ in read_metric(tmp_path, "mse")] == [5, 10]


def test_resume_matches_uninterrupted_run(tmp_path):
    cfg = config(max_steps=8, save_every=4)
    ref = train(tmp_path / "ref", cfg)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "run", cfg, crash_after=11)  # dies inside step 6
    assert latest_checkpoint(tmp_path / "run").name == "step-00000004"
    resumed = train(tmp_path / "run", cfg)
    for (name, a), (_, b) in zip(ref.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    opt_ref = load(latest_checkpoint(tmp_path / "ref"), "trainer.pt")
    opt_run = load(latest_checkpoint(tmp_path / "run"), "trainer.pt")
    assert (opt_ref["epoch"], opt_ref["batches_done"]) == (opt_run["epoch"], opt_run["batches_done"])
    assert opt_ref["epoch"] >= 1, "the test should cross an epoch boundary"
    for i, s in opt_ref["optimizer"]["state"].items():
        assert torch.equal(s["exp_avg_sq"], opt_run["optimizer"]["state"][i]["exp_avg_sq"])
    # the CSV has no rows from the crashed attempt after step 4, and no duplicates
    steps = [s for s, _ in read_metric(tmp_path / "run", "mse")]
    assert steps == [2, 4, 6, 8]
    # checkpoints keep trainable weights only (the frozen layer is rebuilt from config)
    saved = load(latest_checkpoint(tmp_path / "run"), "model.pt")
    assert sorted(saved) == ["net.0.bias", "net.0.weight", "net.2.bias", "net.2.weight"]


def test_keep_last_prunes(tmp_path):
    train(tmp_path, config(max_steps=8, save_every=2, keep_last=2))
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000006", "step-00000008"]


def test_warmup_cosine_schedule():
    kw = dict(lr=3e-5, max_steps=100, warmup_steps=10, warmup_init_lr=1e-6, min_lr=1e-5)
    assert warmup_cosine_lr(0, **kw) == pytest.approx(1e-6)
    assert warmup_cosine_lr(5, **kw) == pytest.approx(1e-6 + 0.5 * (3e-5 - 1e-6))
    assert warmup_cosine_lr(10, **kw) == pytest.approx(3e-5)
    assert warmup_cosine_lr(55, **kw) == pytest.approx(1e-5 + 0.5 * 2e-5 * (1 + math.cos(math.pi / 2)))
    assert warmup_cosine_lr(100, **kw) == pytest.approx(1e-5)
    assert warmup_cosine_lr(500, **kw) == pytest.approx(1e-5)


def test_restart_begins_the_schedule_again():
    """A restart at step 60 of 100 replays warmup + cosine over the last 40 steps, and the
    scheduler the trainer builds follows it step by step."""
    kw = dict(warmup_steps=10, warmup_init_lr=1e-6, min_lr=1e-5)
    assert restarted_lr(30, 3e-5, 100, (60,), **kw) == pytest.approx(warmup_cosine_lr(30, 3e-5, 60, **kw))
    assert restarted_lr(59, 3e-5, 100, (60,), **kw) == pytest.approx(warmup_cosine_lr(59, 3e-5, 60, **kw))
    assert restarted_lr(60, 3e-5, 100, (60,), **kw) == pytest.approx(1e-6)
    assert restarted_lr(70, 3e-5, 100, (60,), **kw) == pytest.approx(3e-5)
    assert restarted_lr(100, 3e-5, 100, (60,), **kw) == pytest.approx(1e-5)
    assert restarted_lr(40, 3e-5, 100, (), **kw) == pytest.approx(warmup_cosine_lr(40, 3e-5, 100, **kw))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=3e-5)
    sched = make_scheduler(opt, 3e-5, 100, restarts=[60], **kw)
    for step in range(100):
        assert opt.param_groups[0]["lr"] == pytest.approx(restarted_lr(step, 3e-5, 100, (60,), **kw))
        opt.step()
        sched.step()
    for bad in ([0], [100], [60, 30], [30, 30]):
        with pytest.raises(ValueError, match="lr restarts"):
            make_scheduler(opt, 3e-5, 100, restarts=bad)
        with pytest.raises(ConfigError, match="trainer.lr_restarts"):   # refused at config load
            TrainerConfig(max_steps=100, lr_restarts=bad)


def test_ddp_two_cpu_processes(tmp_path):
    """`accelerate launch --multi_gpu` on a CPU machine runs torchrun with gloo: 2 ranks must
    end with identical weights and one checkpoint holding both RNG states."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           str(Path(__file__).parents[1] / "training_toy.py"), str(tmp_path), "6"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(tmp_path / "final-rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "final-rank1.pt", weights_only=True)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert latest_checkpoint(tmp_path).name == "step-00000006"
    assert load(latest_checkpoint(tmp_path), "trainer.pt")["num_processes"] == 2
    assert sorted(p.name for p in latest_checkpoint(tmp_path).glob("rng-rank*.pt")) == [
        "rng-rank0.pt", "rng-rank1.pt"]


def test_bf16_and_grad_accum_run_on_cpu(tmp_path):
    model = train(tmp_path, config(max_steps=4, grad_accum=3, mixed_precision="bf16", save_every=0))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(math.isfinite(v) for _, v in read_metric(tmp_path, "mse"))


def test_config_errors_name_the_key():
    from dualspeech.config import ConfigError, build
    from dualspeech.training import TrainerConfig

    with pytest.raises(ConfigError, match="max_step"):
        build(TrainerConfig, {"max_step": 10}, "trainer")
    with pytest.raises(ConfigError, match="mixed_precision"):
        build(TrainerConfig, {"mixed_precision": "fp16"}, "trainer")
    assert build(TrainerConfig, {"betas": [0.9, 0.95]}, "trainer").betas == (0.9, 0.95)


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    cfg = config(max_steps=8, save_every=4)
    ref = train(tmp_path / "ref", cfg)
    train(tmp_path / "run", cfg)
    newest = latest_checkpoint(tmp_path / "run")
    assert newest.name == "step-00000008"
    model_pt = newest / "model.pt"
    model_pt.write_bytes(model_pt.read_bytes()[:100])   # a copy cut short / a full disk
    with caplog.at_level("WARNING"):
        resumed = train(tmp_path / "run", cfg)
    assert "step-00000008 is damaged" in caplog.text and "falling back" in caplog.text
    assert (tmp_path / "run" / "checkpoints" / "step-00000008.corrupt").is_dir()
    for (name, a), (_, b) in zip(ref.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name   # retrained from step 4 to the same weights
    assert latest_checkpoint(tmp_path / "run").name == "step-00000008"


def test_unloadable_checkpoint_without_size_change_is_caught(tmp_path, caplog):
    cfg = config(max_steps=4, save_every=2)
    train(tmp_path, cfg)
    trainer_pt = latest_checkpoint(tmp_path) / "trainer.pt"
    data = bytearray(trainer_pt.read_bytes())
    data[-200:] = bytes(200)   # same size, zeroed zip directory
    trainer_pt.write_bytes(bytes(data))
    with caplog.at_level("WARNING"):
        train(tmp_path, cfg)
    assert "cannot be loaded" in caplog.text
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002", "step-00000004"]


def test_every_checkpoint_damaged_is_an_error_not_a_silent_fresh_start(tmp_path):
    cfg = config(max_steps=4, save_every=2)
    train(tmp_path, cfg)
    for path in list_checkpoints(tmp_path):
        (path / "trainer.pt").write_bytes(b"")
    with pytest.raises(RuntimeError, match="every checkpoint .* is damaged"):
        train(tmp_path, config(max_steps=6, save_every=2))
