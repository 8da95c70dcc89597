"""SIM: cosine similarity of speaker embeddings, speaker prompt vs generated speech.

Backends (``score.speaker.name``):
  ``resemblyzer``  GE2E encoder whose weights the resemblyzer wheel ships (offline default,
                   256-d); ``weights`` may name another ``pretrained.pt``.
  ``wavlm_sv``     the paper's choice: transformers ``WavLMForXVector`` (e.g.
                   microsoft/wavlm-base-plus-sv) from a local dir given as ``model`` (or a
                   ``dualspeech.pretrained`` spec).
Both read 16 kHz mono audio.
"""
from __future__ import annotations

import numpy as np
import torch

from dualspeech.audio import load_audio

SR = 16000


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two [N, D] arrays."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return num / np.maximum(den, 1e-12)


class SpeakerSimilarity:
    def __init__(self, cfg: dict, device: str = "cpu"):
        cfg = dict(cfg or {})
        name = cfg.pop("name", None)
        self.device = device
        if name == "resemblyzer":
            from resemblyzer import VoiceEncoder

            from dualspeech.pretrained import load_speaker_encoder_weights

            weights = cfg.pop("weights", None) or load_speaker_encoder_weights("speaker:resemblyzer")
            self._encoder = VoiceEncoder(device=device, verbose=False, weights_fpath=weights)
            self._embed = self._resemblyzer
        elif name == "wavlm_sv":
            from transformers import AutoFeatureExtractor, WavLMForXVector

            from dualspeech.pretrained import resolve

            model = cfg.pop("model", None)
            if not model:
                raise ValueError("score.speaker.model: give the local dir of a WavLMForXVector "
                                 "checkpoint (e.g. microsoft/wavlm-base-plus-sv)")
            path = resolve(model)
            self._features = AutoFeatureExtractor.from_pretrained(path)
            self._model = WavLMForXVector.from_pretrained(path).to(device).eval()
            self._embed = self._wavlm
        else:
            raise ValueError(f"score.speaker.name={name!r}; use resemblyzer or wavlm_sv")
        if cfg:
            raise ValueError(f"score.speaker: unknown option(s) {sorted(cfg)} for {name}")
        self.name = name

    def _resemblyzer(self, waves: list[np.ndarray]) -> np.ndarray:
        from resemblyzer import preprocess_wav

        out = []
        for w in waves:
            trimmed = preprocess_wav(w, source_sr=SR)   # VAD trimming; keep short clips whole
            out.append(self._encoder.embed_utterance(trimmed if len(trimmed) >= SR // 4 else w))
        return np.stack(out)

    @torch.no_grad()
    def _wavlm(self, waves: list[np.ndarray]) -> np.ndarray:
        out = []
        for w in waves:   # one at a time: padding would change the x-vector statistics pooling
            inputs = self._features(w, sampling_rate=SR, return_tensors="pt")
            emb = self._model(**{k: v.to(self.device) for k, v in inputs.items()}).embeddings
            out.append(emb[0].float().cpu().numpy())
        return np.stack(out)

    def embed_waves(self, waves: list[np.ndarray]) -> np.ndarray:
        """[N, D] embeddings of 16 kHz mono waves (speaker-embedding extraction uses this)."""
        return self._embed(waves)

    def embed_files(self, paths: list[str]) -> np.ndarray:
        return self._embed([load_audio(p, SR)[0] for p in paths])

    def similarity_files(self, prompts: list[str], outputs: list[str]) -> list[float]:
        """Cosine similarity per (prompt, output) pair."""
        if len(prompts) != len(outputs):
            raise ValueError(f"{len(prompts)} prompts but {len(outputs)} outputs")
        return [float(x) for x in cosine(self.embed_files(prompts), self.embed_files(outputs))]
