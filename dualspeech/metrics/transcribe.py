"""Transcribe generated speech with a configurable Whisper (paper: large-v3; offline: tiny.en).

Used by every metric of speech outputs (TTS/VC WER, T2ST/SC BLEU). Utterances up to 30 s are
decoded in batches with ``whisper.decode`` (greedy, no timestamps); longer ones fall back to
``model.transcribe`` (sliding windows). Audio is read with soundfile, never ffmpeg.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from dualspeech.audio import load_audio

log = logging.getLogger(__name__)
WHISPER_SR = 16000


class WhisperTranscriber:
    def __init__(self, spec: str = "whisper:tiny.en", device: str = "cpu", batch_size: int = 8,
                 language: str = "en", max_tokens: int = 224):
        from dualspeech.pretrained import load_whisper

        self.model = load_whisper(spec, device=device).eval()
        self.spec, self.device, self.batch_size = spec, device, batch_size
        self.language, self.max_tokens = language, max_tokens

    def transcribe_waves(self, waves: list[np.ndarray]) -> list[str]:
        """Texts of 16 kHz float32 waves, in order."""
        import whisper

        out: list[str | None] = [None] * len(waves)
        short = [i for i, w in enumerate(waves) if len(w) <= whisper.audio.N_SAMPLES]
        options = whisper.DecodingOptions(language=self.language, without_timestamps=True,
                                          fp16=False, temperature=0.0, sample_len=self.max_tokens)
        n_mels = self.model.dims.n_mels
        for start in range(0, len(short), self.batch_size):
            idx = short[start:start + self.batch_size]
            mels = torch.stack([
                whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(waves[i])),
                                            n_mels=n_mels) for i in idx]).to(self.device)
            with torch.no_grad():
                results = whisper.decode(self.model, mels, options)
            for i, r in zip(idx, results):
                out[i] = r.text.strip()
        for i, w in enumerate(waves):
            if out[i] is None:
                result = self.model.transcribe(w, language=self.language, fp16=False,
                                               temperature=0.0, condition_on_previous_text=False,
                                               sample_len=self.max_tokens)
                out[i] = result["text"].strip()
        return out  # type: ignore[return-value]

    def transcribe_files(self, paths: list[str]) -> list[str]:
        waves = [load_audio(p, WHISPER_SR)[0] for p in paths]
        return self.transcribe_waves(waves)
