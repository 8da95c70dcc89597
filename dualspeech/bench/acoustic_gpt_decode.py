"""AcousticGPT decoding speed: KV-cache incremental decoding vs recomputing the whole sequence
at every step (how the reference decoder works), batch 1, the same tokens in both runs."""
from __future__ import annotations

import argparse
import time

import torch

from dualspeech.bench import register
from dualspeech.models.acoustic_gpt import AcousticGPT, AcousticGPTConfig


@register("acoustic_gpt_decode", "AcousticGPT decoding: KV cache vs full recompute per step")
def run(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="bench acoustic_gpt_decode", description=__doc__)
    p.add_argument("--tokens", type=int, default=400, help="acoustic tokens to generate")
    p.add_argument("--cond-len", type=int, default=100, help="condition frames (prompt + USTokens)")
    p.add_argument("--paper", action="store_true", help="paper dims (6 x 1024, 8 heads); slow on CPU")
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for both decoders (batch-1 decoding is latency bound); "
                        "0 leaves torch's default")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dims = (6, 1024, 8) if args.paper else (args.n_layer, args.n_embd, args.n_head)
    torch.manual_seed(0)
    gpt = AcousticGPT(AcousticGPTConfig(n_codes=4096, n_layer=dims[0], n_embd=dims[1],
                                        n_head=dims[2], block_size=2000, spk_dim=512,
                                        cond_dim=dims[1])).eval()
    cond = torch.randn(1, args.cond_len, dims[1])
    mask = torch.ones(1, args.cond_len, dtype=torch.bool)
    spk = torch.randn(1, 512)
    results = {}
    for use_cache in (True, False):
        t0 = time.perf_counter()
        out = gpt.generate(cond, mask, spk, max_len=args.tokens, min_len=args.tokens, top_k=1,
                           use_cache=use_cache)
        results[use_cache] = (time.perf_counter() - t0, out[0])
    same = torch.equal(results[True][1], results[False][1])
    print(f"AcousticGPT {dims[0]} layers x {dims[1]} dims, {dims[2]} heads; condition "
          f"{args.cond_len} frames + speaker; {args.tokens} tokens, batch 1, greedy")
    print(f"{'decoder':24s} {'seconds':>9s} {'tokens/s':>9s}")
    for name, key in (("KV cache", True), ("full recompute", False)):
        sec = results[key][0]
        print(f"{name:24s} {sec:9.2f} {args.tokens / sec:9.1f}")
    print(f"identical tokens: {'yes' if same else 'NO'}")
    print(f"kv_cache_speedup={results[False][0] / results[True][0]:.1f}")
