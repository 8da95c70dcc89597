"""Where a run's checkpoints live and how their trainable tensors go back into a model.

Shared by the trainer (which writes ``<exp_dir>/checkpoints/step-NNNNNNNN/``, see
``dualspeech.training.checkpoint``) and the model loaders (which read them); it sits in
``utils`` so loading a model never imports the training package.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

CKPT_RE = re.compile(r"^step-(\d{8})$")


def checkpoint_dir(exp_dir: str | Path, step: int) -> Path:
    return Path(exp_dir) / "checkpoints" / f"step-{step:08d}"


def list_checkpoints(exp_dir: str | Path) -> list[Path]:
    """Complete checkpoints of an experiment, oldest first."""
    root = Path(exp_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and CKPT_RE.match(p.name))


def latest_checkpoint(exp_dir: str | Path) -> Path | None:
    found = list_checkpoints(exp_dir)
    return found[-1] if found else None


def load_trainable_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a ``trainable_state_dict``; every saved tensor must find its place in ``model``."""
    unexpected = model.load_state_dict(state, strict=False).unexpected_keys
    if unexpected:
        raise KeyError(f"checkpoint has tensors the model does not: {unexpected[:5]} "
                       "(was it written by a different model config?)")
