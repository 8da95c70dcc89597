"""The Python API: a trained model on raw input, one method per task and batched ``generate``.

    from dualspeech import DualSpeech
    m = DualSpeech.from_pretrained("exp/mini/dualspeechlm/model", device="cpu")
    print(m.asr(wave, 16000))                  # -> text
    speech, sr = m.tts("hello there", prompt_wave, 16000)

``from_pretrained`` takes a self-contained model dir (``python -m dualspeech.bin.export``) and
checks it first (``model_dir.check_model_dir``). ``generate(requests)`` is the path every other
entry point uses (``bin/infer``, ``bin/serve``): each request is checked and its audio turned
into USTokens and speaker embeddings (batched), prompts are rendered by the model's own
templates, and examples of one kind are decoded together, sorted by prompt length, in batches
of ``decode.batch_size`` by the same ``BatchGenerator`` as test-set decoding. A bad request
gets status ``invalid`` and its reason; a failing batch is retried one request at a time; the
results come back in request order.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dualspeech.config import build, merge
from dualspeech.data.tasks import GENERATION, TASKS
from dualspeech.data.templates import prompt_batch
from dualspeech.inference.config import DecodeConfig
from dualspeech.inference.generate import BatchGenerator, decode_isolated
from dualspeech.inference.model_dir import (ModelDirError, build_part, check_identity,
                                            check_model_dir, part_section)
from dualspeech.inference.requests import (InvalidRequest, Request, Result, check_request,
                                           read_audio)

log = logging.getLogger(__name__)

SPEECH_ROLES = {"audio": "primary", "question_audio": "question"}   # request -> template role


@dataclass
class _Prepared:
    """A checked request: its prompt ids (and speaker embedding) ready for a batch."""
    index: int
    id: str
    task: str
    input_ids: list[int]
    speaker: np.ndarray | None = None

    @property
    def kind(self) -> str:
        return TASKS[self.task].kind


class DualSpeech:
    """A loaded model dir: the DualSpeechLM, its USTokenizer, codec and speaker encoder."""

    def __init__(self, model_dir: str | Path, device: str = "cpu", decode: dict | None = None,
                 max_audio_seconds: float | None = 30.0):
        from dualspeech.data.dataset import DataConfig
        from dualspeech.models.io import load_model

        self.model_dir = Path(model_dir)
        if (self.model_dir / "model" / "model.json").is_file():   # an exp dir
            self.model_dir = self.model_dir / "model"
        manifest = check_model_dir(self.model_dir)
        self.model = load_model(self.model_dir, device=device)
        section = merge(part_section(self.model_dir, manifest, "decode") or {}, decode or {})
        self.cfg = build(DecodeConfig, {**section, "device": device}, "decode")
        self.max_audio_seconds = max_audio_seconds
        data_cfg = build(DataConfig, self.model.full_config.get("data"), "data")
        self.max_len = self.cfg.max_len or data_cfg.max_len
        self.ustokenizer = None
        if "ustokenizer" in manifest["parts"]:
            from dualspeech.tokenizers.ustokenizer.checkpoint import load_tokenizer

            self.ustokenizer = load_tokenizer(self.model_dir / manifest["parts"]["ustokenizer"],
                                              device)
        self.codec = self._part(manifest, "codec", device)
        self.speaker = (self._part(manifest, "speaker", device)
                        if self.model.acoustic_gpt is not None else None)
        from dualspeech.inference.runner import output_path_problem

        self.speech_problem = output_path_problem(self.model, self.codec)
        if self.model.acoustic_gpt is not None and self.speaker is None:
            self.speech_problem = self.speech_problem or "the model dir has no speaker encoder"
        self.generator = BatchGenerator(self.model, self.cfg,
                                        None if self.speech_problem else self.codec)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, device: str = "cpu", **kw) -> "DualSpeech":
        """Load a self-contained model dir; ``decode={...}`` overrides its decode defaults."""
        return cls(model_dir, device=device, **kw)

    def _part(self, manifest: dict, name: str, device: str):
        section = part_section(self.model_dir, manifest, name)
        if section is None:
            return None
        built = build_part(name, section, device)
        check_identity(manifest, name, built)
        return built

    @property
    def sample_rate(self) -> int | None:
        """Sample rate of generated speech (the codec's)."""
        return self.codec.sample_rate if self.codec is not None else None

    # -- one request per task -----------------------------------------------------------------
    def _one(self, **kw) -> Result:
        res = self.generate([Request(**kw)])[0]
        if res.status in ("invalid", "error"):
            raise (InvalidRequest if res.status == "invalid" else RuntimeError)(res.error)
        return res

    def asr(self, wave, sr: int) -> str:
        return self._one(task="asr", audio=(wave, sr)).text

    def s2tt(self, wave, sr: int, source_lang: str = "en", target_lang: str = "de") -> str:
        return self._one(task="s2tt", audio=(wave, sr), source_lang=source_lang,
                         target_lang=target_lang).text

    def ser(self, wave, sr: int) -> str:
        return self._one(task="ser", audio=(wave, sr)).text

    def sqa(self, wave, sr: int, question: str) -> str:
        return self._one(task="sqa", audio=(wave, sr), question=question).text

    def tts(self, text: str, prompt_wave, sr: int) -> tuple[np.ndarray, int]:
        res = self._one(task="tts", text=text, prompt=(prompt_wave, sr))
        return res.wave, res.sample_rate

    def t2st(self, text: str, prompt_wave, sr: int, source_lang: str,
             target_lang: str = "en") -> tuple[np.ndarray, int]:
        res = self._one(task="t2st", text=text, prompt=(prompt_wave, sr),
                        source_lang=source_lang, target_lang=target_lang)
        return res.wave, res.sample_rate

    def vc(self, wave, sr: int, prompt_wave, prompt_sr: int | None = None) -> tuple[np.ndarray, int]:
        res = self._one(task="vc", audio=(wave, sr), prompt=(prompt_wave, prompt_sr or sr))
        return res.wave, res.sample_rate

    def sc(self, wave, sr: int, question_wave, prompt_wave,
           prompt_sr: int | None = None) -> tuple[np.ndarray, int]:
        res = self._one(task="sc", audio=(wave, sr), question_audio=(question_wave, sr),
                        prompt=(prompt_wave, prompt_sr or sr))
        return res.wave, res.sample_rate

    # -- streaming ----------------------------------------------------------------------------
    def stream(self, request: Request | dict) -> "SpeechStream":
        """A generation request's speech as wave chunks (``decode.stream``; see
        ``inference/streaming.py``): checked and tokenised now (``InvalidRequest`` at once),
        decoded while the chunks are read."""
        results: list[Result | None] = [None]
        prepared = self._prepare([request], results)
        if results[0] is not None:
            raise InvalidRequest(results[0].error, results[0].error_kind or "invalid",
                                 results[0].error_field)
        if prepared[0].kind != "generation":
            raise InvalidRequest(f"{prepared[0].task} answers with text: only the speech tasks "
                                 f"{sorted(GENERATION)} stream")
        return SpeechStream(self, prepared[0])

    def tts_stream(self, text: str, prompt_wave, sr: int) -> "SpeechStream":
        """``tts`` in chunks: ``for chunk in m.tts_stream(...)`` (float32 at ``m.sample_rate``)."""
        return self.stream(Request(task="tts", text=text, prompt=(prompt_wave, sr)))

    # -- batches ------------------------------------------------------------------------------
    def generate(self, requests: list[Request | dict]) -> list[Result]:
        """One ``Result`` per request, in request order (see the module docstring)."""
        results: list[Result | None] = [None] * len(requests)
        prepared = self._prepare(requests, results)
        for kind in ("understanding", "generation"):
            todo = sorted((p for p in prepared if p.kind == kind),
                          key=lambda p: (len(p.input_ids), p.index))
            bs = self.cfg.batch_size
            for start in range(0, len(todo), bs):
                chunk = todo[start:start + bs]
                outs = decode_isolated(self.generator, self._collate, kind, chunk)
                for p, out in zip(chunk, outs):
                    results[p.index] = Result(
                        p.id, p.task, out.status, text=out.text, wave=out.wave,
                        sample_rate=self.sample_rate if out.wave is not None else None,
                        error=out.error, n_speech_tokens=out.n_speech_tokens,
                        n_acoustic=out.n_acoustic)
        return results

    def _prepare(self, requests: list, results: list) -> list[_Prepared]:
        """Check every request and read its audio; USTokens and speaker embeddings are computed
        for all valid requests in batches. Invalid ones get their result here."""
        checked, audio_jobs, prompt_jobs = [], [], []
        for i, req in enumerate(requests):
            rid = str(i)
            try:
                req = req if isinstance(req, Request) else Request.from_dict(req)
                rid = req.id if req.id is not None else rid
                fields, audio = check_request(req, self.model.acoustic_gpt is not None)
                if TASKS[req.task].kind == "generation" and self.speech_problem:
                    raise InvalidRequest(f"this model dir cannot speak: {self.speech_problem}")
                waves = {}
                for role, value in audio.items():
                    if role == "prompt":
                        prompt_jobs.append((len(checked), read_audio(
                            value, self.speaker.sample_rate, role, self.max_audio_seconds)))
                        continue
                    if self.ustokenizer is None:
                        raise InvalidRequest(f"{req.task} reads speech, but the model dir has no "
                                             "USTokenizer (bin/export adds it)")
                    waves[SPEECH_ROLES[role]] = read_audio(value, 16000, role,
                                                           self.max_audio_seconds)
                for role, wave in waves.items():
                    audio_jobs.append((len(checked), role, wave))
                checked.append((i, rid, req, fields, {}))
            except InvalidRequest as e:
                task = req.get("task") if isinstance(req, dict) else getattr(req, "task", None)
                results[i] = Result(rid, str(task), "invalid", error=str(e), error_kind=e.kind,
                                    error_field=e.field)
        self._tokenize(audio_jobs, checked)
        speakers = self._embed(prompt_jobs)
        prepared = []
        for k, (i, rid, req, fields, speech) in enumerate(checked):
            enc = self.model.templates.encode(req.task, fields, speech, with_answer=False)
            if len(enc.input_ids) > self.max_len:
                results[i] = Result(rid, req.task, "invalid", error_kind="too_long", error=(
                    f"the prompt is {len(enc.input_ids)} tokens; the model takes at most "
                    f"{self.max_len} (data.max_len): use shorter text or audio"))
                continue
            prepared.append(_Prepared(i, rid, req.task, enc.input_ids, speakers.get(k)))
        return prepared

    def _tokenize(self, jobs: list, checked: list, batch: int = 16) -> None:
        device = next(self.model.parameters()).device
        for start in range(0, len(jobs), batch):
            chunk = jobs[start:start + batch]
            ids = self.ustokenizer.tokenize([torch.from_numpy(w).to(device) for _, _, w in chunk])
            for (k, role, _), tokens in zip(chunk, ids):
                checked[k][4][role] = tokens.cpu().numpy()

    def _embed(self, jobs: list, batch: int = 16) -> dict[int, np.ndarray]:
        out = {}
        for start in range(0, len(jobs), batch):
            chunk = jobs[start:start + batch]
            for (k, _), e in zip(chunk, self.speaker.embed([w for _, w in chunk])):
                out[k] = e
        return out

    def _collate(self, chunk: list[_Prepared]) -> dict:
        tok = self.model.vocab.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else self.model.templates.eos_id
        batch = {**prompt_batch(chunk, pad),
                 "tasks": [p.task for p in chunk], "ids": [p.id for p in chunk]}
        if chunk[0].speaker is not None:
            batch["speaker_embedding"] = torch.from_numpy(np.stack([p.speaker for p in chunk]))
        return batch


class SpeechStream:
    """Iterator of float32 wave chunks at ``sample_rate``; once exhausted, ``result`` holds the
    request's ``Result`` (status, counts; no ``wave``: the chunks are the wave)."""

    def __init__(self, model: DualSpeech, prepared: _Prepared):
        self.id, self.task, self.sample_rate = prepared.id, prepared.task, model.sample_rate
        self.result: Result | None = None
        self._chunks = self._run(model, prepared)

    def _run(self, model: DualSpeech, p: _Prepared):
        out = yield from model.generator.speech_stream(model._collate([p]))
        self.result = Result(p.id, p.task, out.status, error=out.error,
                             n_speech_tokens=out.n_speech_tokens, n_acoustic=out.n_acoustic)

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        return next(self._chunks)


__all__ = ["DualSpeech", "InvalidRequest", "ModelDirError", "Request", "Result"]
