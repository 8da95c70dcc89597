"""Padding efficiency of the multi-task sampler (token bucketing) vs fixed-size batches.

Lengths are drawn per task from log-normal utterance durations (USTokens at 25/s plus prompt
and answer text), shaped like the paper's corpora; efficiency = real tokens / batch tokens
(batch size x longest sequence), over one epoch.
"""
from __future__ import annotations

import argparse

import numpy as np

from dualspeech.bench import register
from dualspeech.data.sampler import PAPER_TASK_WEIGHTS, SamplerConfig, TaskBatchSampler, padding_efficiency

# (median seconds of input/output speech, text tokens) per task
SHAPES = {"asr": (12.0, 60), "s2tt": (5.0, 50), "ser": (4.5, 30), "sqa": (12.0, 60),
          "tts": (6.0, 40), "t2st": (5.0, 40), "vc": (6.0, 30), "sc": (4.0, 40)}


def synthetic_lengths(n_per_task: int, seed: int) -> dict[str, list[int]]:
    rng = np.random.default_rng(seed)
    out = {}
    for task, (seconds, text) in SHAPES.items():
        dur = rng.lognormal(np.log(seconds), 0.5, n_per_task).clip(0.5, 30)
        speech = dur * 25 * (2 if task in ("vc", "sc") else 1)
        out[task] = list((speech + rng.integers(text // 2, text * 2, n_per_task)).astype(int))
    return out


def fixed_batches(lengths: dict[str, list[int]], batch_size: int, seed: int, per_task: bool):
    """Baseline: shuffled examples in batches of a fixed size (no length sorting)."""
    rng = np.random.default_rng(seed)
    groups = ([[(t, i) for i in range(len(v))] for t, v in lengths.items()] if per_task else
              [[(t, i) for t, v in lengths.items() for i in range(len(v))]])
    batches = []
    for g in groups:
        order = rng.permutation(len(g))
        batches += [[g[j] for j in order[k:k + batch_size]] for k in range(0, len(g), batch_size)]
    return batches


@register("padding", "padding efficiency: task-mixing token bucketing vs fixed-size batches")
def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="bench padding", description=__doc__)
    p.add_argument("--n-per-task", type=int, default=2000)
    p.add_argument("--max-tokens", type=int, default=18000, help="padded tokens per batch")
    p.add_argument("--buffer-batches", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    lengths = synthetic_lengths(args.n_per_task, args.seed)
    arrays = {t: np.asarray(v) for t, v in lengths.items()}
    rows = []
    for mode in ("per_task", "mixed"):
        cfg = SamplerConfig(weights=dict(PAPER_TASK_WEIGHTS), mode=mode, max_tokens=args.max_tokens,
                            max_batch_size=10_000, buffer_batches=args.buffer_batches, seed=args.seed)
        batches = TaskBatchSampler(lengths, cfg, rank=0, world_size=1).global_batches(0)
        mean_bs = float(np.mean([len(b) for b in batches]))
        rows.append((f"bucketing ({mode})", mean_bs, padding_efficiency(batches, arrays)))
        fixed = fixed_batches(lengths, max(1, round(mean_bs)), args.seed, mode == "per_task")
        rows.append((f"fixed size ({mode})", float(np.mean([len(b) for b in fixed])),
                     padding_efficiency(fixed, arrays)))
    # what training does: each task's stream visits its stage-5 shards (1000 examples) in turn
    cfg = SamplerConfig(weights=dict(PAPER_TASK_WEIGHTS), mode="per_task", max_tokens=args.max_tokens,
                        max_batch_size=10_000, buffer_batches=args.buffer_batches, seed=args.seed)
    groups = {t: np.arange(len(v)) // 1000 for t, v in lengths.items()}
    batches = TaskBatchSampler(lengths, cfg, rank=0, world_size=1, groups=groups).global_batches(0)
    rows.append(("bucketing (per_task, shards)", float(np.mean([len(b) for b in batches])),
                 padding_efficiency(batches, arrays)))
    print(f"{'sampler':28s} {'mean batch':>10s} {'efficiency':>10s}")
    for name, bs, eff in rows:
        print(f"{name:28s} {bs:10.1f} {eff:10.3f}")
    print(f"gain over fixed-size batches (per_task): {rows[0][2] / rows[1][2]:.2f}x")
    print(f"padding_efficiency={rows[0][2]:.3f}")
