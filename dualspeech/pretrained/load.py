"""Load what a spec names: an openai-whisper model, a causal LM with its tokenizer, the speaker
encoder's weight file (each checks that the resolved path is the expected kind)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from dualspeech.pretrained.cache import PretrainedNotFound
from dualspeech.pretrained.resolve import resolve, split_spec


def load_whisper(spec: str | os.PathLike, device: str = "cpu"):
    """An openai-whisper ``Whisper`` model (fp32) for a spec or a local ``.pt`` checkpoint."""
    from whisper.model import ModelDimensions, Whisper

    path = resolve(spec)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or not {"dims", "model_state_dict"} <= set(ckpt):
        raise ValueError(f"{path} is not an openai-whisper checkpoint "
                         "(expected a dict with 'dims' and 'model_state_dict')")
    model = Whisper(ModelDimensions(**ckpt["dims"]))
    model.load_state_dict(ckpt["model_state_dict"])
    heads = ckpt.get("alignment_heads")
    if heads:
        mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
        for layer, head in heads:
            mask[layer, head] = True
        model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
    else:
        import whisper

        scheme, name = split_spec(str(spec))
        if scheme == "whisper" and name in whisper._ALIGNMENT_HEADS:
            model.set_alignment_heads(whisper._ALIGNMENT_HEADS[name])
    return model.to(device)


def load_causal_lm(spec: str | os.PathLike, dtype: torch.dtype = torch.float32):
    """``(model, tokenizer)`` of a causal LM from a spec or a local Hugging Face model dir."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve(spec)
    if not (path / "config.json").is_file():
        raise PretrainedNotFound(f"{path} is not a Hugging Face model dir (no config.json); "
                                 "expected the output of save_pretrained / a hub snapshot")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    return model, tokenizer


def load_speaker_encoder_weights(spec: str | os.PathLike = "speaker:resemblyzer") -> Path:
    """Path of the speaker encoder's weight file (resemblyzer's ``pretrained.pt`` by default)."""
    path = resolve(spec)
    if not path.is_file():
        raise PretrainedNotFound(f"speaker encoder weights {path} must be a file")
    return path
