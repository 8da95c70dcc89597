"""SIM: cosine similarity of speaker embeddings, speaker prompt vs generated speech.

The encoder is any ``dualspeech.tokenizers.speaker`` backend, chosen by the ``score.speaker``
section: ``{name: resemblyzer}`` offline, ``{name: wavlm_sv, model: <local dir>}`` for the
paper's microsoft/wavlm-base-plus-sv. Audio is read at the encoder's rate (16 kHz). A pair whose
audio the encoder cannot embed (shorter than it accepts) gets no score; the scorer counts it.
"""
from __future__ import annotations

import logging

import numpy as np

from dualspeech.audio import load_audio

log = logging.getLogger(__name__)


class SpeakerSimilarity:
    def __init__(self, cfg: dict, device: str = "cpu"):
        from dualspeech.tokenizers.speaker import build_speaker_encoder

        self.encoder = build_speaker_encoder(cfg, device)

    def embed_files(self, paths: list[str]) -> np.ndarray:
        sr = self.encoder.sample_rate
        return self.encoder.embed([load_audio(p, sr)[0] for p in paths])

    def similarity_files(self, prompts: list[str], outputs: list[str]) -> list[float | None]:
        """Cosine similarity per (prompt, output) pair; None where a file cannot be embedded."""
        from dualspeech.tokenizers.speaker import cosine

        if len(prompts) != len(outputs):
            raise ValueError(f"{len(prompts)} prompts but {len(outputs)} outputs")
        out: list[float | None] = []
        for prompt, output in zip(prompts, outputs):
            try:
                emb = self.embed_files([prompt, output])
            except ValueError as e:
                log.warning("SIM skipped for %s: %s", output, e)
                out.append(None)
                continue
            out.append(float(cosine(emb[:1], emb[1:])[0]))
        return out
