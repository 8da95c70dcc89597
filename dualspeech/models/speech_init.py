"""Initial values of DualSpeechLM's speech rows (``model.speech_init``).

``mean_noise`` (the reference code): every new row = mean of the backbone's text rows + a
little noise; the LLM starts knowing nothing about the speech tokens.

``ustokenizer``: speech row ``c`` = the trained USTokenizer's adapter applied to its codebook
vector ``c``. The USTokenizer was trained so that a frozen LLM understands exactly these
adapter outputs, so the rows start where that training left them and DualSpeechLM does not
have to learn the speech embedding from scratch. The adapter is ``Linear`` then ``Conv1d(k=3,
padding=1)``; a row is one token without neighbours, so the conv sees a length-1 sequence with
zero padding: row = ``W_conv[:, :, 1] @ (W_proj c + b_proj) + b_conv`` (centre tap + bias).
The begin/end-of-audio markers are not codes and keep the ``mean_noise`` init.

``scale``: ``text_rms`` (default) rescales all speech rows by one factor so their mean norm
equals the mean norm of the text rows; ``adapter`` keeps the adapter's output as is (the scale
the frozen LLM read). With a tied head the rows are also the speech tokens' output rows, and
unscaled adapter rows (far larger than text rows) then win every logit: measured on the mini
corpus, dev answer CE 157 (adapter) vs 6.9 (text_rms) vs 7.6 (mean_noise), docs/model.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

METHODS = ("mean_noise", "ustokenizer")
SCALES = ("adapter", "text_rms")
# the keys of the trainable state that dualspeech.tokenizers.ustokenizer.checkpoint saves
CODEBOOK = "tokenizer.vq.codebook"
ADAPTER = ("adapter.proj.weight", "adapter.proj.bias", "adapter.conv.weight", "adapter.conv.bias")


@dataclass
class SpeechInitConfig:
    """``model.speech_init`` config section."""
    method: str = "mean_noise"        # mean_noise (reference code) | ustokenizer
    ustokenizer_ckpt: str | None = None   # final.pt of train_ustokenizer (method: ustokenizer)
    scale: str = "text_rms"           # text_rms | adapter (see the module docstring)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"model.speech_init.method={self.method!r}; use one of {METHODS}")
        if self.scale not in SCALES:
            raise ValueError(f"model.speech_init.scale={self.scale!r}; use one of {SCALES}")


def init_new_rows(existing: torch.Tensor, n: int, noise: float, generator=None) -> torch.Tensor:
    """New embedding rows = mean of the existing rows + noise (scaled by their per-dim std).

    Mean init keeps the new rows inside the distribution the backbone already handles (random
    rows would make the first logits/activations of speech positions huge)."""
    existing = existing.detach().float()
    mean, std = existing.mean(0), existing.std(0)
    rand = torch.randn(n, existing.shape[1], generator=generator)
    return mean + noise * std * rand


def adapter_rows(path: str | Path) -> torch.Tensor:
    """[K, hidden] = the adapter of a trained USTokenizer applied to each codebook vector."""
    from dualspeech.tokenizers.ustokenizer.checkpoint import FORMAT

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.speech_init.ustokenizer_ckpt={path} does not exist; "
                                "point it at the final.pt that train_ustokenizer wrote (the "
                                "recipes pass stage 3's), or set model.speech_init.method="
                                "mean_noise")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(f"{path} is not a USTokenizer file ({FORMAT})")
    state = obj["state_dict"]
    missing = [k for k in (CODEBOOK, *ADAPTER) if k not in state]
    if missing:
        raise ValueError(f"{path} has no {missing}: the USTokenizer was trained without the "
                         "understanding loss (no adapter); use model.speech_init.method="
                         "mean_noise")
    codebook = state[CODEBOOK].float()
    w_proj, b_proj, w_conv, b_conv = (state[k].float() for k in ADAPTER)
    projected = codebook @ w_proj.T + b_proj
    return projected @ w_conv[:, :, 1].T + b_conv


def speech_rows(cfg: SpeechInitConfig, text_rows: torch.Tensor, num_tokens: int, noise: float,
                generator: torch.Generator) -> torch.Tensor:
    """The ``num_tokens + 2`` new rows (speech codes, then begin/end-of-audio) for a backbone
    whose text embedding rows are ``text_rows``."""
    base = init_new_rows(text_rows, num_tokens + 2, noise, generator)
    if cfg.method == "mean_noise":
        return base
    if not cfg.ustokenizer_ckpt:
        raise ValueError("model.speech_init.method=ustokenizer needs "
                         "model.speech_init.ustokenizer_ckpt (the USTokenizer's final.pt)")
    rows = adapter_rows(cfg.ustokenizer_ckpt)
    if rows.shape != (num_tokens, text_rows.shape[1]):
        raise ValueError(f"{cfg.ustokenizer_ckpt}: adapter(codebook) is {tuple(rows.shape)}, the "
                         f"model needs {num_tokens} speech rows of width {text_rows.shape[1]}; "
                         "train DualSpeechLM on the LLM and codebook size its USTokenizer used")
    if cfg.scale == "text_rms":
        rows = rows * (text_rows.float().norm(dim=1).mean() / rows.norm(dim=1).mean())
    base[:num_tokens] = rows
    return base
