"""The reference code's USTokenizer checkpoint (lavendery/UUG ``checkpoint_*.pth``: its key
``model``, the trainable state) -> this project's tokenizer state (``arch: repcodec``).

Key names and shapes are the reference's (``USTokenizer/models/USTokenizer.py`` and
``modules3/``); its code is not imported. Strict: every reference key is used or named as
dropped, every shape is checked, and all problems are reported together.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from dualspeech.pretrained import load_whisper
from dualspeech.tokenizers.ustokenizer.checkpoint import save_tokenizer
from dualspeech.tokenizers.ustokenizer.config import USTokenizerConfig, VQConfig
from dualspeech.tokenizers.ustokenizer.model import USTokenizer
from dualspeech.tokenizers.ustokenizer.modules import Adapter
from dualspeech.utils.io import file_sha256

log = logging.getLogger(__name__)

# Frozen in the reference and loaded here from the pretrained models themselves.
DROPPED = ("speech_encoder.", "llama_model.")
BLOCKS = 2          # RepCodec blocks per side (its enc_strides / dec_strides: [1, 1])
UNITS = 2           # residual units per block (its *_block_dilations: [1, 1])
# Its codec_config values the repcodec architecture implements (other values would change the
# computation without changing any shape).
CODEC_CONFIG = {"enc_ratios": [1, 1], "dec_ratios": [1, 1], "enc_strides": [1, 1],
                "dec_strides": [1, 1], "enc_kernel_size": 3, "dec_kernel_size": 3,
                "enc_block_dilations": [1, 1], "dec_block_dilations": [1, 1],
                "enc_block_kernel_size": 3, "dec_block_kernel_size": 3, "bias": True,
                "codebook_num": 1}
VQ = "vq.codebook.layers.0."


def _unit(ref: str, ours: str) -> dict[str, str]:
    return {f"{ref}.conv1.conv.weight": f"{ours}.block.1.weight",
            f"{ref}.conv2.weight": f"{ours}.block.3.weight"}


def key_map() -> dict[str, str]:
    """Reference key -> key of our training state (``tokenizer.*``, ``adapter.*``)."""
    enc, dec = "tokenizer.encoder.stack.layers", "tokenizer.decoder.stack.layers"
    m = {"downsampling_conv.conv.weight": "tokenizer.encoder.down.weight",
         "downsampling_conv.conv.bias": "tokenizer.encoder.down.bias",
         "codec_encoder.conv.conv.weight": f"{enc}.0.weight",
         "speech_llama_conv_proj.conv.weight": f"{enc}.{1 + BLOCKS * (UNITS + 1)}.weight",
         "codec_decoder.conv1.conv.weight": f"{dec}.0.weight",
         "codec_decoder.conv2.conv.weight": f"{dec}.{1 + BLOCKS * (UNITS + 1)}.weight",
         "upsampling_conv.deconv.weight": "tokenizer.decoder.up.weight",
         "upsampling_conv.deconv.bias": "tokenizer.decoder.up.bias",
         f"{VQ}embed": "tokenizer.vq.codebook",
         f"{VQ}embed_avg": "tokenizer.vq.embed_sum",
         f"{VQ}cluster_size": "tokenizer.vq.cluster_size",
         "llama_linear.weight": "adapter.proj.weight", "llama_linear.bias": "adapter.proj.bias",
         "llama_conv.conv.weight": "adapter.conv.weight",
         "llama_conv.conv.bias": "adapter.conv.bias"}
    for b in range(BLOCKS):
        first = 1 + b * (UNITS + 1)       # our layer index of the block's first module
        for u in range(UNITS):            # encoder block: units, then conv; decoder: conv, units
            m.update(_unit(f"codec_encoder.conv_blocks.{b}.res_units.{u}", f"{enc}.{first + u}"))
            m.update(_unit(f"codec_decoder.conv_blocks.{b}.res_units.{u}",
                           f"{dec}.{first + 1 + u}"))
        for ref, ours in ((f"codec_encoder.conv_blocks.{b}.conv.conv", f"{enc}.{first + UNITS}"),
                          (f"codec_decoder.conv_blocks.{b}.conv.conv", f"{dec}.{first}")):
            m[f"{ref}.weight"], m[f"{ref}.bias"] = f"{ours}.weight", f"{ours}.bias"
    return m


# Its codebook buffers are [dim, K]; ours are [K, dim].
TRANSPOSED = {f"{VQ}embed", f"{VQ}embed_avg"}


def sizes(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """Widths read from a reference state: Whisper width, channels, code dim, K, LLM width."""
    need = ["downsampling_conv.conv.weight", "codec_encoder.conv.conv.weight", f"{VQ}embed",
            "llama_linear.weight"]
    absent = [k for k in need if k not in state]
    if absent:
        raise ValueError(f"not a reference USTokenizer state: no {absent} (expected the 'model' "
                         "entry of its checkpoint_*.pth)")
    return {"width": state[need[0]].shape[0], "channels": state[need[1]].shape[0],
            "code_dim": state[need[2]].shape[0], "codebook_size": state[need[2]].shape[1],
            "hidden": state[need[3]].shape[0]}


def check_codec_config(codec_config: dict | None) -> None:
    """The reference's ``model.codec_config`` must be the one the repcodec arch implements."""
    if codec_config is None:
        log.warning("the checkpoint has no model.codec_config: dilations, strides and kernel "
                    "sizes cannot be verified (assumed the reference's config.yaml values)")
        return
    bad = {k: codec_config[k] for k, v in CODEC_CONFIG.items() if k in codec_config
           and (list(codec_config[k]) if isinstance(v, list) else codec_config[k]) != v}
    if bad:
        raise ValueError(f"the checkpoint's codec_config {bad} differs from the reference's "
                         f"{ {k: CODEC_CONFIG[k] for k in bad} }, which is all that "
                         "ustokenizer.arch: repcodec computes")


def convert_state(state: dict[str, torch.Tensor],
                  expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reference state -> our training state with exactly the keys and shapes of ``expected``
    (VQ step counters reset, the codebook marked initialised)."""
    mapping = key_map()
    dropped = [k for k in state if k.startswith(DROPPED)]
    unexpected = [k for k in state if k not in mapping and not k.startswith(DROPPED)]
    missing = [k for k in mapping if k not in state]
    misshaped, out = [], {}
    for ref, ours in mapping.items():
        if ref not in state:
            continue
        value = state[ref].t() if ref in TRANSPOSED else state[ref]
        if value.shape != expected[ours].shape:
            misshaped.append(f"{ref} {tuple(state[ref].shape)} (for {ours} "
                             f"{tuple(expected[ours].shape)}{', transposed' if ref in TRANSPOSED else ''})")
        out[ours] = value.to(expected[ours].dtype).contiguous()
    if missing or unexpected or misshaped:
        raise ValueError("the reference USTokenizer state does not fit: "
                         f"missing {missing}, unexpected {unexpected}, mis-shaped {misshaped}")
    if dropped:
        log.info("dropped %d frozen Whisper / LLM keys (%s...)", len(dropped), dropped[0])
    out["tokenizer.vq.unused_steps"] = torch.zeros_like(expected["tokenizer.vq.unused_steps"])
    out["tokenizer.vq.initialized"] = torch.ones_like(expected["tokenizer.vq.initialized"])
    extra = sorted(set(expected) - set(out))
    if extra:
        raise AssertionError(f"key_map misses model keys {extra}")
    return out


def import_ustokenizer(checkpoint: str | Path, whisper: str, out: str | Path) -> Path:
    """A reference ``checkpoint_*.pth`` -> our tokenizer file (``final.pt``) on ``whisper``
    (the Whisper it was trained on: whisper-medium), with the reference's settings:
    ``arch: repcodec``, ``pad_to_30s: true``, no dead-code restart."""
    obj = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        raise ValueError(f"{checkpoint}: expected the reference's checkpoint_*.pth, a dict with "
                         "the state dict under 'model'")
    state = obj["model"]
    dims = sizes(state)
    config = obj.get("config") if isinstance(obj.get("config"), dict) else {}
    check_codec_config((config.get("model") or {}).get("codec_config"))
    cfg = USTokenizerConfig(whisper=whisper, pad_to_30s=True, channels=dims["channels"],
                            arch="repcodec", vq=VQConfig(codebook_size=dims["codebook_size"],
                                                         dim=dims["code_dim"], dead_code_steps=0))
    whisper_model = load_whisper(whisper)
    width = whisper_model.encoder.ln_post.normalized_shape[0]
    if width != dims["width"]:
        raise ValueError(f"{checkpoint} was trained on a Whisper encoder of width {dims['width']} "
                         f"(whisper-medium: 1024); {whisper} has width {width}")
    tokenizer = USTokenizer(cfg, whisper_model)
    expected = {f"tokenizer.{k}": v for k, v in tokenizer.state_dict().items()
                if not k.startswith("frontend.")}
    expected.update({f"adapter.{k}": v for k, v in
                     Adapter(dims["code_dim"], dims["hidden"]).state_dict().items()})
    converted = convert_state(state, expected)
    source = {"checkpoint": Path(checkpoint).name, "sha256": file_sha256(checkpoint),
              "epoch": obj.get("epoch")}
    return save_tokenizer(out, cfg, converted, {"ustokenizer": dataclasses.asdict(cfg),
                                                "import_reference": source}, step=0)
