"""Transcribe generated speech with a configurable Whisper (paper: large-v3; offline: tiny.en).

Used by every metric of speech outputs (TTS/VC WER, T2ST/SC BLEU). Two engines decode the same
way: CTranslate2 (:mod:`dualspeech.metrics.transcribe_ct2`, faster-whisper's runtime; int8 on
CPU, about 3x faster) and openai-whisper (:class:`WhisperTranscriber`, fp32 on CPU; the engine
for a ``.pt`` checkpoint). :func:`build_transcriber` picks one. Utterances up to 30 s are
decoded in batches (no timestamps); longer ones go through the engine's own long-form
transcription (sliding windows). Both use Whisper's own fallback rule with its
``transcribe`` defaults: greedy at temperature 0, and an utterance whose output is too repetitive
(gzip compression ratio > 2.4) or too unlikely (mean log-prob < -1, unless it is silence:
no-speech prob > 0.6) is decoded again at 0.2, 0.4, ... 1.0 (sampling). Without it a degenerate
greedy loop on generated speech inflates WER far beyond what the model's words justify. Sampling
is seeded, so a score does not change between runs. ``max_tokens_per_s`` optionally caps a
transcript's length by its audio's (batches are formed from utterances of similar length): no
speaker says 12 tokens a second, but a looping decode of a noise-like output would run to 224
tokens at each of the 6 temperatures, which is where scoring time goes on an untrained model.
On CUDA the decoder runs in fp16 (Whisper's default there). Audio is read with soundfile,
never ffmpeg.
"""
from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path

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


ENGINES = ("auto", "ct2", "openai")
WINDOW_SAMPLES = 30 * WHISPER_SR   # whisper.audio.N_SAMPLES: longer audio is long-form


def needs_fallback(result) -> bool:
    """Whisper's rule (transcribe.decode_with_fallback): repetitive or unlikely, but not silence."""
    bad = (result.compression_ratio > COMPRESSION_RATIO_THRESHOLD
           or result.avg_logprob < LOGPROB_THRESHOLD)
    silence = result.no_speech_prob > NO_SPEECH_THRESHOLD and result.avg_logprob < LOGPROB_THRESHOLD
    return bad and not silence


def decode_with_fallback(n: int, decode) -> list[str]:
    """Texts of ``n`` utterances; ``decode(indices, temperature)`` returns one result (text,
    compression_ratio, avg_logprob, no_speech_prob) per index, and only the utterances that
    need it are decoded again at the next temperature."""
    results: list = [None] * n
    todo = list(range(n))
    for t in TEMPERATURES:
        for i, r in zip(todo, decode(todo, t)):
            results[i] = r
        todo = [i for i in todo if needs_fallback(results[i])]
        if not todo:
            break
    return [r.text.strip() for r in results]


class Transcriber:
    """What both engines share: the length cap, length-sorted batches, the long-form split.

    A subclass sets ``engine`` and ``precision`` and implements ``_decode_waves(waves,
    sample_len)`` (a batch of waves of at most 30 s) and ``_transcribe_long(wave)``.
    """
    engine = precision = ""

    def __init__(self, spec: str, batch_size: int, language: str, max_tokens: int,
                 max_tokens_per_s: float | None):
        if max_tokens_per_s is not None and max_tokens_per_s <= 0:
            raise ValueError(f"max_tokens_per_s={max_tokens_per_s}: use a positive rate or None")
        self.spec, self.batch_size = spec, batch_size
        self.language, self.max_tokens = language, max_tokens
        self.max_tokens_per_s = max_tokens_per_s

    def sample_len(self, seconds: float) -> int:
        """Most tokens a transcript of ``seconds`` of audio may have."""
        if self.max_tokens_per_s is None:
            return self.max_tokens
        return min(self.max_tokens, math.ceil(self.max_tokens_per_s * max(seconds, MIN_CAP_S)))

    def transcribe_waves(self, waves: list[np.ndarray]) -> list[str]:
        """Texts of 16 kHz float32 waves, in order."""
        out: list[str | None] = [None] * len(waves)
        short = sorted((i for i, w in enumerate(waves) if len(w) <= WINDOW_SAMPLES),
                       key=lambda i: len(waves[i]))
        for start in range(0, len(short), self.batch_size):
            idx = short[start:start + self.batch_size]
            longest = max(len(waves[i]) for i in idx) / WHISPER_SR
            for i, text in zip(idx, self._decode_waves([waves[i] for i in idx],
                                                       self.sample_len(longest))):
                out[i] = text
        for i, w in enumerate(waves):
            if out[i] is None:
                out[i] = self._transcribe_long(w)
        return out  # type: ignore[return-value]

    def transcribe_files(self, paths: list[str]) -> list[str]:
        waves = [load_audio(p, WHISPER_SR)[0] for p in paths]
        return self.transcribe_waves(waves)


def log_mels(waves: list[np.ndarray], n_mels: int) -> torch.Tensor:
    """Whisper's log-mel input of each wave, padded or trimmed to 30 s: (batch, n_mels, 3000)."""
    import whisper

    return torch.stack([whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(w)),
                                                    n_mels=n_mels) for w in waves])


class WhisperTranscriber(Transcriber):
    """openai-whisper: fp32 on CPU; the engine of ``.pt`` checkpoints and ``random:`` specs."""
    engine = "openai"

    def __init__(self, spec: str = "whisper:tiny.en", device: str = "cpu", batch_size: int = 8,
                 language: str = "en", max_tokens: int = 224,
                 max_tokens_per_s: float | None = None):
        from dualspeech.pretrained import load_whisper

        super().__init__(spec, batch_size, language, max_tokens, max_tokens_per_s)
        self.model = load_whisper(spec, device=device).eval()
        self.device = device
        self.fp16 = torch.device(device).type == "cuda"
        self.precision = "fp16" if self.fp16 else "fp32"

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

        def run(todo, t):
            with self._seeded(), torch.no_grad():
                return whisper.decode(self.model, mels[todo], self.decoding_options(t, sample_len))

        return decode_with_fallback(len(mels), run)

    def _decode_waves(self, waves: list[np.ndarray], sample_len: int) -> list[str]:
        mels = log_mels(waves, self.model.dims.n_mels).to(self.model.device)
        return self._decode(mels, sample_len)

    def _transcribe_long(self, wave: np.ndarray) -> str:
        with self._seeded():
            return self.model.transcribe(wave, **self.transcribe_options())["text"].strip()


def build_transcriber(spec: str, engine: str = "auto", device: str = "cpu", batch_size: int = 8,
                      language: str = "en", max_tokens: int = 224,
                      max_tokens_per_s: float | None = None,
                      compute_type: str = "auto") -> Transcriber:
    """The transcriber of ``engine``: ``ct2`` (CTranslate2), ``openai`` (openai-whisper), or
    ``auto``: CTranslate2 wherever the model has a CTranslate2 form (``whisper:`` specs, a
    CTranslate2 dir), else openai-whisper (a ``.pt`` checkpoint, ``random:`` specs). ``auto``
    falls back to openai-whisper, with a warning, when a ``whisper:<name>`` has no CTranslate2
    copy offline."""
    from dualspeech.pretrained import PretrainedNotFound, whisper_ct2_dir

    if engine not in ENGINES:
        raise ValueError(f"asr engine {engine!r}: expected one of {ENGINES}")
    common = dict(batch_size=batch_size, language=language, max_tokens=max_tokens,
                  max_tokens_per_s=max_tokens_per_s)
    if engine == "auto":
        scheme = str(spec).partition(":")[0]
        if scheme != "whisper" and not Path(str(spec)).is_dir():
            return WhisperTranscriber(spec, device, **common)
        try:
            whisper_ct2_dir(spec)
        except PretrainedNotFound as e:
            log.warning("%s; scoring with openai-whisper instead", e)
            return WhisperTranscriber(spec, device, **common)
        engine = "ct2"
    if engine == "openai":
        return WhisperTranscriber(spec, device, **common)
    from dualspeech.metrics.transcribe_ct2 import CT2Transcriber

    return CT2Transcriber(spec, device, compute_type=compute_type, **common)
