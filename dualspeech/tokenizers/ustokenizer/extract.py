"""Batched USToken extraction for cut manifests (used by ``bin/extract_ustokens`` and the
extraction benchmark).

Bad input, decided per cut: unreadable audio, non-finite samples, or audio shorter than one
token (0.04 s) are skipped and counted; audio at another sample rate is resampled to 16 kHz;
audio longer than 30 s is split into 30 s Whisper windows whose tokens are concatenated;
silence is tokenized like any other audio.
"""
from __future__ import annotations

import logging
import math
from typing import Iterator

import numpy as np
import torch
from lhotse.audio.utils import AudioLoadingError

from dualspeech.audio import AudioError, load_cut_audio
from dualspeech.tokenizers.ustokenizer.frontend import MIN_SAMPLES, SAMPLE_RATE
from dualspeech.tokenizers.ustokenizer.model import USTokenizer

log = logging.getLogger(__name__)
WINDOW = 30.0


def load_wave(cut) -> tuple[torch.Tensor | None, str | None]:
    """(16 kHz mono wave, None) or (None, reason it is skipped)."""
    try:
        wave = load_cut_audio(cut, SAMPLE_RATE)
    except (AudioError, AudioLoadingError, OSError, ValueError, RuntimeError) as e:
        log.warning("cut %s: unreadable audio (%s)", cut.id, e)
        return None, "unreadable"
    if not np.isfinite(wave).all():
        return None, "non_finite"
    if len(wave) < MIN_SAMPLES:
        return None, "too_short"
    return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), None


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


def _as_is(items: list) -> list:
    return items


class _WaveLoader(torch.utils.data.Dataset):
    def __init__(self, batches: list[list]):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> list:
        return [(cut, *load_wave(cut)) for cut in self.batches[i]]


def tokenize_cuts(tokenizer: USTokenizer, cuts: list, max_duration: float = 300.0,
                  max_batch: int = 64, num_workers: int = 0,
                  skipped: dict[str, str] | None = None) -> Iterator[tuple[object, np.ndarray]]:
    """Yield (cut, int16 token ids) for every usable cut (in batch order, not input order);
    skipped cuts are recorded in ``skipped`` as {cut id: reason}."""
    device = next(tokenizer.encoder.parameters()).device
    batches = duration_batches(cuts, max_duration, max_batch, tokenizer.cfg.pad_to_30s)
    loader = torch.utils.data.DataLoader(_WaveLoader(batches), batch_size=None,
                                         num_workers=num_workers, collate_fn=_as_is)
    dtype = np.int16 if tokenizer.cfg.vq.codebook_size <= np.iinfo(np.int16).max else np.int32
    for items in loader:
        good = [(cut, wave) for cut, wave, reason in items if reason is None]
        for cut, _, reason in items:
            if reason is not None and skipped is not None:
                skipped[cut.id] = reason
        if not good:
            continue
        ids = tokenizer.tokenize([w.to(device) for _, w in good])
        for (cut, _), tok in zip(good, ids):
            yield cut, tok.cpu().numpy().astype(dtype)
