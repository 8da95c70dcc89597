"""Train a USTokenizer (Whisper encoder -> conv encoder -> single VQ) with the commitment,
understanding-driven (frozen LLM answers ASR / SER / SQA prompts from the tokens) and
reconstruction losses, on the shared accelerate trainer.

  python -m dualspeech.bin.train_ustokenizer --conf conf/ustokenizer_mini.yaml \\
      --exp-dir exp/ustokenizer_mini --data-dir data --train-sets mini:train --valid-sets mini:dev

Multi-GPU: ``accelerate launch --multi_gpu --num_processes 4 -m dualspeech.bin.train_ustokenizer ...``.
Re-running the same command resumes from the newest checkpoint. Writes
``<exp-dir>/final.pt`` (the tokenizer for extract_ustokens) and ``<exp-dir>/valid_final.json``.
"""
from __future__ import annotations

import argparse
import json
import logging

import torch
from lhotse.dataset import DynamicBucketingSampler

from dualspeech.config import ConfigError, add_config_args, build, config_from_args, save_config
from dualspeech.pretrained import load_causal_lm, load_whisper
from dualspeech.tokenizers.ustokenizer.checkpoint import save_tokenizer
from dualspeech.tokenizers.ustokenizer.config import (LLMConfig, LossConfig, PromptConfig,
                                                      USTokenizerConfig, USTokenizerDataConfig)
from dualspeech.tokenizers.ustokenizer.data import (UnderstandingDataset, load_understanding_cuts,
                                                    task_manifests)
from dualspeech.tokenizers.ustokenizer.evaluate import evaluate
from dualspeech.tokenizers.ustokenizer.model import USTokenizer, USTokenizerTraining
from dualspeech.tokenizers.ustokenizer.prompts import PromptBuilder
from dualspeech.training import Trainer, TrainerConfig
from dualspeech.utils.io import atomic_write_text
from dualspeech.utils.logs import setup_logging

log = logging.getLogger("dualspeech.train_ustokenizer")
SECTIONS = {"ustokenizer": USTokenizerConfig, "llm": LLMConfig, "prompts": PromptConfig,
            "loss": LossConfig, "data": USTokenizerDataConfig, "trainer": TrainerConfig}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.train_ustokenizer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--exp-dir", required=True, help="experiment directory (checkpoints, logs, final.pt)")
    p.add_argument("--data-dir", required=True, help="prepared data dir holding tasks/<corpus>_<task>_<part>.jsonl.gz")
    p.add_argument("--train-sets", nargs="+", required=True, metavar="CORPUS:PART",
                   help="training sets, e.g. mini:train librispeech:train-clean-100")
    p.add_argument("--valid-sets", nargs="*", default=[], metavar="CORPUS:PART",
                   help="validation sets (token accuracy of the LLM answers, recon loss, codebook usage)")
    return p.parse_args(argv)


def read_sections(cfg: dict) -> dict:
    unknown = sorted(set(cfg) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown config section(s) {unknown}; allowed: {sorted(SECTIONS)}")
    return {name: build(cls, cfg.get(name), name) for name, cls in SECTIONS.items()}


def main(argv=None) -> None:
    setup_logging()
    args = parse_args(argv)
    cfg = config_from_args(args)
    s = read_sections(cfg)
    trainer = Trainer(s["trainer"], args.exp_dir)
    if trainer.is_main:
        save_config(cfg, args.exp_dir)
    data_cfg: USTokenizerDataConfig = s["data"]
    whisper = load_whisper(s["ustokenizer"].whisper)
    llm, prompts = None, None
    if s["loss"].use_under:
        dtype = torch.bfloat16 if s["llm"].dtype == "bfloat16" else torch.float32
        llm, text_tokenizer = load_causal_lm(s["llm"].model, dtype=dtype)
        prompts = PromptBuilder(s["prompts"], text_tokenizer)
    model = USTokenizerTraining(USTokenizer(s["ustokenizer"], whisper), s["loss"], llm)
    if s["llm"].gradient_checkpointing:
        model.gradient_checkpointing_enable()

    train_cuts = load_understanding_cuts(
        task_manifests(args.data_dir, args.train_sets, data_cfg.tasks), data_cfg)
    log.info("training on %d examples (%.2f h)", len(train_cuts),
             sum(c.duration for c in train_cuts) / 3600)
    sampler = DynamicBucketingSampler(
        train_cuts, max_duration=data_cfg.max_duration, max_cuts=data_cfg.max_cuts, shuffle=True,
        num_buckets=max(2, min(data_cfg.num_buckets, len(train_cuts) // 4)),   # lhotse needs >= 2
        buffer_size=data_cfg.shuffle_buffer, seed=s["trainer"].seed, drop_last=False)
    valid_fn = None
    if args.valid_sets:
        valid_cuts = load_understanding_cuts(
            task_manifests(args.data_dir, args.valid_sets, data_cfg.tasks), data_cfg,
            max_per_task=data_cfg.valid_max_cuts)
        valid_data = UnderstandingDataset(prompts, train=False, min_seconds=data_cfg.min_seconds)

        def valid_fn(m, accelerator):
            return evaluate(m, valid_cuts, valid_data, data_cfg.max_duration)

    train_data = UnderstandingDataset(prompts, train=True, min_seconds=data_cfg.min_seconds)
    model = trainer.fit(model, train_data, sampler, valid_fn)
    if trainer.is_main:
        path = save_tokenizer(f"{args.exp_dir}/final.pt", s["ustokenizer"],
                              model.trainable_state_dict(), cfg, trainer.step)
        log.info("tokenizer written to %s", path)
        if valid_fn is not None:
            metrics = valid_fn(model.eval(), trainer.accelerator)
            atomic_write_text(f"{args.exp_dir}/valid_final.json", json.dumps(metrics, indent=2) + "\n")
            log.info("final validation: %s", metrics)


if __name__ == "__main__":
    main()
