"""Transcribe generated speech with a configurable Whisper (paper: large-v3; offline: tiny.en).

Used by every metric of speech outputs (TTS/VC WER, T2ST/SC BLEU). Utterances up to 30 s are
decoded in batches with ``whisper.decode`` (no timestamps); longer ones go through
``model.transcribe`` (sliding windows). Both use Whisper's own fallback rule with its
``transcribe`` defaults: greedy at temperature 0, and an utterance whose output is too repetitive
(gzip compression ratio > 2.4) or too unlikely (mean log-prob < -1, unless it is silence:
no-speech prob > 0.6) is decoded again at 0.2, 0.4, ... 1.0 (sampling). Without it a degenerate
greedy loop on generated speech inflates WER far beyond what the model's words justify. Sampling
is seeded, so a score does not change between runs. ``max_tokens_per_s`` optionally caps a
transcript's length by its audio's (batches are formed from utterances of similar length): no
speaker says 12 tokens a second, but a looping decode of a noise-like output would run to 224
tokens at each of the 6 temperatures, which is where scoring time goes on an untrained model.
On CUDA the decoder runs in fp16 (Whisper's default there); on CPU in fp32. Audio is read
with soundfile, never ffmpeg.
"""
from __future__ import annotations

import contextlib
import logging
import math

import numpy as np
import torch

from dualspeech.audio import load_audio

log = logging.getLogger(__name__)
WHISPER_SR = 16000
MIN_CAP_S = 2.0       # max_tokens_per_s caps as if an utterance were at least this long
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)   # whisper.transcribe defaults
COMPRESSION_RATIO_THRESHOLD = 2.4
LOGPROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6
SEED = 0


def needs_fallback(result) -> bool:
    """Whisper's rule (transcribe.decode_with_fallback): repetitive or unlikely, but not silence."""
    bad = (result.compression_ratio > COMPRESSION_RATIO_THRESHOLD
           or result.avg_logprob < LOGPROB_THRESHOLD)
    silence = result.no_speech_prob > NO_SPEECH_THRESHOLD and result.avg_logprob < LOGPROB_THRESHOLD
    return bad and not silence


class WhisperTranscriber:
    def __init__(self, spec: str = "whisper:tiny.en", device: str = "cpu", batch_size: int = 8,
                 language: str = "en", max_tokens: int = 224,
                 max_tokens_per_s: float | None = None):
        from dualspeech.pretrained import load_whisper

        if max_tokens_per_s is not None and max_tokens_per_s <= 0:
            raise ValueError(f"max_tokens_per_s={max_tokens_per_s}: use a positive rate or None")
        self.model = load_whisper(spec, device=device).eval()
        self.spec, self.device, self.batch_size = spec, device, batch_size
        self.language, self.max_tokens = language, max_tokens
        self.max_tokens_per_s = max_tokens_per_s
        self.fp16 = torch.device(device).type == "cuda"

    def sample_len(self, seconds: float) -> int:
        """Most tokens a transcript of ``seconds`` of audio may have."""
        if self.max_tokens_per_s is None:
            return self.max_tokens
        return min(self.max_tokens, math.ceil(self.max_tokens_per_s * max(seconds, MIN_CAP_S)))

    def decoding_options(self, temperature: float, sample_len: int | None = None):
        import whisper

        return whisper.DecodingOptions(language=self.language, without_timestamps=True,
                                       fp16=self.fp16, temperature=temperature,
                                       sample_len=sample_len or self.max_tokens)

    def transcribe_options(self) -> dict:
        """Keyword arguments of ``model.transcribe`` for utterances over 30 s."""
        return {"language": self.language, "fp16": self.fp16, "temperature": TEMPERATURES,
                "compression_ratio_threshold": COMPRESSION_RATIO_THRESHOLD,
                "logprob_threshold": LOGPROB_THRESHOLD, "no_speech_threshold": NO_SPEECH_THRESHOLD,
                "condition_on_previous_text": False, "sample_len": self.max_tokens}

    @contextlib.contextmanager
    def _seeded(self):
        """Sampled fallbacks are reproducible and leave the caller's random state alone."""
        device = self.model.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(SEED)
            yield

    def _decode(self, mels: torch.Tensor, sample_len: int) -> list[str]:
        """Texts of a batch of 30 s mels; only the utterances that need it are decoded again."""
        import whisper

        results: list = [None] * len(mels)
        todo = list(range(len(mels)))
        for t in TEMPERATURES:
            with self._seeded(), torch.no_grad():
                decoded = whisper.decode(self.model, mels[todo],
                                         self.decoding_options(t, sample_len))
            for i, r in zip(todo, decoded):
                results[i] = r
            todo = [i for i in todo if needs_fallback(results[i])]
            if not todo:
                break
        return [r.text.strip() for r in results]

    def transcribe_waves(self, waves: list[np.ndarray]) -> list[str]:
        """Texts of 16 kHz float32 waves, in order."""
        import whisper

        out: list[str | None] = [None] * len(waves)
        short = sorted((i for i, w in enumerate(waves) if len(w) <= whisper.audio.N_SAMPLES),
                       key=lambda i: len(waves[i]))
        n_mels = self.model.dims.n_mels
        for start in range(0, len(short), self.batch_size):
            idx = short[start:start + self.batch_size]
            mels = torch.stack([
                whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(waves[i])),
                                            n_mels=n_mels) for i in idx]).to(self.model.device)
            longest = max(len(waves[i]) for i in idx) / WHISPER_SR
            for i, text in zip(idx, self._decode(mels, self.sample_len(longest))):
                out[i] = text
        for i, w in enumerate(waves):
            if out[i] is None:
                with self._seeded():
                    out[i] = self.model.transcribe(w, **self.transcribe_options())["text"].strip()
        return out  # type: ignore[return-value]

    def transcribe_files(self, paths: list[str]) -> list[str]:
        waves = [load_audio(p, WHISPER_SR)[0] for p in paths]
        return self.transcribe_waves(waves)
