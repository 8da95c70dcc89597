"""Random tiny models of the real architectures (``random:whisper-debug``,
``random:llama-debug``): seeded, built once into the cache; tests and the debug configs use them."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from dualspeech.pretrained.cache import PretrainedNotFound, cached_dir, cached_file, cached_path
from dualspeech.pretrained.gguf import smollm2_dir
from dualspeech.utils.io import atomic_torch_save

SEED = 0


def resolve_random(name: str) -> Path:
    builders = {"whisper-debug": (cached_file, _build_random_whisper),
                "llama-debug": (cached_dir, _build_random_llama)}
    if name not in builders:
        raise PretrainedNotFound(f"unknown random:{name}; known: "
                                 + ", ".join(f"random:{n}" for n in builders))
    make_cached, builder = builders[name]
    return make_cached(cached_path(f"random:{name}"), builder)


def _build_random_whisper(target: Path) -> None:
    from whisper.model import ModelDimensions, Whisper

    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=4,
                           n_audio_layer=2, n_vocab=51864, n_text_ctx=448, n_text_state=64,
                           n_text_head=4, n_text_layer=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Whisper(dims)
        # openai-whisper leaves this Parameter uninitialised (torch.empty); checkpoints fill it.
        torch.nn.init.normal_(model.decoder.positional_embedding, std=0.02)
    atomic_torch_save({"dims": dataclasses.asdict(dims), "model_state_dict": model.state_dict()}, target)


def _build_random_llama(target: Path) -> None:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir(), local_files_only=True)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=8192, rope_theta=100000.0, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlamaForCausalLM(config)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)

