"""The USToken extractor: a chunk of cuts -> (cut, token ids), batched by duration.

``bin/extract_ustokens`` hands it to the shared sharded, resumable runner
(dualspeech.tokenizers.extraction); the extraction benchmark reuses ``duration_batches``.
Bad input is decided per cut by the shared ``cut_waves``: unreadable audio, non-finite samples
or audio shorter than one token (0.04 s) are skipped with a reason; other sample rates are
resampled to 16 kHz. Audio longer than 30 s is encoded in 30 s Whisper windows whose tokens are
concatenated; silence is tokenized like any other audio.
"""
from __future__ import annotations

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
                  num_workers: int = 0) -> Iterator[tuple[object, np.ndarray]]:
    """Yield (cut, token ids) for every usable cut, in batch order; skipped cuts go into
    ``skipped`` as {cut id: reason}."""
    device = next(tokenizer.encoder.parameters()).device
    batches = duration_batches(cuts, max_duration, max_batch, tokenizer.cfg.pad_to_30s)
    loader = torch.utils.data.DataLoader(_WaveLoader(batches), batch_size=None,
                                         num_workers=num_workers, collate_fn=_as_is)
    for usable, bad in loader:
        skipped.update(bad)
        if not usable:
            continue
        ids = tokenizer.tokenize([torch.from_numpy(w).to(device) for _, w in usable])
        for (cut, _), tokens in zip(usable, ids):
            yield cut, tokens.cpu().numpy()
