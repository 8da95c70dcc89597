"""The USToken extractor: a chunk of cuts -> (cut, token ids), batched by duration.

``bin/extract_ustokens`` hands it to the shared sharded, resumable runner
(dualspeech.tokenizers.extraction); the extraction benchmark reuses ``duration_batches``.
Bad input is decided per cut by the shared ``cut_waves``: unreadable audio, non-finite samples
or audio shorter than one token (0.04 s) are skipped with a reason; other sample rates are
resampled to 16 kHz. Audio longer than 30 s is encoded in 30 s Whisper windows whose tokens are
concatenated; silence is tokenized like any other audio. On CUDA the Whisper encoder runs under
bf16 autocast by default (fp16 where the GPU has no bf16); the CPU path stays fp32.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import numpy as np
import torch

from dualspeech.tokenizers.extraction import cut_waves
from dualspeech.tokenizers.ustokenizer.frontend import MIN_SAMPLES, SAMPLE_RATE
from dualspeech.tokenizers.ustokenizer.model import USTokenizer

WINDOW = 30.0


def duration_batches(cuts: list, max_duration: float, max_batch: int, pad_to_30s: bool) -> list[list]:
    """Group cuts of similar length; a batch holds at most ``max_duration`` seconds of encoder
    input (30 s per window when padding) and ``max_batch`` cuts."""
    def cost(cut) -> float:
        windows = max(1, math.ceil(cut.duration / WINDOW))
        return windows * WINDOW if pad_to_30s else cut.duration

    batches, current, total = [], [], 0.0
    for cut in sorted(cuts, key=lambda c: c.duration, reverse=True):
        if current and (total + cost(cut) > max_duration or len(current) >= max_batch):
            batches.append(current)
            current, total = [], 0.0
        current.append(cut)
        total += cost(cut)
    if current:
        batches.append(current)
    return batches


AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}


def whisper_autocast_dtype(device: torch.device | str, choice: str = "auto") -> torch.dtype | None:
    """The dtype the Whisper encoder runs in: ``auto`` is bf16 on CUDA (fp16 without bf16
    support) and none (fp32) elsewhere; ``bf16``/``fp16``/``none`` force it (bf16 also works on CPU)."""
    if choice == "auto":
        if torch.device(device).type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if choice not in AUTOCAST:
        raise ValueError(f"autocast must be auto, {', '.join(AUTOCAST)}; got {choice!r}")
    return AUTOCAST[choice]


@contextlib.contextmanager
def frontend_autocast(tokenizer: USTokenizer, dtype: torch.dtype | None):
    """Run the tokenizer's Whisper frontend under autocast in ``dtype`` inside the block."""
    before, tokenizer.frontend.autocast_dtype = tokenizer.frontend.autocast_dtype, dtype
    try:
        yield
    finally:
        tokenizer.frontend.autocast_dtype = before


def _as_is(items):
    return items


class _WaveLoader(torch.utils.data.Dataset):
    """One item per batch: its usable (cut, wave) pairs and the {cut id: reason} of the rest,
    so audio can be read by DataLoader worker processes."""

    def __init__(self, batches: list[list]):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[list, dict]:
        skipped: dict[str, str] = {}
        return cut_waves(self.batches[i], SAMPLE_RATE, MIN_SAMPLES, skipped), skipped


def tokenize_cuts(tokenizer: USTokenizer, cuts: list, skipped: dict[str, str],
                  max_duration: float = 300.0, max_batch: int = 64,
                  num_workers: int = 0, autocast: str = "auto") -> Iterator[tuple[object, np.ndarray]]:
    """Yield (cut, token ids) for every usable cut, in batch order; skipped cuts go into
    ``skipped`` as {cut id: reason}. ``autocast``: see ``whisper_autocast_dtype``."""
    device = next(tokenizer.encoder.parameters()).device
    dtype = whisper_autocast_dtype(device, autocast)
    batches = duration_batches(cuts, max_duration, max_batch, tokenizer.cfg.pad_to_30s)
    loader = torch.utils.data.DataLoader(_WaveLoader(batches), batch_size=None,
                                         num_workers=num_workers, collate_fn=_as_is)
    for usable, bad in loader:
        skipped.update(bad)
        if not usable:
            continue
        with frontend_autocast(tokenizer, dtype):
            ids = tokenizer.tokenize([torch.from_numpy(w).to(device) for _, w in usable])
        for (cut, _), tokens in zip(usable, ids):
            yield cut, tokens.cpu().numpy()
