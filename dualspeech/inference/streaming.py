"""Chunked codec decoding: speech goes out in pieces instead of after the whole utterance.

Why: an utterance is heard only after its last codec frame is sampled and the whole id
sequence is decoded; a listener can start after the first chunk. The codecs are convolutional,
so a sample depends on the frames around it. Two layouts (``decode.stream.mode``):

* ``exact``: once AcousticGPT has ended, the codec's global part runs on all ids (VQ-Mel: its
  code decoder, cheap) and its local, costly part (HiFi-GAN) one chunk at a time in a window
  that adds the vocoder's receptive field on both sides (``Codec.local_synthesis``): the
  chunks are one-shot decoding's samples (up to float rounding of different conv sizes). A
  codec without a local part (MelVQ's Griffin-Lim iterates over every frame) is decoded once
  and cut into chunks: exact, and no sooner.
* ``early``: while AcousticGPT generates, each chunk of frames is decoded with ``left`` frames
  of context before it and ``right`` after it (its lookahead) and sent at once; the last window
  runs to the utterance's end. Sooner, but what the window leaves out moves the samples
  (VQ-Mel's GroupNorm normalises over the whole sequence; Griffin-Lim's phase is global):
  ``bench stream`` measures how far.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from dualspeech.inference.config import StreamDecoding


class ChunkedDecoder:
    """``push(ids)`` with all frames so far returns the chunks now complete (``early`` only);
    ``finish(ids)`` yields the rest. Concatenated, the chunks have one-shot decoding's length;
    ``edges`` holds the sample offset where each chunk ends."""

    def __init__(self, codec, cfg: StreamDecoding, speaker=None):
        self.codec, self.cfg, self.speaker = codec, cfg, speaker   # speaker: as Codec.decode's
        self.spf = round(codec.sample_rate / codec.frame_rate)   # samples per codec frame
        self.sent = 0                       # codec frames whose samples went out
        self.edges: list[int] = []

    def _sizes(self, n: int) -> Iterator[tuple[int, int]]:
        """Chunks [start, stop) of the frames from ``sent`` to ``n``."""
        start = self.sent
        while start < n:
            stop = min(n, start + (self.cfg.first if start == 0 else self.cfg.chunk))
            yield start, stop
            start = stop

    def _emit(self, wave: np.ndarray, stop: int) -> np.ndarray:
        self.sent = stop
        self.edges.append(stop * self.spf)
        return wave

    def _window(self, ids: np.ndarray, start: int, stop: int, end: int) -> np.ndarray:
        """Samples of frames [start, stop) decoded from frames [start - left, end)."""
        lo = max(0, start - self.cfg.left)
        wave = self.codec.decode([ids[lo:end]], [self.speaker])[0]
        if len(wave) != (end - lo) * self.spf:
            raise ValueError(f"{self.codec.identity} decoded {end - lo} frames to {len(wave)} "
                             f"samples, not {self.spf} per frame: it cannot be decoded in chunks")
        return self._emit(wave[(start - lo) * self.spf:(stop - lo) * self.spf], stop)

    def push(self, ids) -> list[np.ndarray]:
        if self.cfg.mode != "early":
            return []
        ids, out = np.asarray(ids, dtype=np.int64), []
        for start, stop in self._sizes(len(ids)):
            if len(ids) < stop + self.cfg.right or stop - start < (
                    self.cfg.first if start == 0 else self.cfg.chunk):
                break
            out.append(self._window(ids, start, stop, stop + self.cfg.right))
        return out

    def finish(self, ids) -> Iterator[np.ndarray]:
        ids = np.asarray(ids, dtype=np.int64)
        if self.cfg.mode == "early":
            yield from self.push(ids)
            if len(ids) > self.sent:
                yield self._window(ids, self.sent, len(ids), len(ids))
            return
        local = self.codec.local_synthesis(self.speaker)
        if local is None:
            wave = self.codec.decode([ids], [self.speaker])[0]
            for start, stop in self._sizes(len(ids)):
                yield self._emit(wave[start * self.spf:stop * self.spf], stop)
            return
        feats = local.features(ids)
        per = feats.shape[-1] / len(ids)           # feature frames per codec frame
        if per != int(per) or self.spf != int(per) * local.hop:
            raise ValueError(f"{self.codec.identity}: {feats.shape[-1]} feature frames of "
                             f"{local.hop} samples for {len(ids)} codec frames of {self.spf}")
        per, ctx = int(per), local.context
        for start, stop in self._sizes(len(ids)):
            a, b = start * per, stop * per
            lo, hi = max(0, a - ctx), min(feats.shape[-1], b + ctx)
            wave = local.synthesize(feats[..., lo:hi])
            yield self._emit(wave[(a - lo) * local.hop:(b - lo) * local.hop], stop)
