"""Benchmark: mini-corpus preparation throughput, 1 vs N parallel TTS jobs, side by side.

Each run makes the whole mini corpus from nothing in a fresh temporary directory (espeak-ng
synthesis + 16 kHz conversion, then Recording headers, speech cuts, task examples and the
gzipped manifests) and times the two stages separately. The last line is the end-to-end rate
at the largest ``--nj``: ``utterances_per_s=<value>``.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dualspeech.bench import register


def _run(size: str, seed: int, nj: int) -> tuple[int, float, float]:
    from dualspeech.data import mini
    from dualspeech.data.manifest_io import write_part
    from dualspeech.data.synth import SynthJob, TTSCommand, synthesize_all

    plans = mini.plan_corpus(size, seed)
    with tempfile.TemporaryDirectory(prefix="bench-manifests-") as tmp:
        audio = Path(tmp) / "audio"
        jobs = [SynthJob(str(audio / part / f"{u.id}.wav"), u.text, u.voice)
                for part in mini.PARTS for u in plans[part].utts]
        t0 = time.perf_counter()
        synthesize_all(TTSCommand(), jobs, nj=nj, desc=f"bench nj={nj}")
        t1 = time.perf_counter()
        for part in mini.PARTS:
            write_part(tmp, mini.CORPUS, part, mini.build_part(plans[part], audio / part))
        t2 = time.perf_counter()
    return len(jobs), t1 - t0, t2 - t1


@register("manifests", "mini corpus preparation throughput (synthesis + manifests), 1 vs N jobs")
def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.bench manifests", description=__doc__)
    p.add_argument("--size", default="tiny", choices=("tiny", "small", "default"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nj", type=int, nargs="+", default=[1, 2], help="job counts to compare")
    args = p.parse_args(argv)
    _run("tiny", args.seed, max(args.nj))   # warm-up: imports, librosa/soxr initialisation
    rows = [(nj, *_run(args.size, args.seed, nj)) for nj in args.nj]
    print(f"{'nj':>3s} {'utts':>6s} {'synth s':>8s} {'manifest s':>10s} {'synth utt/s':>11s} "
          f"{'manifest utt/s':>14s} {'total utt/s':>11s}")
    for nj, n, ts, tm in rows:
        print(f"{nj:3d} {n:6d} {ts:8.2f} {tm:10.2f} {n / ts:11.1f} {n / tm:14.1f} {n / (ts + tm):11.1f}")
    base, best = rows[0], rows[-1]
    print(f"speedup nj={best[0]} vs nj={base[0]}: "
          f"{(base[2] + base[3]) / (best[2] + best[3]):.2f}x")
    print(f"utterances_per_s={best[1] / (best[2] + best[3]):.1f}")
