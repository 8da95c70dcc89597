"""The HTTP app of ``bin/serve``: a JSON API per task, a web page, dynamic batching.

Why here: the server is one more client of ``DualSpeech.generate`` (the same request checks
and batched decoder as ``bin/infer``); this module only turns HTTP bodies into ``Request``s,
queues them on a ``DynamicBatcher`` and turns ``Result``s into HTTP answers. Audio arrives as
file bytes (multipart uploads, or base64 strings in JSON), never as a path on the server.
``?speech=stream`` answers a speech task with its wav in chunks as they are decoded
(``DualSpeech.stream``). Refusals are JSON ``{"error": ...}`` with 413 (body or audio too large, prompt too long), 415
(unreadable audio, unknown body type), 422 (invalid fields), 404 (unknown task), 503 (queue
full) or 504 (no answer within ``timeout_s``).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import io
import itertools
import json
import logging
import secrets
import struct
import threading
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from importlib import resources

import numpy as np
from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from dualspeech.data.tasks import GENERATION, TASKS
from dualspeech.data.templates import LANG_NAMES
from dualspeech.inference.batcher import DynamicBatcher, QueueFull
from dualspeech.inference.requests import (AUDIO_ROLES, InvalidRequest, Request, Result,
                                           check_request, task_inputs)

log = logging.getLogger(__name__)
HTTP_STATUS = {"too_long": 413, "unreadable": 415, "invalid": 422}   # InvalidRequest.kind


@dataclass
class ServeConfig:
    max_batch: int = 16          # requests decoded together
    max_wait_ms: float = 20.0    # how long the worker waits after a request for more
    queue_size: int = 64         # queued requests before 503
    timeout_s: float = 60.0      # per request, queue + decoding, before 504
    max_upload_mb: float = 20.0  # request body size before 413
    keep_audio: int = 256        # generated wavs kept for /v1/audio/ID.wav (oldest dropped)


class AudioStore:
    """The newest ``size`` generated wavs by unguessable id (bounded memory)."""

    def __init__(self, size: int):
        self.size, self._items = size, OrderedDict()

    def put(self, data: bytes) -> str:
        key = secrets.token_hex(8)
        self._items[key] = data
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return key

    def get(self, key: str) -> bytes | None:
        return self._items.get(key)


class TooLarge(Exception):
    pass


def wav_bytes(wave: np.ndarray, sr: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1.0, 1.0), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def stream_header(sr: int) -> bytes:
    """A 16-bit mono WAV header of unknown length (sizes 0xFFFFFFFF, as streaming writers do):
    the PCM samples follow as they are decoded."""
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, sr, 2 * sr, 2, 16) + b"data" +
            struct.pack("<I", 0xFFFFFFFF))


def pcm16(wave: np.ndarray, sr: int) -> bytes:
    """The samples of ``wav_bytes`` without the header (the same conversion)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(wave, -1.0, 1.0), sr, format="RAW", subtype="PCM_16", endian="LITTLE")
    return buf.getvalue()


def error(code: int, message: str, **headers) -> JSONResponse:
    return JSONResponse({"error": message, "status": code}, status_code=code, headers=headers)


async def read_body(request: HTTPRequest, limit: int) -> bytes:
    """The body, refused (``TooLarge``) as soon as it passes ``limit`` bytes."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_body(request: HTTPRequest, body: bytes) -> dict:
    """Request fields of a JSON (audio base64) or multipart (audio files) body."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            fields = json.loads(body)
        except ValueError as e:
            raise InvalidRequest(f"the body is not valid JSON ({e})") from e
        if not isinstance(fields, dict):
            raise InvalidRequest("the JSON body must be an object of request fields")
        for role in AUDIO_ROLES:
            if role in fields:
                if not isinstance(fields[role], str):
                    raise InvalidRequest(f"{role}: expected an audio file as a base64 string")
                try:
                    fields[role] = base64.b64decode(fields[role], validate=True)
                except (binascii.Error, ValueError) as e:
                    raise InvalidRequest(f"{role}: not valid base64 ({e})") from e
        return fields
    if ctype == "multipart/form-data":
        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await HTTPRequest(request.scope, replay).form()
        except Exception as e:  # noqa: BLE001 -- the multipart parser raises several types
            raise InvalidRequest(f"malformed multipart body ({e})") from e
        fields = {}
        for key, value in form.multi_items():
            if key in fields:
                raise InvalidRequest(f"{key} is given twice")
            fields[key] = await value.read() if hasattr(value, "read") else value
        return fields
    raise InvalidRequest(f"unsupported Content-Type {ctype or '(none)'!r}: send application/json "
                         "(audio as base64 strings) or multipart/form-data (audio as files)",
                         "unreadable")


def as_request(task: str, fields: dict, ids) -> Request:
    if fields.get("task", task) != task:
        raise InvalidRequest(f"the body says task {fields['task']!r} but the URL says {task!r}")
    for role in AUDIO_ROLES:
        if role in fields and not isinstance(fields[role], bytes):
            raise InvalidRequest(f"{role}: expected an uploaded audio file, got a text field")
    req = Request.from_dict({**fields, "task": task})
    req.id = str(req.id) if req.id is not None else str(next(ids))
    return req


def create_app(model, cfg: ServeConfig | None = None) -> FastAPI:
    """The app serving ``model`` (a ``DualSpeech``); its batcher runs while the app runs."""
    cfg = cfg or ServeConfig()
    lock = threading.Lock()    # one decoder: batches and stream chunks take turns

    def generate(requests):
        with lock:
            return model.generate(requests)

    batcher = DynamicBatcher(generate, cfg.max_batch, cfg.max_wait_ms / 1000, cfg.queue_size)
    store, ids = AudioStore(cfg.keep_audio), itertools.count(1)
    with_speaker = model.model.acoustic_gpt is not None
    page = resources.files("dualspeech.inference").joinpath("page.html").read_text()
    limit = int(cfg.max_upload_mb * 2 ** 20)

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        batcher.stop()

    app = FastAPI(title="DualSpeech", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.batcher = batcher

    @app.exception_handler(Exception)
    async def unexpected(request, exc):  # the server keeps serving; the client learns why
        log.exception("unexpected error on %s", request.url.path)
        return error(500, f"internal error: {type(exc).__name__}: {exc}")

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return HTMLResponse(page)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": str(model.model_dir),
                "tasks": {t: task_inputs(t, with_speaker) for t in TASKS},
                "languages": LANG_NAMES, "sample_rate": model.sample_rate,
                "speech_problem": model.speech_problem,
                "max_audio_seconds": model.max_audio_seconds, "config": asdict(cfg),
                "batcher": batcher.stats()}

    @app.get("/v1/audio/{key}.wav")
    async def audio(key: str):
        data = store.get(key)
        if data is None:
            return error(404, f"no audio {key!r}: only the newest {cfg.keep_audio} answers are "
                              "kept (ask with ?speech=base64 to get the wav in the answer)")
        return Response(data, media_type="audio/wav")

    @app.post("/v1/{task}")
    async def run(task: str, request: HTTPRequest, speech: str = "url"):
        if task not in TASKS:
            return error(404, f"unknown task {task!r}; tasks: {sorted(TASKS)}")
        if speech not in ("url", "base64", "stream"):
            return error(422, f"speech={speech!r}: use url, base64 or stream")
        if speech == "stream" and task not in GENERATION:
            return error(422, f"speech=stream: {task} answers with text; the speech tasks are "
                              f"{sorted(GENERATION)}")
        try:
            req = as_request(task, await parse_body(request, await read_body(request, limit)),
                             ids)
            check_request(req, with_speaker)    # missing fields are refused before queueing
        except TooLarge:
            return error(413, f"the request body is over the server's {cfg.max_upload_mb:g} MB "
                              "limit: send shorter audio")
        except InvalidRequest as e:
            return error(HTTP_STATUS[e.kind], str(e))
        if speech == "stream":
            return await stream(req)
        try:
            fut = batcher.submit(req)
        except QueueFull as e:
            return error(503, f"{e}: retry later", **{"Retry-After": "1"})
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(fut), cfg.timeout_s)
        except asyncio.TimeoutError:
            fut.cancel()
            return error(504, f"no answer within the server's {cfg.timeout_s:g} s timeout; "
                              f"{batcher.stats()['queued']} requests are queued")
        except Exception as e:  # noqa: BLE001 -- this request's own decoding failure
            return error(500, f"decoding failed: {e}")
        return answer(result, speech, store)

    async def stream(req: Request):
        """The answer's wav in chunks as they are decoded (``DualSpeech.stream``), outside the
        batcher: each chunk takes the decoder lock, so batches run between chunks."""
        def start():
            with lock:
                return model.stream(req)

        def next_chunk():
            with lock:
                return next(chunks, None)

        try:
            chunks = await asyncio.to_thread(start)
        except InvalidRequest as e:
            return error(HTTP_STATUS[e.kind], str(e))

        async def body():
            yield stream_header(chunks.sample_rate)
            try:
                while (chunk := await asyncio.to_thread(next_chunk)) is not None:
                    yield pcm16(chunk, chunks.sample_rate)
            except Exception:  # noqa: BLE001 -- headers are sent: the stream just ends early
                log.exception("streaming request %s failed", req.id)

        return StreamingResponse(body(), media_type="audio/wav",
                                 headers={"X-Request-Id": req.id})

    return app


def answer(result: Result, speech: str, store: AudioStore) -> JSONResponse:
    if result.status == "invalid":
        return error(HTTP_STATUS[result.error_kind or "invalid"], result.error)
    if result.status == "error":
        return error(500, f"decoding failed: {result.error}")
    rec = result.record()
    if result.wave is not None:
        data = wav_bytes(result.wave, result.sample_rate)
        rec["sample_rate"] = result.sample_rate
        if speech == "base64":
            rec["audio_base64"] = base64.b64encode(data).decode("ascii")
        else:
            rec["audio_url"] = f"/v1/audio/{store.put(data)}.wav"
    return JSONResponse(rec)
