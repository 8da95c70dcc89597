"""The interface every training engine implements, with the behaviour they share.

The trainer calls only these methods, in this order: ``prepare`` once; per micro batch
``accumulate`` + ``autocast`` around the forward and ``backward``; per optimizer step ``clip`` and
``step``; ``unwrap`` + ``full_params`` around validation; ``trainable_state``,
``optimizer_state`` and ``save_state`` in a checkpoint, ``check_written_by`` + ``load_state`` on
resume; ``release`` after training. A subclass overrides only what differs for it.

Precision is the same for every engine: each trainable parameter is kept in fp32
(``upcast_trainable``); a frozen backbone may stay bf16, and then the forward runs under bf16
autocast (``autocast_dtype``), so bf16 and fp32 tensors meet only inside autocast.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from torch import nn

from dualspeech.training import checkpoint as ckpt
from dualspeech.training.config import TrainerConfig

log = logging.getLogger(__name__)

LOW_PRECISION = (torch.bfloat16, torch.float16)

# model -> (optimizer, scheduler), called on the model as the engine will train it (FSDP2:
# sharded), before accelerate wraps either
BuildOptimizer = Callable[[nn.Module], tuple]


def upcast_trainable(model: nn.Module) -> int:
    """Cast every trainable floating-point parameter to fp32 in place; returns how many.

    AdamW updates of ~1e-4 relative size round away in bf16 (its 8-bit mantissa), so a
    trainable norm of a bf16 backbone would never move."""
    n = 0
    for p in model.parameters():
        if p.requires_grad and p.is_floating_point() and p.dtype != torch.float32:
            p.data = p.data.float()
            n += 1
    return n


def autocast_dtype(model: nn.Module, mixed_precision: str) -> torch.dtype | None:
    """bf16 / fp16 when the model holds such parameters or bf16 mixed precision is asked for."""
    low = {p.dtype for p in model.parameters() if p.dtype in LOW_PRECISION}
    if len(low) > 1:
        raise ValueError(f"the model mixes {sorted(map(str, low))} parameters; use one low "
                         "precision dtype for the frozen backbone")
    if low:
        return low.pop()
    return torch.bfloat16 if mixed_precision == "bf16" else None


class Engine:
    """accelerate's own path (``Accelerator.prepare`` wraps model and optimizer); subclasses
    change the parts their parallelism needs."""

    name = ""   # recorded in every checkpoint: a resume refuses one written by another engine

    def __init__(self, accelerator: Accelerator, cfg: TrainerConfig):
        self.accelerator, self.cfg = accelerator, cfg
        self.autocast_dtype: torch.dtype | None = None

    # -- set-up -----------------------------------------------------------------------------
    def prepare(self, model: nn.Module, build: BuildOptimizer):
        """Model, optimizer and scheduler for this engine (trainable weights in fp32)."""
        n_up = upcast_trainable(model)
        if n_up:
            log.info("%d trainable parameter tensors cast to fp32 (master weights)", n_up)
        self.autocast_dtype = autocast_dtype(model, self.cfg.mixed_precision)
        model.to(self.accelerator.device)
        model = self.shard(model)
        optimizer, scheduler = build(model)
        model, optimizer = self.wrap(model, optimizer)
        return model, optimizer, scheduler

    def shard(self, model: nn.Module) -> nn.Module:
        """Before the optimizer is built: change the parameters themselves (FSDP2)."""
        return model

    def wrap(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        return self.accelerator.prepare(model, optimizer)

    # -- one optimizer step -----------------------------------------------------------------
    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.accelerator.device.type, dtype=self.autocast_dtype)

    def accumulate(self, model: nn.Module, sync: bool):
        """No gradient all-reduce on the micro-batches before the last of a step (``sync``)."""
        return self.accelerator.accumulate(model)

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)  # divided by grad_accum (DeepSpeed: inside)

    def clip(self, model: nn.Module) -> float:
        """Clip to ``trainer.clip_grad``; returns the global norm before clipping."""
        norm = self.accelerator.clip_grad_norm_(model.parameters(), self.cfg.clip_grad)
        return float(norm) if norm is not None else float("nan")

    def step(self, optimizer, scheduler) -> None:
        optimizer.step()   # DeepSpeed: a no-op, its engine stepped in the last backward
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    # -- whole model ------------------------------------------------------------------------
    def unwrap(self, model: nn.Module) -> nn.Module:
        """The module to call outside the training step (validation)."""
        return self.accelerator.unwrap_model(model)

    def full_params(self, module: nn.Module):
        """A block in which every rank holds ``module``'s full parameters, so ranks may run
        different numbers of forwards (all ranks enter it)."""
        return contextlib.nullcontext()

    def release(self, model: nn.Module) -> nn.Module:
        """After training: a plain module, whole on every rank, to validate and export."""
        return self.accelerator.unwrap_model(model)

    # -- checkpoints ------------------------------------------------------------------------
    def trainable_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Full trainable tensors (all ranks call it)."""
        return ckpt.trainable_state_dict(self.accelerator.unwrap_model(model))

    def optimizer_state(self, model: nn.Module, optimizer) -> dict | None:
        """What ``trainer.pt`` stores as the optimizer (None: ``save_state`` writes it)."""
        return optimizer.state_dict()

    def save_state(self, directory: Path) -> None:
        """Per-rank files inside the checkpoint being written (all ranks call it)."""

    def check_written_by(self, path: Path, trainer_state: dict) -> None:
        """Refuse a checkpoint of another engine (``trainer_state``: its ``trainer.pt``)."""
        written = trainer_state.get("engine", "ddp")   # files from before the field: DDP's
        if written != self.name:
            raise RuntimeError(f"{path} was written by the {written} engine; this run uses "
                               f"{self.name} (optimizer states do not convert)")

    def load_state(self, path: Path, model: nn.Module, optimizer, model_state: dict,
                   optimizer_state: dict | None) -> None:
        ckpt.load_trainable_state_dict(self.accelerator.unwrap_model(model), model_state)
        try:
            optimizer.load_state_dict(optimizer_state)
        except ValueError as e:
            raise RuntimeError(f"{path}: its optimizer state does not fit this model's "
                               f"trainable parameters ({e}); the model config or code changed "
                               "since the checkpoint was written: use a new --exp-dir") from e
