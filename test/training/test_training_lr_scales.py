"""trainer.lr_scales: a part of the model gets its own peak lr; the schedule keeps the ratio."""
import pytest
import torch

from dualspeech.config import ConfigError
from dualspeech.training.config import TrainerConfig
from dualspeech.training.schedules import make_scheduler
from dualspeech.training.trainer import param_groups


def model():
    m = torch.nn.Module()
    m.backbone = torch.nn.Linear(4, 4)
    m.acoustic_gpt = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    m.acoustic_gpt[1].weight.requires_grad_(False)
    return m


def lrs(groups):
    return sorted((g["lr"], g["weight_decay"], sum(p.numel() for p in g["params"])) for g in groups)


def test_groups_by_prefix_and_decay():
    m = model()
    assert lrs(param_groups(m, 0.1, lr_scales={}, lr=1e-2)) == [(1e-2, 0.0, 4 + 4 + 4), (1e-2, 0.1, 32)]
    got = lrs(param_groups(m, 0.1, lr_scales={"acoustic_gpt.": 0.3, "acoustic_gpt.0.bias": 0.5}, lr=1e-2))
    # frozen LayerNorm weight: in no group; the longest prefix wins for the AcousticGPT bias
    assert got == [(pytest.approx(3e-3), 0.0, 4), (pytest.approx(3e-3), 0.1, 16),
                   (pytest.approx(5e-3), 0.0, 4), (1e-2, 0.0, 4), (1e-2, 0.1, 16)]


def test_schedule_keeps_the_ratio():
    opt = torch.optim.AdamW(param_groups(model(), 0.0, lr_scales={"acoustic_gpt.": 0.25}, lr=1e-2), lr=1e-2)
    sched = make_scheduler(opt, 1e-2, max_steps=10, warmup_steps=2, warmup_init_lr=1e-4,
                           min_lr=1e-3)
    for _ in range(5):
        opt.step()
        sched.step()
        by_scale = sorted({round(g["lr"], 12) for g in opt.param_groups})
        assert by_scale[0] == pytest.approx(0.25 * by_scale[1])


def test_bad_scales_are_refused():
    with pytest.raises(ValueError, match="match no trainable parameter"):
        param_groups(model(), 0.0, lr_scales={"acoustic_gtp.": 0.3}, lr=1e-2)
    with pytest.raises(ConfigError, match="lr_scales"):
        TrainerConfig(lr_scales={"acoustic_gpt.": 0})
