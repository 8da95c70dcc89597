"""Checkpoints that resume a run exactly, written atomically.

Layout of ``<exp_dir>/checkpoints/step-00000100/``::

    model.pt       trainable state only (see ``trainable_state_dict``); frozen pretrained parts
                   (Whisper, the LLM) are rebuilt from the config, not copied into every checkpoint
    trainer.pt     optimizer, lr scheduler, step, data position (epoch, batches consumed)
    rng-rank<R>.pt python / numpy / torch (+ CUDA) RNG states of process R, and its sampler
                   state when the sampler has ``state_dict``
    engine/        DeepSpeed only: ``accelerator.save_state`` (every rank's ZeRO partition)
    manifest.json  size of every file above, written last

A checkpoint directory is assembled under a temporary name and renamed when complete, so a
crash never leaves a half-written ``step-*``. A file damaged later (a full disk, a copy cut
short) is caught by ``verify``: resume then falls back to the previous checkpoint.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

# the directory layout and state loading are shared with the model loaders (re-exported here)
from dualspeech.utils.checkpoints import (checkpoint_dir, latest_checkpoint,  # noqa: F401
                                          list_checkpoints, load_trainable_state_dict)

MANIFEST = "manifest.json"


class CorruptCheckpoint(Exception):
    """A checkpoint file is missing, truncated or unreadable (the message names it)."""


def trainable_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint must hold of ``model``.

    A model may define ``trainable_state_dict()`` itself (e.g. to add EMA codebook buffers).
    Otherwise: every parameter with ``requires_grad`` plus the persistent buffers of modules
    that own no frozen parameters (so a frozen LLM's buffers are left out).
    """
    if hasattr(model, "trainable_state_dict"):
        return model.trainable_state_dict()
    keep = {n for n, p in model.named_parameters() if p.requires_grad}
    for mod_name, module in model.named_modules():
        if any(not p.requires_grad for p in module.parameters()):
            continue
        for buf_name, _ in module.named_buffers(recurse=False):
            keep.add(f"{mod_name}.{buf_name}" if mod_name else buf_name)
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k in keep}


def rng_state() -> dict:
    """RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def temp_dir_for(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp")


def prune(exp_dir: str | Path, keep_last: int) -> None:
    for old in list_checkpoints(exp_dir)[:-keep_last]:
        shutil.rmtree(old)


def load(path: str | Path, name: str) -> dict:
    return torch.load(Path(path) / name, map_location="cpu", weights_only=True)


def write_manifest(directory: Path) -> None:
    """Record the size of every file (call when all ranks have written theirs)."""
    sizes = {str(f.relative_to(directory)): f.stat().st_size
             for f in sorted(directory.rglob("*")) if f.is_file() and f.name != MANIFEST}
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(sizes, indent=1) + "\n")
    tmp.replace(directory / MANIFEST)


def verify(path: Path) -> None:
    """Raise ``CorruptCheckpoint`` unless every file the manifest lists is there at its size."""
    if not (path / MANIFEST).exists():
        return   # written before manifests existed: only torch.load can tell
    try:
        sizes = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise CorruptCheckpoint(f"{path / MANIFEST}: unreadable ({e})") from e
    for name, size in sizes.items():
        f = path / name
        if not f.is_file():
            raise CorruptCheckpoint(f"{f}: missing")
        if f.stat().st_size != size:
            raise CorruptCheckpoint(f"{f}: {f.stat().st_size} bytes, the manifest says {size}")


def read(path: Path, names: list[str]) -> dict[str, dict]:
    """``verify`` + ``torch.load`` of ``names`` (a bad one raises ``CorruptCheckpoint``)."""
    verify(path)
    out = {}
    for name in names:
        try:
            out[name] = load(path, name)
        except Exception as e:  # torch / zip / pickle errors differ by the kind of damage
            raise CorruptCheckpoint(f"{path / name}: cannot be loaded ({type(e).__name__}: {e})") from e
    return out


def set_aside(path: Path) -> Path:
    """Rename a corrupt checkpoint out of the ``step-*`` namespace (kept for inspection)."""
    target = path.with_name(f"{path.name}.corrupt")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(path, target)
    return target
