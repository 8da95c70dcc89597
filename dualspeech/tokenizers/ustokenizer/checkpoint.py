"""The exported tokenizer file (``<exp_dir>/final.pt``): what extraction and later stages load.

Holds the trainable state (encoder, VQ codebook and its statistics, decoder, adapter), the
``ustokenizer:`` config (including the frontend settings ``whisper`` and ``pad_to_30s``) and
the sha256 of the Whisper checkpoint it was trained on, so extraction with a different
Whisper fails instead of producing meaningless tokens.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from dualspeech.config import build
from dualspeech.pretrained import load_whisper, resolve
from dualspeech.tokenizers.ustokenizer.config import USTokenizerConfig
from dualspeech.tokenizers.ustokenizer.model import USTokenizer
from dualspeech.utils.io import atomic_torch_save, file_sha256

log = logging.getLogger(__name__)

FORMAT = "dualspeech-ustokenizer/1"
PREFIX = "tokenizer."


def save_tokenizer(path: str | Path, cfg: USTokenizerConfig, trainable_state: dict,
                   full_config: dict, step: int) -> Path:
    obj = {"format": FORMAT, "ustokenizer": dataclasses.asdict(cfg),
           "whisper_sha256": file_sha256(resolve(cfg.whisper)), "state_dict": trainable_state,
           "config": full_config, "step": step}
    atomic_torch_save(obj, path)
    return Path(path)


def load_tokenizer(path: str | Path, device: str | torch.device = "cpu") -> USTokenizer:
    """The frontend + encoder + VQ (+ decoder) of a trained tokenizer, in eval mode. No LLM."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(f"{path} is not a USTokenizer file ({FORMAT}); pass the final.pt "
                         "written by train_ustokenizer")
    cfg = build(USTokenizerConfig, obj["ustokenizer"], "ustokenizer")
    whisper_file = resolve(cfg.whisper)
    if file_sha256(whisper_file) != obj["whisper_sha256"]:
        raise ValueError(f"{path} was trained on a different Whisper checkpoint than "
                         f"{cfg.whisper} -> {whisper_file} (sha256 differs); its tokens would be "
                         "meaningless with this frontend")
    tokenizer = USTokenizer(cfg, load_whisper(cfg.whisper))
    state = {k[len(PREFIX):]: v for k, v in obj["state_dict"].items() if k.startswith(PREFIX)}
    result = tokenizer.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("frontend.")]
    if missing or result.unexpected_keys:
        raise ValueError(f"{path}: state does not fit the model (missing {missing[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]})")
    return tokenizer.eval().to(device)
