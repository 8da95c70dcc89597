"""Learning-rate schedule: linear warmup from an initial lr, then cosine decay to a floor.

This is the schedule of both DualSpeechLM training stages (paper: USTokenizer warmup 3000 steps
from 1e-6 to 3e-5, cosine to 1e-5; DualSpeechLM warmup 3500 steps to 1e-4, cosine to 1e-5).
"""
from __future__ import annotations

import math

import torch


def warmup_cosine_lr(step: int, lr: float, max_steps: int, warmup_steps: int = 0,
                     warmup_init_lr: float = 0.0, min_lr: float = 0.0) -> float:
    """Learning rate used for optimizer step ``step`` (0-based)."""
    if step < warmup_steps:
        return warmup_init_lr + (lr - warmup_init_lr) * step / warmup_steps
    decay_steps = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, lr: float, max_steps: int,
                   warmup_steps: int = 0, warmup_init_lr: float = 0.0,
                   min_lr: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR over ``warmup_cosine_lr``; the optimizer's base lr must be ``lr``."""
    if lr <= 0:
        raise ValueError(f"peak lr must be > 0, got {lr}")

    def factor(step: int) -> float:
        return warmup_cosine_lr(step, lr, max_steps, warmup_steps, warmup_init_lr, min_lr) / lr

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
