"""Save and load DualSpeechLM: export an inference dir, load any of the four layouts.

``load_model(path)`` accepts an exp dir (its exported ``model/`` or newest checkpoint), a
``checkpoints/step-N`` dir, an exported model dir or a merged dir (python -m dualspeech.bin.merge).
Why a module of its own: the model file stays the model and its losses, and loading needs no
training code (the checkpoint layout comes from ``dualspeech.utils.checkpoints``).
"""
from __future__ import annotations

from pathlib import Path

import torch

from dualspeech.config import load_yaml, save_config
from dualspeech.data.vocab import SpeechVocab
from dualspeech.models.dualspeechlm import DualSpeechLM
from dualspeech.utils.checkpoints import latest_checkpoint, load_trainable_state_dict
from dualspeech.utils.io import atomic_path


def export_model(model: DualSpeechLM, directory: str | Path) -> Path:
    """Write an inference dir: adapter/ (PEFT), extra.safetensors, tokenizer/, config.yaml."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if model.cfg.lora.rank > 0:
        model.llm.save_pretrained(directory / "adapter")
        _sort_target_modules(directory / "adapter" / "adapter_config.json")
    extra = {n: p.detach().float().contiguous().cpu() for n, p in model.named_parameters()
             if p.requires_grad and "lora_" not in n}   # LoRA weights go to adapter/
    with atomic_path(directory / "extra.safetensors") as tmp:
        save_file(extra, str(tmp))
    model.vocab.save(directory / "tokenizer")
    save_config(model.full_config, directory)
    return directory


def _sort_target_modules(config: Path) -> None:
    """PEFT writes ``target_modules`` from a set, in hash order: sorted, the same training
    writes the same bytes in every process (stage markers and model.json hash this file)."""
    import json

    cfg = json.loads(config.read_text())
    if isinstance(cfg.get("target_modules"), list):
        cfg["target_modules"] = sorted(cfg["target_modules"])
        with atomic_path(config) as tmp:
            tmp.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> DualSpeechLM:
    """Load any of: exp dir, checkpoints/step-N, exported model dir, merged dir (eval mode)."""
    from safetensors.torch import load_file

    path = Path(path)
    if (path / "model").is_dir() and (path / "model" / "config.yaml").exists():
        path = path / "model"
    elif (path / "checkpoints").is_dir() and not (path / "config.yaml").exists():
        raise FileNotFoundError(f"{path} has checkpoints but no config.yaml")
    if (path / "checkpoints").is_dir() and not (path / "extra.safetensors").exists():
        last = latest_checkpoint(path)
        if last is None:
            raise FileNotFoundError(f"{path}: no complete checkpoint under checkpoints/")
        path = last
    if (path / "model.pt").exists():      # trainer checkpoint: config lives in the exp dir
        exp_dir = path.parent.parent
        cfg = load_yaml(exp_dir / "config.yaml")
        model = DualSpeechLM.from_config(cfg, SpeechVocab.load(exp_dir / "tokenizer"),
                                         init_speech_rows=False)
        load_trainable_state_dict(model, torch.load(path / "model.pt", map_location="cpu",
                                                    weights_only=True))
        return model.to(device).eval()
    if not (path / "config.yaml").exists():
        raise FileNotFoundError(f"{path}: expected an exp dir, a checkpoints/step-N dir, an "
                                "exported model dir or a merged dir (with config.yaml)")
    cfg = load_yaml(path / "config.yaml")
    if (path / "llm").is_dir():             # merged: the LLM dir holds everything
        cfg["model"]["llm"] = str(path / "llm")
    model = DualSpeechLM.from_config(cfg, SpeechVocab.load(path / "tokenizer"),
                                     init_speech_rows=False)
    state = load_file(str(path / "extra.safetensors"))
    if (path / "adapter").is_dir():
        from peft import set_peft_model_state_dict

        adapter = load_file(str(path / "adapter" / "adapter_model.safetensors"))
        result = set_peft_model_state_dict(model.llm, adapter)
        if getattr(result, "unexpected_keys", None):
            raise KeyError(f"adapter tensors do not fit the model: {result.unexpected_keys[:5]}")
    load_trainable_state_dict(model, state)
    return model.to(device).eval()
