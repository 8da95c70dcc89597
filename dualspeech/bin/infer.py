"""Run a trained model on your own input: ``python -m dualspeech.bin.infer``.

    python -m dualspeech.bin.infer --model exp/mini/dualspeechlm/model --task asr --audio me.flac
    python -m dualspeech.bin.infer --model DIR --task s2tt --audio me.wav --target-lang de --json
    python -m dualspeech.bin.infer --model DIR --task sqa --audio me.wav --question "who speaks?"
    python -m dualspeech.bin.infer --model DIR --task tts --text "Hello." --prompt voice.wav --out hi.wav
    python -m dualspeech.bin.infer --model DIR --task t2st --text "Hola." --source-lang es \\
        --prompt voice.wav --out hi.wav
    python -m dualspeech.bin.infer --model DIR --task vc --audio me.wav --prompt voice.wav --out vc.wav
    python -m dualspeech.bin.infer --model DIR --task sc --audio me.wav --question-audio q.wav \\
        --prompt voice.wav --out answer.wav
    python -m dualspeech.bin.infer --model DIR --input requests.jsonl --out-dir results/

``--model``: a self-contained model dir (``python -m dualspeech.bin.export``; recipe stage 6
writes one as <lm-exp>/model). Audio: any file soundfile reads, any sample rate and channel
count (mixed to mono, resampled). Text answers go to stdout (``--json``: the whole record);
speech to ``--out`` (a 16-bit wav at the codec's sample rate).

Batch mode: ``--input`` holds one JSON request per line, with the keys of the single-request
options (``task``, ``audio``, ``text``, ``question``, ``question_audio``, ``prompt``,
``source_lang``, ``target_lang``; optional ``id``, default the line number); relative audio paths
are relative to the list file. Requests are decoded in batches (``decode.batch_size``), and
``<out-dir>/results.jsonl`` lists one record per request in input order (speech in
``<out-dir>/wav/<id>.wav``). Progress is appended to ``<out-dir>/progress.jsonl`` as each
batch finishes: a re-run skips the finished requests (invalid ones are tried again).

Exit codes: 0 done; 2 bad input (unreadable, empty or too long audio, text longer than the
model takes, an unknown task or language; batch mode: after decoding the rest, when any
request was invalid), with the reason on stderr; 1 a decoding error.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from dualspeech.data.tasks import GENERATION, TASKS
from dualspeech.utils.logs import setup_logging

log = logging.getLogger("dualspeech.infer")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.infer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help="self-contained model dir")
    p.add_argument("--task", choices=list(TASKS), help="the task of a single request")
    p.add_argument("--audio", help="input speech (asr, s2tt, ser, sqa, vc, sc)")
    p.add_argument("--text", help="text to speak (tts) or to translate (t2st)")
    p.add_argument("--question", help="text question about the speech (sqa)")
    p.add_argument("--question-audio", help="spoken question (sc)")
    p.add_argument("--prompt", help="speaker prompt: a recording of the output voice "
                                    "(tts, t2st, vc, sc)")
    p.add_argument("--source-lang", help="s2tt (default en), t2st (es, fr)")
    p.add_argument("--target-lang", help="s2tt (default de), t2st (default en)")
    p.add_argument("--out", type=Path, help="wav file for generated speech")
    p.add_argument("--json", action="store_true", help="print the result record as JSON")
    p.add_argument("--input", type=Path, help="batch mode: JSON-lines file of requests")
    p.add_argument("--out-dir", type=Path, help="batch mode: results.jsonl, wav/, progress.jsonl")
    p.add_argument("--chunk", type=int, default=64,
                   help="batch mode: requests per progress step (decoded in decode.batch_size)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1 ...)")
    p.add_argument("--max-audio-seconds", type=float, default=30.0,
                   help="longest input or prompt audio accepted (0: no cap)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a decode default, e.g. --set decode.text.strategy=sample")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads of torch and of numpy's BLAS pools (0: default)")
    args = p.parse_args(argv)
    if (args.task is None) == (args.input is None):
        p.error("give either --task (one request) or --input (batch mode)")
    if args.input is not None and args.out_dir is None:
        p.error("--input needs --out-dir")
    if args.task in GENERATION and args.out is None:
        p.error(f"--task {args.task} makes speech: give --out FILE.wav")
    return args


def decode_overrides(overrides: list[str]) -> dict:
    """``--set decode.a.b=V`` -> {"a": {"b": V}} (checked when the decode config is built)."""
    from dualspeech.config import ConfigError, parse_override

    out: dict = {}
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] != "decode" or len(keys) < 2:
            raise ConfigError(f"--set {text}: only decode.* keys can be set here")
        node = out
        for k in keys[1:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return out


def fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def load(args):
    from dualspeech import DualSpeech

    if args.threads:
        from dualspeech.utils.threads import set_threads

        set_threads(args.threads)
    return DualSpeech.from_pretrained(args.model, device=args.device,
                                      decode=decode_overrides(args.overrides),
                                      max_audio_seconds=args.max_audio_seconds or None)


def run_one(args, model) -> int:
    from dualspeech.audio import save_wav
    from dualspeech.inference.requests import Request

    req = Request(task=args.task, audio=args.audio, text=args.text, question=args.question,
                  question_audio=args.question_audio, prompt=args.prompt,
                  source_lang=args.source_lang, target_lang=args.target_lang, id="0")
    res = model.generate([req])[0]
    if res.status == "invalid":
        flag = (f" (--{res.error_field.replace('_', '-')})"
                if res.error_field in vars(args) else "")
        return fail(res.error + flag)
    if res.status == "error":
        return fail(res.error, 1)
    rec = res.record()
    if res.wave is not None:
        save_wav(args.out, res.wave, res.sample_rate)
        rec["wav"] = str(args.out)
    elif args.task in GENERATION:
        log.warning("no speech was generated (status %s); %s not written", res.status, args.out)
    if args.json:
        print(json.dumps(rec, ensure_ascii=False))
    elif res.text is not None:
        print(res.text)
    return 0


def read_requests(path: Path) -> list[dict]:
    """The lines of a request list, each with its ``id``; audio paths made absolute."""
    from dualspeech.inference.requests import AUDIO_ROLES, InvalidRequest

    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise InvalidRequest(f"cannot read --input {path}: {e}") from e
    out, seen = [], set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except ValueError as e:
            raise InvalidRequest(f"{path}:{n}: not JSON ({e})") from e
        if not isinstance(d, dict):
            raise InvalidRequest(f"{path}:{n}: a request must be a JSON object")
        d["id"] = str(d.get("id", n))
        if d["id"] in seen or "/" in d["id"]:
            raise InvalidRequest(f"{path}:{n}: id {d['id']!r} is repeated or holds a '/'")
        seen.add(d["id"])
        for key in AUDIO_ROLES:
            if isinstance(d.get(key), str):
                d[key] = str(path.parent / d[key])
        out.append(d)
    if not out:
        raise InvalidRequest(f"{path} holds no requests")
    return out


def run_batch(args, model) -> int:
    from dualspeech.audio import save_wav
    from dualspeech.inference.outputs import HypWriter, read_records
    from dualspeech.utils.io import atomic_write_text

    requests = read_requests(args.input)
    progress = args.out_dir / "progress.jsonl"
    final = {r["id"] for r in read_records(progress) if r["status"] != "invalid"}
    todo = [r for r in requests if r["id"] not in final]
    log.info("%d requests, %d finished earlier, %d to decode", len(requests),
             len(requests) - len(todo), len(todo))
    with HypWriter(progress) as writer:
        for start in range(0, len(todo), args.chunk):
            chunk = todo[start:start + args.chunk]
            for res in model.generate(chunk):
                rec = res.record()
                if res.wave is not None:
                    save_wav(args.out_dir / "wav" / f"{res.id}.wav", res.wave, res.sample_rate)
                    rec["wav"] = f"wav/{res.id}.wav"
                writer.write(rec)
            log.info("%d/%d decoded", start + len(chunk), len(todo))
    latest = {r["id"]: r for r in read_records(progress)}
    ordered = [latest[r["id"]] for r in requests]
    atomic_write_text(args.out_dir / "results.jsonl",
                      "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))
    bad = [r for r in ordered if r["status"] == "invalid"]
    for r in bad:
        print(f"error: request {r['id']}: {r['error']}", file=sys.stderr)
    if bad:
        return fail(f"{len(bad)} of {len(ordered)} requests were invalid (the others are in "
                    f"{args.out_dir / 'results.jsonl'})")
    return 1 if any(r["status"] == "error" for r in ordered) else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    from dualspeech.config import ConfigError
    from dualspeech.inference.model_dir import ModelDirError
    from dualspeech.inference.requests import InvalidRequest

    try:
        if args.input is not None:
            read_requests(args.input)          # a bad list fails before the model loads
        model = load(args)
        code = run_batch(args, model) if args.input is not None else run_one(args, model)
    except (InvalidRequest, ModelDirError, ConfigError) as e:
        code = fail(str(e))
    return code


if __name__ == "__main__":
    sys.exit(main())
