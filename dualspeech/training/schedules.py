"""Learning-rate schedule: linear warmup from an initial lr, then cosine decay to a floor.

This is the schedule of both DualSpeechLM training stages (paper: USTokenizer warmup 3000 steps
from 1e-6 to 3e-5, cosine to 1e-5; DualSpeechLM warmup 3500 steps to 1e-4, cosine to 1e-5).
Optional restarts begin it again (warmup, then cosine to the next restart or the end), so a
curriculum phase that adds tasks gets a full learning rate instead of the decayed tail.
"""
from __future__ import annotations

import bisect
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


def check_restarts(restarts, max_steps: int) -> tuple[int, ...]:
    """The restart steps as a tuple; ValueError unless increasing and inside (0, max_steps)."""
    restarts = tuple(restarts)
    if list(restarts) != sorted(set(restarts)) or any(not 0 < r < max_steps for r in restarts):
        raise ValueError(f"lr restarts must be increasing steps in (0, max_steps={max_steps}), "
                         f"got {list(restarts)}")
    return restarts


def restarted_lr(step: int, lr: float, max_steps: int, restarts: tuple[int, ...] = (),
                 **schedule) -> float:
    """``warmup_cosine_lr`` begun again at each step of ``restarts`` (sorted, in (0, max_steps))."""
    bounds = [0, *restarts, max_steps]
    k = min(bisect.bisect_right(bounds, step), len(bounds) - 1) - 1
    return warmup_cosine_lr(step - bounds[k], lr, bounds[k + 1] - bounds[k], **schedule)


def make_scheduler(optimizer: torch.optim.Optimizer, lr: float, max_steps: int,
                   warmup_steps: int = 0, warmup_init_lr: float = 0.0,
                   min_lr: float = 0.0, restarts: tuple[int, ...] = ()
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR over ``restarted_lr``; the optimizer's base lr must be ``lr``."""
    if lr <= 0:
        raise ValueError(f"peak lr must be > 0, got {lr}")
    restarts = check_restarts(restarts, max_steps)
    schedule = dict(warmup_steps=warmup_steps, warmup_init_lr=warmup_init_lr, min_lr=min_lr)

    def factor(step: int) -> float:
        return restarted_lr(step, lr, max_steps, restarts, **schedule) / lr

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
