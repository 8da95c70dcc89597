"""Validation / probe of a USTokenizer under training: reconstruction, codebook use over the
whole set, and how well the frozen LLM answers from the tokens (answer-token accuracy per task).

Two controls show how much of that accuracy comes from the speech: ``shuffled`` (every example
hears another example's speech: what the adapter's speech-independent bias gives) and
``nospeech`` (the prompt alone).
"""
from __future__ import annotations

import math
from collections import defaultdict

import torch
from lhotse import CutSet
from lhotse.dataset import SimpleCutSampler

from dualspeech.tokenizers.ustokenizer.data import UnderstandingDataset
from dualspeech.tokenizers.ustokenizer.model import USTokenizerTraining
from dualspeech.training import to_device


@torch.no_grad()
def evaluate(model: USTokenizerTraining, cuts: CutSet, dataset: UnderstandingDataset,
             max_duration: float, controls: bool = True) -> dict[str, float]:
    device = next(model.tokenizer.encoder.parameters()).device
    sampler = SimpleCutSampler(cuts, max_duration=max_duration, shuffle=False, world_size=1, rank=0)
    K = model.tokenizer.vq.codebook_size
    counts = torch.zeros(K, device=device)
    sums: dict[str, float] = defaultdict(float)
    hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    n_batches = 0
    for batch_cuts in sampler:
        batch = to_device(dataset[batch_cuts], device)
        waves = [a[:n] for a, n in zip(batch["audio"], batch["audio_lens"].tolist())]
        out = model.tokenizer.encode(waves)
        valid = torch.arange(out["ids"].shape[1], device=device) < out["n25"][:, None]
        counts += torch.bincount(out["ids"][valid], minlength=K).float()
        sums["recon"] += float(model.tokenizer.reconstruction_loss(out))
        sums["commit"] += float(out["commit"])
        n_batches += 1
        if model.llm is None:
            continue
        b = len(batch["prompts"])
        orders = {"": None}
        if controls:
            orders["_shuffled"] = [(i + 1) % b for i in range(b)] if b > 1 else None
            orders["_nospeech"] = [-1] * b
        for suffix, order in orders.items():
            if suffix == "_shuffled" and order is None:
                continue
            loss, _, per_ex = model.understanding(out["z"], out["n25"], batch["prompts"], order)
            if suffix == "":
                sums["under"] += float(loss)
            for task, (correct, total) in zip(batch["tasks"], per_ex.tolist()):
                for key in (f"acc_{task}{suffix}", f"acc{suffix}"):
                    hits[key][0] += correct
                    hits[key][1] += total
    if n_batches == 0:
        raise ValueError("validation set is empty")
    probs = counts / counts.sum().clamp(min=1)
    metrics = {k: v / n_batches for k, v in sums.items()}
    metrics["usage"] = float((counts > 0).float().mean())
    metrics["perplexity"] = math.exp(float(-(probs * probs.clamp(min=1e-10).log()).sum()))
    metrics.update({k: c / max(t, 1) for k, (c, t) in sorted(hits.items())})
    return metrics
