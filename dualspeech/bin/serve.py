"""Serve a trained model over HTTP, with a web page: ``python -m dualspeech.bin.serve``.

    python -m dualspeech.bin.serve --model exp/mini/dualspeechlm/model      # then open
    http://127.0.0.1:8000/                                                   # the web page

    curl -F audio=@me.wav http://127.0.0.1:8000/v1/asr
    curl -F text="Hello there." -F prompt=@voice.wav http://127.0.0.1:8000/v1/tts
    curl -H 'Content-Type: application/json' -d '{"audio": "<base64 wav>", "target_lang": "de"}' \\
        'http://127.0.0.1:8000/v1/s2tt'

API: ``POST /v1/{task}`` (asr, s2tt, ser, sqa, tts, t2st, vc, sc) with the fields of
``bin/infer`` (``audio``, ``question_audio``, ``prompt`` as files or base64; ``text``,
``question``, ``source_lang``, ``target_lang``, optional ``id``) as multipart/form-data or
JSON. The answer is the result record (``status``, ``text`` or ``seconds``...); speech as
``audio_url`` (``GET /v1/audio/ID.wav``, the newest --keep-audio answers) or, with
``?speech=base64``, inline as ``audio_base64``. ``GET /health``: the tasks and their inputs,
limits and batching counters.

Concurrent requests are decoded together: one worker takes up to --max-batch queued requests,
waiting at most --max-wait-ms after the first for more. Refusals are JSON ``{"error": ...}``:
413 (body over --max-upload-mb, audio over --max-audio-seconds, prompt over the model's
length), 415 (unreadable audio), 422 (missing or invalid fields), 404 (unknown task), 503
(more than --queue-size requests waiting), 504 (no answer within --timeout-s).

The server has no authentication: keep --host on loopback (the default) unless the network is
yours.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("dualspeech.serve")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help="self-contained model dir")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--max-batch", type=int, default=16,
                   help="requests decoded together (also the decode batch size)")
    p.add_argument("--max-wait-ms", type=float, default=20.0,
                   help="how long the worker waits after a request for more to batch with it")
    p.add_argument("--queue-size", type=int, default=64, help="queued requests before 503")
    p.add_argument("--timeout-s", type=float, default=60.0,
                   help="seconds a request may wait + decode before 504")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="request body cap (413)")
    p.add_argument("--max-audio-seconds", type=float, default=30.0,
                   help="longest input or prompt audio accepted (413; 0: no cap)")
    p.add_argument("--keep-audio", type=int, default=256,
                   help="generated wavs kept for GET /v1/audio/ID.wav")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1 ...)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a decode default, e.g. --set decode.text.strategy=sample")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads of torch and of numpy's BLAS pools (0: default)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="server log level (warning: no access log)")
    args = p.parse_args(argv)
    if min(args.max_batch, args.queue_size, args.keep_audio) < 1 or args.timeout_s <= 0:
        p.error("--max-batch, --queue-size and --keep-audio must be >= 1, --timeout-s > 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from dualspeech.utils.logs import setup_logging

    setup_logging()
    import uvicorn

    from dualspeech import DualSpeech
    from dualspeech.bin.infer import decode_overrides, fail
    from dualspeech.config import ConfigError
    from dualspeech.inference.model_dir import ModelDirError
    from dualspeech.inference.server import ServeConfig, create_app

    if args.threads:
        from dualspeech.utils.threads import set_threads

        set_threads(args.threads)
    try:
        decode = {**decode_overrides(args.overrides), "batch_size": args.max_batch}
        model = DualSpeech.from_pretrained(args.model, device=args.device, decode=decode,
                                           max_audio_seconds=args.max_audio_seconds or None)
    except (ModelDirError, ConfigError) as e:
        return fail(str(e))
    cfg = ServeConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                      queue_size=args.queue_size, timeout_s=args.timeout_s,
                      max_upload_mb=args.max_upload_mb, keep_audio=args.keep_audio)
    log.info("serving %s on http://%s:%d/ (max batch %d, wait %g ms, queue %d)", args.model,
             args.host, args.port, args.max_batch, args.max_wait_ms, args.queue_size)
    uvicorn.run(create_app(model, cfg), host=args.host, port=args.port,
                log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
