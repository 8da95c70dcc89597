"""Benchmark: streamed TTS (``DualSpeech.tts_stream``) against one-shot ``tts``.

Per layout (``decode.stream.mode`` exact and early) and for one-shot decoding, the same TTS
request is timed ``--repeats`` times, interleaved: time to the first chunk and to the whole
utterance. The streamed samples are compared with the one-shot wave: max |diff| overall, in
the interior of the chunks and within two codec frames of a chunk edge. Last line:
``first_chunk_speedup=<one-shot latency / exact first-chunk latency>`` (medians).

Model: ``--model DIR``; default the demo's exported model (``egs/mini/exp/default/
dualspeechlm_mini/model``) if it is there, else a random debug model dir with a random VQ-Mel
code decoder and the published HiFi-GAN vocoder (the demo's decoder path and its cost; greedy,
every utterance runs to ``--speech-tokens`` / ``--acoustic-frames``). The first line says which.
"""
from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np

from dualspeech.bench import register
from dualspeech.bench.serve import DEMO_MODEL, add_model_arguments, chosen_model


def timed_stream(model, text: str, voice: np.ndarray, sr: int, mode: str) -> dict:
    """One request: seconds to the first chunk and to the last, the chunks, their edges."""
    from dataclasses import replace

    model.cfg.stream = replace(model.cfg.stream, mode=mode)
    t0, times, chunks = time.perf_counter(), [], []
    for chunk in model.tts_stream(text, voice, sr):
        times.append(time.perf_counter() - t0)
        chunks.append(chunk)
    return {"first": times[0], "total": times[-1], "wave": np.concatenate(chunks),
            "edges": np.cumsum([len(c) for c in chunks])[:-1]}


def diffs(wave: np.ndarray, ref: np.ndarray, edges, margin: int) -> tuple[float, float, float]:
    """max |wave - ref|: overall, away from the chunk edges, within ``margin`` of one."""
    d = np.abs(wave - ref)
    near = np.zeros(len(d), bool)
    for e in edges:
        near[max(0, e - margin):e + margin] = True
    return (float(d.max()), float(d[~near].max()) if (~near).any() else 0.0,
            float(d[near].max()) if near.any() else 0.0)


@register("stream", "streamed TTS: first-chunk vs whole-utterance latency, samples vs one-shot")
def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.bench stream", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--first", type=int, default=8, help="decode.stream.first (codec frames)")
    p.add_argument("--chunk", type=int, default=32, help="decode.stream.chunk (codec frames)")
    p.add_argument("--speech-tokens", type=int, default=40, help="random model: USTokens")
    p.add_argument("--acoustic-frames", type=int, default=86,
                   help="random model: codec frames (86: 2 s of VQ-Mel)")
    args = p.parse_args(argv)

    import soundfile as sf
    import torch

    from dualspeech import DualSpeech
    from dualspeech.bench.serve import speech_clip

    torch.set_num_threads(args.threads)
    stream = {"first": args.first, "chunk": args.chunk}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = chosen_model(args)
        if model_dir is not None:
            print(f"model: {model_dir}")
            decode = {"stream": stream}
        else:
            from dualspeech.testing.toy import toy_model_dir

            decode = {"speech": {"max_new_tokens": args.speech_tokens, "do_sample": False},
                      "acoustic": {"max_len": args.acoustic_frames, "top_k": 1,
                                   "maxlenratio": None}, "stream": stream}
            model_dir = toy_model_dir(Path(tmp), args.conf, n_codes=1024, codec="vqmel",
                                      decode=decode)
            print(f"model: random model dir of {args.conf} ({DEMO_MODEL} not found), random "
                  f"VQ-Mel + the published HiFi-GAN, {args.speech_tokens} USTokens / "
                  f"{args.acoustic_frames} frames, greedy")
        model = DualSpeech.from_pretrained(model_dir, decode=decode)
        voice, sr = sf.read(io.BytesIO(speech_clip("another voice speaks here", 80)[0]),
                            dtype="float32")
        text = "a red dog sat on the mat"
        spf = round(model.codec.sample_rate / model.codec.frame_rate)
        print(f"{args.threads} torch thread(s); chunks: first {args.first} frames, then "
              f"{args.chunk}; early: left {model.cfg.stream.left}, right "
              f"{model.cfg.stream.right}; codec {model.codec.identity}")
        rows: dict[str, list[dict]] = {"one-shot": [], "exact": [], "early": []}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            wave, _ = model.tts(text, voice, sr)
            rows["one-shot"].append({"first": time.perf_counter() - t0,
                                     "total": time.perf_counter() - t0, "wave": wave,
                                     "edges": []})
            for mode in ("exact", "early"):
                rows[mode].append(timed_stream(model, text, voice, sr, mode))
    ref = rows["one-shot"][0]["wave"]
    print(f"\nutterance: {len(ref) / model.codec.sample_rate:.2f} s, "
          f"{len(ref) // spf} codec frames; medians of {args.repeats}")
    print(f"{'decoding':>9} {'first s':>8} {'total s':>8} {'chunks':>6} {'max|diff|':>10} "
          f"{'inside':>10} {'at edges':>10}")
    med = {}
    for name, runs in rows.items():
        med[name] = {k: float(np.median([r[k] for r in runs])) for k in ("first", "total")}
        r = runs[0]
        if len(r["wave"]) != len(ref):
            raise SystemExit(f"{name}: {len(r['wave'])} samples, one-shot has {len(ref)}")
        d = diffs(r["wave"], ref, r["edges"], 2 * spf)
        print(f"{name:>9} {med[name]['first']:>8.3f} {med[name]['total']:>8.3f} "
              f"{len(r['edges']) + 1:>6} {d[0]:>10.2e} {d[1]:>10.2e} {d[2]:>10.2e}")
    print(f"peak |sample| {np.abs(ref).max():.3f}; 'at edges': within 2 frames of a chunk edge")
    print(f"first_chunk_speedup={med['one-shot']['total'] / med['exact']['first']:.2f}")
