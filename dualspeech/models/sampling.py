"""The one sampler of next-token logits (greedy, temperature, top-k, nucleus top-p).

Used by AcousticGPT's own decoder and by the LLM generation loop in
``dualspeech.inference.lm_generation``. It lives in ``models`` (not ``inference``) because a
model's ``generate`` may use it and models never import inference.
"""
from __future__ import annotations

import torch


def sample_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0, do_sample: bool = True,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, V) logits -> (B,) ids. Greedy when ``do_sample`` is false, ``temperature <= 0`` or
    ``top_k == 1``; otherwise temperature, then top-k (0: off), then the smallest set reaching
    probability ``top_p`` (1: off). Banned ids should already be ``-inf``."""
    if not do_sample or temperature <= 0 or top_k == 1:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, -1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0 < top_p < 1:
        sorted_logits, order = logits.sort(-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p     # keep the smallest set reaching top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)
