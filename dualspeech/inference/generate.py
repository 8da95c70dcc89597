"""Batched generation for all 8 tasks on top of ``dualspeech.inference.lm_generation``.

* understanding tasks -> text: ``generate_text`` (KV-cache sampling or greedy) or beam
  search through the backbone's own ``generate`` (``inputs_embeds`` of the prompt, text ids
  only), per ``decode.text.strategy``;
* generation tasks -> speech: ``generate_speech_tokens`` (target USTokens until
  end-of-audio, ``decode.speech.max_new_tokens`` guard), then ``generate_acoustic``
  (AcousticGPT, top-k / temperature, CoC concatenation, the speaker embedding of the
  ``speaker_ref`` cut) and the codec decoder -> waveform at the codec's sample rate. Models
  without an AcousticGPT (Baseline-Acoustic) decode their speech tokens with the codec directly.

Guard rails: every example gets a status instead of crashing the run --
``ok``; ``max_new_tokens`` (a text answer cut at ``decode.text.max_new_tokens``: kept);
``no_eoa`` (speech tokens hit the length limit without end-of-audio: kept, truncated);
``empty`` (no text / no speech tokens); ``empty_acoustic`` (AcousticGPT ended at once);
``acoustic_max_len`` (codec frames hit ``decode.acoustic.max_len`` or ``maxlenratio`` times the
speech tokens: kept, truncated); ``error`` (an exception
isolated to this example; its message is recorded).
"""
from __future__ import annotations

import logging
import math
import traceback
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from dualspeech.inference.config import DecodeConfig
from dualspeech.inference.lm_generation import (generate_acoustic, generate_speech_tokens,
                                                generate_text, text_stop_ids)

log = logging.getLogger(__name__)


@dataclass
class Output:
    status: str
    text: str | None = None
    wave: np.ndarray | None = None
    n_speech_tokens: int = 0
    n_acoustic: int = 0
    error: str | None = None
    speech_ids: list[int] | None = None    # generated speech-token codes (not in the record)
    acoustic_ids: list[int] | None = None  # codec ids that went to the codec (not in the record)

    def record(self) -> dict:
        rec = {"status": self.status}
        if self.text is not None:
            rec["text"] = self.text
        if self.wave is not None or self.n_speech_tokens:
            rec.update(n_speech_tokens=self.n_speech_tokens, n_acoustic=self.n_acoustic)
        if self.error:
            rec["error"] = self.error
        return rec


class TextOnly:
    """Logits processor for the backbone's generate: only ids of the text vocabulary."""

    def __init__(self, text_vocab_size: int):
        self.n = text_vocab_size

    def __call__(self, input_ids, scores):
        scores[:, self.n:] = float("-inf")
        return scores


class BatchGenerator:
    def __init__(self, model, cfg: DecodeConfig, codec=None):
        self.model, self.cfg, self.codec = model, cfg, codec
        self.device = next(model.parameters()).device

    def _generator(self, ids: list[str]) -> torch.Generator:
        """Seeded per batch (by its first id): the same batches draw the same samples. A resumed
        run batches the remaining examples differently, so only greedy decoding is identical."""
        seed = self.cfg.seed * 1_000_003 + zlib.crc32(ids[0].encode())
        return torch.Generator(device=self.device).manual_seed(seed)

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    # -- text ---------------------------------------------------------------------------------
    def text(self, batch: dict) -> list[Output]:
        t = self.cfg.text
        batch = self._to_device(batch)
        if t.strategy == "beam":
            texts, ended = self._beam(batch), None
        else:
            texts, ended = generate_text(
                self.model, batch, max_new_tokens=t.max_new_tokens, temperature=t.temperature,
                top_p=t.top_p, top_k=t.top_k, do_sample=t.strategy == "sample",
                generator=self._generator(batch["ids"]), with_ended=True)
        return [Output("empty" if not s.strip() else "ok" if ended is None or ended[i]
                       else "max_new_tokens", text=s.strip()) for i, s in enumerate(texts)]

    @torch.no_grad()
    def _beam(self, batch: dict) -> list[str]:
        from transformers import LogitsProcessorList

        m, t = self.model, self.cfg.text
        tok = m.vocab.tokenizer
        eos = m.templates.eos_id
        out = m.backbone.generate(
            inputs_embeds=m.embed(batch["input_ids"]), attention_mask=batch["attention_mask"],
            num_beams=t.num_beams, do_sample=False, max_new_tokens=t.max_new_tokens,
            length_penalty=t.length_penalty, eos_token_id=text_stop_ids(m),
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else eos,
            logits_processor=LogitsProcessorList([TextOnly(m.vocab.text_vocab_size)]))
        return [tok.decode(row.tolist(), skip_special_tokens=True) for row in out]

    # -- speech -------------------------------------------------------------------------------
    def _speech_tokens(self, batch: dict):
        """First half of ``speech``: the LLM's speech tokens, an ``Output`` per example, the
        indices that go on to AcousticGPT with their frame limits, and the batch's generator."""
        if self.codec is None:
            raise ValueError("generation tasks need a codec: set decode.codec (or a codec "
                             "section in the model's config)")
        s = self.cfg.speech
        batch = self._to_device(batch)
        gen = self._generator(batch["ids"])
        st = generate_speech_tokens(self.model, batch, max_new_tokens=s.max_new_tokens,
                                    temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                                    do_sample=s.do_sample, generator=gen)
        outs = []
        for tokens in st.tokens:
            n = len(tokens)
            status = "empty" if n == 0 else "no_eoa" if n >= s.max_new_tokens else "ok"
            outs.append(Output(status, n_speech_tokens=n, speech_ids=tokens.tolist()))
        keep = [i for i, o in enumerate(outs) if o.status != "empty"]
        limit = {i: self._acoustic_limit(outs[i].n_speech_tokens) for i in keep}
        return batch, st, outs, keep, limit, gen

    def _acoustic(self, batch, st, keep: list[int], limit: dict, gen, stepwise: bool = False):
        a = self.cfg.acoustic
        return generate_acoustic(self.model, st.select(keep), batch["speaker_embedding"][keep],
                                 max_len=torch.tensor([limit[i] for i in keep]), top_k=a.top_k,
                                 temperature=a.temperature, generator=gen, stepwise=stepwise)

    def _codes_status(self, out: Output, codes: torch.Tensor, limit: int) -> bool:
        """Record an example's codec ids and their status; whether there is speech to decode."""
        out.n_acoustic, out.acoustic_ids = len(codes), codes.tolist()
        if len(codes) == 0:
            out.status = "empty_acoustic"
            return False
        if self.model.acoustic_gpt is not None and out.status == "ok" and len(codes) >= limit:
            out.status = "acoustic_max_len"
        return True

    def speech(self, batch: dict) -> list[Output]:
        batch, st, outs, keep, limit, gen = self._speech_tokens(batch)
        if not keep:
            return outs
        if self.model.acoustic_gpt is None:   # speech tokens are codec ids (Baseline-Acoustic)
            codes = [st.tokens[i] for i in keep]
        else:
            codes = self._acoustic(batch, st, keep, limit, gen)
        decodable = [(i, c.cpu().numpy().astype(np.int64)) for i, c in zip(keep, codes)
                     if self._codes_status(outs[i], c, limit[i])]
        if decodable:
            speakers = batch.get("speaker_embedding")
            waves = self.codec.decode([c for _, c in decodable], None if speakers is None else
                                      [speakers[i].float().cpu().numpy() for i, _ in decodable])
            for (i, _), w in zip(decodable, waves):
                outs[i].wave = w
        return outs

    def speech_stream(self, batch: dict):
        """``speech`` of a batch of one, as wave chunks (``inference/streaming.py``, per
        ``decode.stream``): yields each chunk once it is decoded and returns the ``Output``
        (its ``wave`` left None: the chunks are the wave). The same draws as ``speech``."""
        from dualspeech.inference.streaming import ChunkedDecoder

        if len(batch["ids"]) != 1:
            raise ValueError(f"speech_stream decodes one example, got {len(batch['ids'])}")
        batch, st, outs, keep, limit, gen = self._speech_tokens(batch)
        out, n_limit = outs[0], limit.get(0)
        if not keep:
            return out
        speaker = batch.get("speaker_embedding")
        decoder = ChunkedDecoder(self.codec, self.cfg.stream,
                                 None if speaker is None else speaker[0].float().cpu().numpy())
        if self.model.acoustic_gpt is None:
            codes = st.tokens[0]
        else:
            ids = []
            for step in self._acoustic(batch, st, keep, limit, gen, stepwise=True):
                if int(step[0]) == self.model.acoustic_gpt.end_id:
                    break
                ids.append(int(step[0]))
                yield from decoder.push(ids)
            codes = torch.tensor(ids, dtype=torch.long)
        if self._codes_status(out, codes, n_limit):
            yield from decoder.finish(codes.cpu().numpy().astype(np.int64))
        return out

    def _acoustic_limit(self, n_speech_tokens: int) -> int:
        """Most codec frames for an utterance of ``n_speech_tokens``: decode.acoustic.max_len,
        tightened by maxlenratio (an AcousticGPT that never ends stops near the expected length)
        and by the AcousticGPT's positions, so every cut is a counted ``acoustic_max_len``."""
        a, agpt = self.cfg.acoustic, self.model.acoustic_gpt
        limit = a.max_len if agpt is None else min(a.max_len, agpt.max_new_tokens)
        if a.maxlenratio is None:
            return limit
        return min(limit, math.ceil(a.maxlenratio * n_speech_tokens))

    def __call__(self, kind: str, batch: dict) -> list[Output]:
        return self.speech(batch) if kind == "generation" else self.text(batch)


def decode_isolated(generator: BatchGenerator, collate, kind: str, chunk: list) -> list[Output]:
    """``generator(kind, collate(chunk))``; a failing batch is retried one example at a time,
    so only the bad example (``.id``) gets status ``error`` with the message."""
    try:
        return generator(kind, collate(chunk))
    except Exception as e:  # noqa: BLE001 - any failure is recorded per example, never fatal
        if len(chunk) == 1:
            log.error("example %s failed: %s\n%s", chunk[0].id, e, traceback.format_exc(limit=3))
            return [Output("error", text="" if kind == "understanding" else None,
                           error=f"{type(e).__name__}: {e}"[:500])]
        log.warning("batch of %d failed (%s); retrying one at a time", len(chunk), e)
        return [decode_isolated(generator, collate, kind, [ex])[0] for ex in chunk]
