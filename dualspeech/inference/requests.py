"""One inference request on raw input, its checks, and its result.

Why a module of its own: the CLI, the Python API and the server accept the same requests and
must refuse the same bad input with the same message. A refusal is an ``InvalidRequest`` whose
``kind`` says how a server answers it: ``unreadable`` (415), ``too_long`` (413), ``invalid``
(422).
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field, fields

import numpy as np

from dualspeech.audio import AudioError, load_audio, resample, to_mono
from dualspeech.data.tasks import GENERATION, TASKS
from dualspeech.data.templates import LANG_NAMES, PROMPT_INPUTS

# What each task reads besides its text fields: audio roles of the request.
AUDIO_INPUTS = {"asr": ("audio",), "s2tt": ("audio",), "ser": ("audio",), "sqa": ("audio",),
                "tts": (), "t2st": (), "vc": ("audio",), "sc": ("audio", "question_audio")}
DEFAULT_LANGS = {"s2tt": ("en", "de"), "t2st": (None, "en")}   # the tasks' trained directions
AUDIO_ROLES = ("audio", "question_audio", "prompt")   # the request keys that hold audio
TEXT_INPUTS = {"text": "text", "source_text": "text", "question": "question"}   # field -> request


class InvalidRequest(ValueError):
    """A request that cannot be decoded; ``kind``: unreadable | too_long | invalid. The message
    names request fields (what the API, the request list and the server take); ``field`` is
    the one at fault, which ``bin/infer`` names as its flag."""

    def __init__(self, message: str, kind: str = "invalid", field: str | None = None):
        super().__init__(message)
        self.kind, self.field = kind, field


@dataclass
class Request:
    task: str
    audio: object = None            # input speech: a path, file bytes or (wave, sample_rate)
    text: str | None = None         # TTS: the text to speak; T2ST: the source text
    question: str | None = None     # SQA: the text question
    question_audio: object = None   # SC: the spoken question (like audio)
    prompt: object = None           # TTS / T2ST / VC / SC: speaker prompt (like audio): the voice
    source_lang: str | None = None
    target_lang: str | None = None
    id: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "Request":
        if not isinstance(d, dict):
            raise InvalidRequest(f"a request must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known - {"out"})
        if unknown:
            raise InvalidRequest(f"unknown request key(s) {unknown}; known: {sorted(known)}")
        if "task" not in d:
            raise InvalidRequest("a request needs a 'task'")
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Result:
    id: str
    task: str
    status: str                       # the decoder's status (inference/generate.py), or invalid
    text: str | None = None
    error_kind: str | None = None     # an invalid request's InvalidRequest.kind
    error_field: str | None = None    # and its .field
    wave: np.ndarray | None = field(default=None, repr=False)
    sample_rate: int | None = None
    error: str | None = None
    n_speech_tokens: int = 0
    n_acoustic: int = 0

    def record(self) -> dict:
        """JSON-able summary (the wave is saved separately)."""
        rec = {"id": self.id, "task": self.task, "status": self.status}
        for key in ("text", "error"):
            if getattr(self, key) is not None:
                rec[key] = getattr(self, key)
        if self.task in GENERATION and self.status != "invalid":
            rec.update(n_speech_tokens=self.n_speech_tokens, n_acoustic=self.n_acoustic,
                       seconds=round(len(self.wave) / self.sample_rate, 3)
                       if self.wave is not None else 0.0)
        return rec


def read_audio(audio, sr: int, what: str, max_seconds: float | None) -> np.ndarray:
    """Mono float32 at ``sr`` from any ``Audio``; unreadable, empty, non-finite or too long
    audio is an ``InvalidRequest`` naming ``what``."""
    try:
        if isinstance(audio, tuple) and len(audio) == 2:
            wave, rate = np.asarray(audio[0], dtype=np.float32), int(audio[1])
            wave = resample(to_mono(wave), rate, sr) if wave.size else wave
        elif isinstance(audio, (bytes, bytearray)):
            import soundfile as sf

            try:
                wave, rate = sf.read(io.BytesIO(bytes(audio)), dtype="float32", always_2d=False)
            except Exception as e:  # soundfile raises several types for data it cannot parse
                raise AudioError(f"cannot read the uploaded audio: {e}") from e
            wave = resample(to_mono(wave), rate, sr)
        elif isinstance(audio, (str, os.PathLike)):
            wave, _ = load_audio(audio, sr)
        else:
            raise InvalidRequest(f"{what}: expected a file path, file bytes or (wave, "
                                 f"sample_rate), got {type(audio).__name__}")
    except AudioError as e:
        raise InvalidRequest(f"{what}: {e} (any format soundfile reads: wav, flac, ogg...)",
                             "unreadable") from e
    except (ValueError, TypeError) as e:
        raise InvalidRequest(f"{what}: unusable audio ({e})", "unreadable") from e
    if wave.ndim != 1 or wave.size < sr // 25:
        raise InvalidRequest(f"{what}: empty or shorter than 0.04 s ({wave.size} samples)")
    if not np.isfinite(wave).all():
        raise InvalidRequest(f"{what}: holds NaN or infinite samples")
    seconds = wave.size / sr
    if max_seconds is not None and seconds > max_seconds:
        raise InvalidRequest(f"{what}: {seconds:.1f} s is over the {max_seconds:g} s cap on "
                             "input audio; cut it into shorter pieces", "too_long", what)
    return np.ascontiguousarray(wave)


def task_inputs(task: str, with_speaker: bool) -> dict:
    """What a request of ``task`` carries: its audio roles, text fields and language fields
    (with their defaults); what a client (the server's web page) shows for the task."""
    langs = {name: DEFAULT_LANGS.get(task, (None, None))[name == "target_lang"]
             for name in PROMPT_INPUTS[task] if name.endswith("_lang")}
    audio = list(AUDIO_INPUTS[task]) + (["prompt"] if task in GENERATION and with_speaker else [])
    return {"kind": TASKS[task].kind, "audio": audio, "langs": langs,
            "text": [TEXT_INPUTS[n] for n in PROMPT_INPUTS[task] if n in TEXT_INPUTS]}


def check_request(req: Request, with_speaker: bool) -> tuple[dict, dict]:
    """(text fields of the task template, {role: audio}) of a request, or ``InvalidRequest``.
    ``with_speaker``: the model conditions speech on a speaker prompt (it has an AcousticGPT)."""
    if req.task not in TASKS:
        raise InvalidRequest(f"unknown task {req.task!r}; tasks: {sorted(TASKS)}")
    task = req.task
    fields_: dict = {}
    for name in PROMPT_INPUTS[task]:
        if name.endswith("_lang"):
            default = DEFAULT_LANGS.get(task, (None, None))[name == "target_lang"]
            value = getattr(req, name) or default
            if not value:
                raise InvalidRequest(f"{task} needs {name!r} (one of {sorted(LANG_NAMES)})",
                                     field=name)
            if value not in LANG_NAMES:
                raise InvalidRequest(f"unknown language {value!r} for {name}; "
                                     f"known: {sorted(LANG_NAMES)}", field=name)
            fields_[name] = value
        elif name in TEXT_INPUTS:
            value = getattr(req, TEXT_INPUTS[name])
            if not isinstance(value, str) or not value.strip():
                raise InvalidRequest(f"{task} needs a non-empty {TEXT_INPUTS[name]!r}",
                                     field=TEXT_INPUTS[name])
            fields_[name] = value.strip()
    audio = {}
    for role in AUDIO_INPUTS[task]:
        if getattr(req, role) is None:
            raise InvalidRequest(f"{task} needs {role!r} (a speech file)", field=role)
        audio[role] = getattr(req, role)
    if task in GENERATION and with_speaker:
        if req.prompt is None:
            raise InvalidRequest(f"{task} needs 'prompt': a recording of the voice to speak in",
                                 field="prompt")
        audio["prompt"] = req.prompt
    return fields_, audio
