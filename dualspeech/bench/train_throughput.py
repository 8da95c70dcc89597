"""DualSpeechLM training throughput (forward + backward + AdamW) in LLM tokens per second, on a
generated token corpus (all 8 tasks) with the sampler's real batches."""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from dualspeech.bench import register

DEFAULT_CONF = Path(__file__).resolve().parents[2] / "egs/mini/conf/dualspeechlm_debug.yaml"


@register("train_throughput", "DualSpeechLM training tokens/s (fwd + bwd + AdamW)")
def run(argv: list[str]) -> None:
    from dualspeech.config import build, load_config
    from dualspeech.data.dataset import DataConfig, build_datasets
    from dualspeech.data.sampler import TaskBatchSampler
    from dualspeech.models.dualspeechlm import DualSpeechLM
    from dualspeech.testing.toy_corpus import write_toy_corpus

    p = argparse.ArgumentParser(prog="bench train_throughput", description=__doc__)
    p.add_argument("--conf", type=Path, default=DEFAULT_CONF, help="DualSpeechLM config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    # the toy corpus has no trained USTokenizer; the speech-row init does not change the speed
    cfg = load_config(args.conf, ["+model.speech_init.method=mean_noise", *args.overrides])
    model_cfg = cfg["model"]
    with tempfile.TemporaryDirectory() as tmp:
        agpt = model_cfg.get("acoustic_gpt") or {}
        write_toy_corpus(tmp, "toy", "train", n_per_task=24,
                         num_speech_tokens=model_cfg["speech"]["num_tokens"],
                         n_codes=agpt.get("n_codes", 1024), spk_dim=agpt.get("spk_dim", 256),
                         speech_field=model_cfg["speech"].get("field", "ustokens"))
        cfg["data"].update(root=tmp, train=["toy:train"], valid=["toy:train"])
        model = DualSpeechLM.from_config(cfg).to(args.device).train()
        data_cfg = build(DataConfig, cfg["data"], "data")
        ds = build_datasets(data_cfg, model.templates, model.acoustic_spec(), ("train",))["train"]
        sampler = TaskBatchSampler(ds.lengths, data_cfg.sampler, rank=0, world_size=1)
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4,
                                betas=(0.9, 0.95))
        batches, epoch = [], 0
        while len(batches) < args.steps + 2:
            sampler.set_epoch(epoch)
            batches += list(sampler)
            epoch += 1
        tokens, t0 = 0, 0.0
        for i, b in enumerate(batches[:args.steps + 2]):
            if i == 2:
                t0 = time.perf_counter()
            batch = {k: v.to(args.device) if torch.is_tensor(v) else v for k, v in ds[b].items()}
            out = model(batch)
            out["loss"].backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i >= 2:
                tokens += batch["n_tokens"]
        sec = time.perf_counter() - t0
    n_train = sum(q.numel() for q in model.parameters() if q.requires_grad)
    print(f"config {args.conf.name}: backbone {model_cfg['llm']}, trainable {n_train / 1e6:.2f}M, "
          f"device {args.device}, threads {torch.get_num_threads()}")
    print(f"{'steps':>6s} {'LLM tokens':>11s} {'seconds':>8s} {'steps/s':>8s}")
    print(f"{args.steps:6d} {tokens:11d} {sec:8.2f} {args.steps / sec:8.2f}")
    print(f"train_tokens_per_s={tokens / sec:.1f}")
