"""Layers shared by the neural codec backends (WavTokenizer, HiFi-GAN vocoders)."""
from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)


class WNConv1d(nn.Module):
    """(Transposed) Conv1d stored as old-style weight norm: w = g * v / ||v|| (norm over all dims
    but 0, no eps), keys ``weight_g`` / ``weight_v`` / ``bias``: the layout of checkpoints saved
    with ``torch.nn.utils.weight_norm`` (WavTokenizer, HiFi-GAN, fairseq CodeHiFiGAN)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1,
                 transpose: bool = False, padding: int = 0, init_std: float = 0.02):
        super().__init__()
        shape = (cin, cout, kernel) if transpose else (cout, cin, kernel)
        self.weight_v = nn.Parameter(torch.randn(shape) * init_std)
        self.weight_g = nn.Parameter(self.weight_v.detach().flatten(1).norm(dim=1).view(-1, 1, 1))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.stride, self.dilation, self.transpose, self.padding = stride, dilation, transpose, padding

    def forward(self, x):
        v = self.weight_v
        w = self.weight_g * v / v.flatten(1).norm(dim=1).view(-1, 1, 1)
        if self.transpose:
            return F.conv_transpose1d(x, w, self.bias, stride=self.stride, padding=self.padding)
        return F.conv1d(x, w, self.bias, stride=self.stride, dilation=self.dilation,
                        padding=self.padding)


class CheckpointError(ValueError):
    """A codec checkpoint that cannot be read or does not fit the model it is loaded into."""


def load_strict(model: nn.Module, state: dict, source: str, hint: str) -> None:
    """``model.load_state_dict(state, strict=True)`` with one error that lists the missing and
    unexpected keys and the shape mismatches (``hint`` says what probably went wrong)."""
    want = model.state_dict()
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    bad_shape = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(want[k].shape)}"
                       for k in set(want) & set(state) if state[k].shape != want[k].shape)
    if missing or unexpected or bad_shape:
        def show(items):
            return ", ".join(items[:6]) + (f" ... (+{len(items) - 6})" if len(items) > 6 else "")
        raise CheckpointError(
            f"{source}: {len(missing)} missing key(s) [{show(missing)}], "
            f"{len(unexpected)} unexpected key(s) [{show(unexpected)}], "
            f"{len(bad_shape)} shape mismatch(es) [{show(bad_shape)}]; {hint}")
    model.load_state_dict(state, strict=True)


def read_checkpoint(path: Path, allow_unsafe_pickle: bool, what: str):
    """``torch.load(weights_only=True)``; a file that holds Python objects loads only when the
    config says ``codec.allow_unsafe_pickle: true``. Unreadable files raise ``CheckpointError``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not allow_unsafe_pickle:
            raise CheckpointError(
                f"{path} holds Python objects that torch.load(weights_only=True) refuses ({e}); "
                "if you trust the file set codec.allow_unsafe_pickle: true") from e
        log.warning("loading %s with weights_only=False (codec.allow_unsafe_pickle)", path)
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"cannot read {what} checkpoint {path} (corrupt or not a "
                              f"PyTorch checkpoint): {e}") from e
