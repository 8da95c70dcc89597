"""SIM: cosine similarity of speaker embeddings, speaker prompt vs generated speech.

The encoder is any ``dualspeech.tokenizers.speaker`` backend, chosen by the ``score.speaker``
section: ``{name: resemblyzer}`` offline, ``{name: wavlm_sv, model: <local dir>}`` for the
paper's microsoft/wavlm-base-plus-sv. Audio is read at the encoder's rate (16 kHz). A pair whose
audio the encoder cannot embed (shorter than it accepts) gets no score; the scorer counts it.
"""
from __future__ import annotations

import hashlib
import logging

import numpy as np

from dualspeech.audio import load_audio

log = logging.getLogger(__name__)


class SpeakerSimilarity:
    def __init__(self, cfg: dict, device: str = "cpu"):
        from dualspeech.tokenizers.speaker import build_speaker_encoder

        self.encoder = build_speaker_encoder(cfg, device)
        # audio digest -> embedding (None: too short): the same prompt is scored against the
        # model's output, the other-speaker control and every control decode; embed it once
        self._cache: dict[str, np.ndarray | None] = {}

    def embed_files(self, paths: list[str]) -> np.ndarray:
        sr = self.encoder.sample_rate
        return self.encoder.embed([load_audio(p, sr)[0] for p in paths])

    def _embedding(self, path: str) -> np.ndarray | None:
        wave = load_audio(path, self.encoder.sample_rate)[0]
        key = hashlib.sha1(np.ascontiguousarray(wave).tobytes()).hexdigest()
        if key not in self._cache:
            try:
                self._cache[key] = self.encoder.embed([wave])[0]
            except ValueError as e:
                log.warning("SIM skipped for %s: %s", path, e)
                self._cache[key] = None
        return self._cache[key]

    def similarity_files(self, prompts: list[str], outputs: list[str]) -> list[float | None]:
        """Cosine similarity per (prompt, output) pair; None where a file cannot be embedded."""
        from dualspeech.tokenizers.speaker import cosine

        if len(prompts) != len(outputs):
            raise ValueError(f"{len(prompts)} prompts but {len(outputs)} outputs")
        out: list[float | None] = []
        for prompt, output in zip(prompts, outputs):
            a, b = self._embedding(prompt), self._embedding(output)
            out.append(None if a is None or b is None else float(cosine(a, b)[0]))
        return out
