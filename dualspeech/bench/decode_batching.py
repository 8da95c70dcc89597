"""Benchmark: batched vs one-at-a-time decoding throughput (ASR and TTS), side by side.

Both modes run the full decode path of ``dualspeech.bin.decode`` (prompt collation, KV-cache
generation, AcousticGPT + codec decode for TTS, writing outputs) on the same examples with
greedy decoding, so both produce the same outputs and only the batching differs.

Default: the mini recipe's model config, untrained (real SmolLM2-135M weights, fresh speech
rows and AcousticGPT, which never emit end tokens, so every example runs to the length limits
in both modes) on the toy token corpus in the real on-disk layout; a trained model, the mini
test set and its codec are selected with ``--model``, ``--data-root/--source`` and ``--codec-conf``. Last line:
``batched_speedup=<min of the ASR and TTS ratios>``.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from dualspeech.bench import register


@register("decode_batching", "batched vs one-at-a-time decoding throughput for ASR and TTS")
def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.bench decode_batching",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="trained model (exp dir / model dir); default: random debug model")
    p.add_argument("--conf", default="egs/mini/conf/dualspeechlm_mini.yaml",
                   help="model config of the untrained model (default: the mini recipe's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="further overrides of the random model's config")
    p.add_argument("--gl-iters", type=int, default=32, help="Griffin-Lim iterations of the toy codec")
    p.add_argument("--data-root", type=Path, help="dir with tasks/ and cuts/ (with --model)")
    p.add_argument("--source", default="mini:test", help="corpus:part (with --data-root)")
    p.add_argument("--codec-conf", help="YAML with a codec section (with --model)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--n", type=int, default=16, help="examples per task")
    p.add_argument("--text-tokens", type=int, default=24, help="max new text tokens (ASR)")
    p.add_argument("--speech-tokens", type=int, default=40, help="max new USTokens (TTS)")
    p.add_argument("--acoustic-frames", type=int, default=80, help="max codec frames (TTS)")
    p.add_argument("--repeats", type=int, default=2,
                   help="timed runs per setting, interleaved; the fastest counts (the first "
                        "also pays lazy imports and cache warm-up)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is fastest for small batches on a shared 2-core box)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"model: {args.model or args.conf} {' '.join(args.overrides)}; threads={args.threads}")

    from dualspeech.config import build, load_yaml
    from dualspeech.data.dataset import DataConfig
    from dualspeech.data.tasks import parse_set
    from dualspeech.inference.config import DecodeConfig
    from dualspeech.inference.runner import DecodeRunner

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.model:
            from dualspeech.models.io import load_model
            from dualspeech.tokenizers.codecs import build_codec

            if not (args.data_root and args.codec_conf):
                p.error("--model needs --data-root and --codec-conf")
            model = load_model(args.model)
            corpus, part = parse_set(args.source)
            root, codec = args.data_root, build_codec(load_yaml(args.codec_conf)["codec"])
        else:
            from dualspeech.testing.toy import toy_codec, toy_data, toy_model

            model, cfg = toy_model(args.conf, args.overrides)
            root, corpus, part = toy_data(tmp / "data", cfg, args.n), "toy", "test"
            codec = toy_codec(tmp / "melvq.pt", cfg["model"]["acoustic_gpt"]["n_codes"],
                              args.gl_iters)
        rows = []
        for task in ("asr", "tts"):
            times = {1: float("inf"), args.batch_size: float("inf")}
            for rep in range(args.repeats):
                for bs in times:
                    cfg = build(DecodeConfig, {
                        "batch_size": bs, "save_prompt": False,
                        "text": {"strategy": "greedy", "max_new_tokens": args.text_tokens},
                        "speech": {"do_sample": False, "max_new_tokens": args.speech_tokens},
                        "acoustic": {"top_k": 1, "max_len": args.acoustic_frames}}, "decode")
                    runner = DecodeRunner(model, cfg, codec, DataConfig(max_len=4096))
                    t0 = time.perf_counter()
                    counts = runner.decode(root, corpus, part, task, tmp / f"out_{task}_{bs}_{rep}")
                    times[bs] = min(times[bs], time.perf_counter() - t0)
            n = sum(v for k, v in counts.items() if k not in ("done_before", "merged", "skipped"))
            ratio = times[1] / times[args.batch_size]
            rows.append((task, n, times[1], times[args.batch_size], ratio))
    print(f"{'task':6s} {'n':>4s} {'bs=1 s':>9s} {f'bs={args.batch_size} s':>9s} "
          f"{'utt/s bs=1':>11s} {f'utt/s bs={args.batch_size}':>12s} {'speedup':>8s}")
    for task, n, t1, tb, r in rows:
        print(f"{task:6s} {n:4d} {t1:9.2f} {tb:9.2f} {n / t1:11.2f} {n / tb:12.2f} {r:7.2f}x")
    print(f"batched_speedup={min(r[-1] for r in rows):.2f}")
