"""Merge a trained DualSpeechLM into a standalone model directory.

    python -m dualspeech.bin.merge --exp-dir exp/dualspeechlm_mini --out exp/dualspeechlm_mini/merged
        [--checkpoint exp/.../checkpoints/step-00000100]

Output::

    llm/               plain Hugging Face causal LM: LoRA merged into the weights, the vocabulary
                       resized to text + speech tokens (the speech rows written into embedding and
                       head), extended tokenizer; loads with AutoModelForCausalLM alone
    tokenizer/         the extended tokenizer + speech_vocab.json
    extra.safetensors  AcousticGPT weights and the speech rows
    config.yaml        the experiment config with model.llm -> llm/, LoRA off

``dualspeech.models.io.load_model(out)`` loads it (no peft needed).
"""
from __future__ import annotations

import argparse
import copy
import logging
from pathlib import Path

import torch
from dualspeech.utils.logs import setup_logging

log = logging.getLogger("dualspeech.merge")


def merge(source: str | Path, out: str | Path) -> Path:
    from safetensors.torch import save_file

    from dualspeech.config import save_config
    from dualspeech.models.io import load_model
    from dualspeech.utils.io import atomic_path

    out = Path(out)
    model = load_model(source)
    vocab = model.vocab
    llm = model.llm.merge_and_unload() if model.cfg.lora.rank > 0 else model.llm
    text_vocab, size = vocab.text_vocab_size, vocab.size
    llm.resize_token_embeddings(max(size, llm.get_input_embeddings().weight.shape[0]),
                                mean_resizing=False)
    with torch.no_grad():
        emb = llm.get_input_embeddings().weight
        emb[text_vocab:size] = model.speech_embed.to(emb.dtype)
        head = llm.get_output_embeddings()
        if head is not None and head.weight is not emb:
            head.weight[text_vocab:size] = model._speech_head().to(head.weight.dtype)
    llm.config.vocab_size = llm.get_input_embeddings().weight.shape[0]
    llm.save_pretrained(out / "llm")
    vocab.tokenizer.save_pretrained(out / "llm")
    vocab.save(out / "tokenizer")
    extra = {n: p.detach().float().contiguous().cpu() for n, p in model.named_parameters()
             if not n.startswith("llm.") and p.requires_grad}
    with atomic_path(out / "extra.safetensors") as tmp:
        save_file(extra, str(tmp))
    cfg = copy.deepcopy(model.full_config)
    cfg["model"].update(llm="llm", train_norms=False)
    if cfg["model"].get("train_text_rows"):   # trained rows are in llm/ now
        cfg["model"]["train_text_rows"] = False
    cfg["model"].setdefault("lora", {})["rank"] = 0
    save_config(cfg, out)
    log.info("merged %s -> %s (%d text + %d speech tokens)", source, out, text_vocab,
             vocab.num_new)
    return out


def main(argv=None) -> None:
    setup_logging()
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.merge", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True, type=Path, help="DualSpeechLM experiment dir")
    p.add_argument("--checkpoint", type=Path,
                   help="a checkpoints/step-N dir (default: the exp dir's model/ or newest)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    args = p.parse_args(argv)
    merge(args.checkpoint or args.exp_dir, args.out)


if __name__ == "__main__":
    main()
