"""Whisper on CTranslate2 (faster-whisper's runtime): the default scoring engine.

Decodes like :class:`~dualspeech.metrics.transcribe.WhisperTranscriber` (same log-mel input,
prompt, length cap, greedy at 0 with Whisper's temperature fallback, seeded sampling) on
CTranslate2's Whisper: the encoder runs once per batch and only the utterances that need a
fallback are decoded again, from the kept encoder output. CTranslate2 seeds its sampling
generator once per model (per worker thread), not per decode as openai-whisper does: the same
command on the same audio gives the same scores, but a sampled fallback also depends on the
fallbacks sampled before it in that run. ``compute_type`` ``auto`` is int8 on
CPU (the weights are quantised when loaded; docs/metrics.md has the speed and WER next to
openai-whisper fp32) and fp16 on CUDA; ``float32`` is the exact-arithmetic choice. Utterances
over 30 s go through faster-whisper's own long-form ``transcribe`` with the same fallback
settings.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dualspeech.metrics.transcribe import (COMPRESSION_RATIO_THRESHOLD, LOGPROB_THRESHOLD,
                                           NO_SPEECH_THRESHOLD, SEED, TEMPERATURES, Transcriber,
                                           decode_with_fallback, log_mels)

COMPUTE_TYPES = {"cpu": "int8", "cuda": "float16"}   # what "auto" means on each device


@dataclass
class Decoded:
    """One decoding of one utterance, with what the fallback rule reads."""
    text: str
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


def ct2_device(device: str) -> tuple[str, int]:
    """torch-style ``cpu`` / ``cuda:1`` -> CTranslate2's (device, index)."""
    dev = torch.device(device)
    if dev.type not in COMPUTE_TYPES:
        raise ValueError(f"device {device!r}: CTranslate2 runs on cpu or cuda")
    return dev.type, dev.index or 0


class CT2Transcriber(Transcriber):
    engine = "ct2"

    def __init__(self, spec: str = "whisper:tiny.en", device: str = "cpu", batch_size: int = 8,
                 language: str = "en", max_tokens: int = 224,
                 max_tokens_per_s: float | None = None, compute_type: str = "auto",
                 threads: int | None = None):
        import ctranslate2
        import whisper.tokenizer
        from faster_whisper import WhisperModel

        from dualspeech.pretrained import whisper_ct2_dir

        super().__init__(spec, batch_size, language, max_tokens, max_tokens_per_s)
        kind, index = ct2_device(device)
        self.precision = COMPUTE_TYPES[kind] if compute_type == "auto" else compute_type
        self.threads = threads or torch.get_num_threads()
        # CTranslate2 seeds a sampling generator once per worker thread, at its first use: the
        # new model's workers start from SEED
        ctranslate2.set_random_seed(SEED)
        self.fw = WhisperModel(str(whisper_ct2_dir(spec)), device=kind, device_index=index,
                               compute_type=self.precision, cpu_threads=self.threads,
                               local_files_only=True)
        self.model = self.fw.model
        multilingual = self.model.is_multilingual
        self.tokenizer = whisper.tokenizer.get_tokenizer(
            multilingual, num_languages=self.model.num_languages,
            language=language if multilingual else None, task="transcribe")
        self.prompt = list(self.tokenizer.sot_sequence_including_notimestamps)

    def _generate(self, features, n: int, temperature: float, sample_len: int) -> list[Decoded]:
        from whisper.utils import compression_ratio

        sampling = {"sampling_topk": 0, "sampling_temperature": temperature} if temperature > 0 \
            else {"sampling_topk": 1}
        results = self.model.generate(features, [self.prompt] * n, beam_size=1,
                                      max_length=len(self.prompt) + sample_len,
                                      return_scores=True, return_no_speech_prob=True,
                                      suppress_blank=True, suppress_tokens=[-1], **sampling)
        out = []
        for r in results:
            tokens = [t for t in r.sequences_ids[0] if t < self.tokenizer.eot]
            text = self.tokenizer.decode(tokens)
            # CTranslate2's score is the mean log-prob over the tokens; Whisper's avg_logprob
            # divides their sum by len + 1 (the end token)
            avg = r.scores[0] * len(tokens) / (len(tokens) + 1)
            out.append(Decoded(text, avg, compression_ratio(text), r.no_speech_prob))
        return out

    def _decode_waves(self, waves: list[np.ndarray], sample_len: int) -> list[str]:
        import ctranslate2

        mels = log_mels(waves, self.model.n_mels).numpy()
        encoded = np.asarray(self.model.encode(ctranslate2.StorageView.from_array(mels),
                                               to_cpu=True))

        def run(todo, t):
            features = ctranslate2.StorageView.from_array(np.ascontiguousarray(encoded[todo]))
            return self._generate(features, len(todo), t, sample_len)

        return decode_with_fallback(len(waves), run)

    def _transcribe_long(self, wave: np.ndarray) -> str:
        segments, _ = self.fw.transcribe(
            wave, language=self.language if self.model.is_multilingual else None,
            task="transcribe", beam_size=1, best_of=1, temperature=list(TEMPERATURES),
            compression_ratio_threshold=COMPRESSION_RATIO_THRESHOLD,
            log_prob_threshold=LOGPROB_THRESHOLD, no_speech_threshold=NO_SPEECH_THRESHOLD,
            condition_on_previous_text=False, max_new_tokens=self.max_tokens, vad_filter=False)
        return "".join(s.text for s in segments).strip()
