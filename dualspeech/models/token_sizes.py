"""Token vocabulary and embedding sizes of a DualSpeechLM config, taken from the extracted data.

``model.speech.num_tokens``, ``model.acoustic_gpt.n_codes`` and ``model.acoustic_gpt.spk_dim``
are fixed by the tokenizer, codec and speaker encoder that produced the training data; every
extraction records them in ``<storage-dir>/meta.json`` (``dualspeech.tokenizers.extraction``:
``settings.codebook_size`` / ``num_clusters`` / ``dim``). Recipe stage 6 passes those files to
``python -m dualspeech.bin.train --token-meta``: a size the config leaves out is filled in, one
it sets differently is an error (a model sized for other tokens fails mid-run or reads wrong ids).
"""
from __future__ import annotations

import json
from pathlib import Path

from dualspeech.config import build
from dualspeech.models.dualspeechlm import ModelConfig

SIZE_SETTINGS = ("codebook_size", "num_clusters", "dim")   # what an extractor records its size as
SPEAKER_FIELD = "speaker_embedding"


def sizes_from_meta(paths: list[str | Path]) -> dict[str, int]:
    """{token field: size} from extraction meta.json files (all files of a field must agree)."""
    sizes: dict[str, int] = {}
    for path in paths:
        meta = json.loads(Path(path).read_text())
        settings = meta.get("settings") or {}
        found = [settings[k] for k in SIZE_SETTINGS if k in settings]
        if "field" not in meta or not found:
            raise ValueError(f"{path}: not an extraction meta.json with a size (field and "
                             f"settings.{'/'.join(SIZE_SETTINGS)})")
        field, size = meta["field"], int(found[0])
        if sizes.setdefault(field, size) != size:
            raise ValueError(f"{path}: {field} of size {size}, but another --token-meta file "
                             f"says {sizes[field]}: the sets were extracted with different models")
    return sizes


def apply_token_sizes(cfg: dict, sizes: dict[str, int]) -> dict[str, int]:
    """Fill the sizes ``cfg`` leaves out from ``sizes``; raise on a disagreeing value. Returns
    {dotted key: size} of what the data decided."""
    typed = build(ModelConfig, cfg.get("model"), "model")
    model = cfg.setdefault("model", {})
    targets = [("speech", "num_tokens", typed.speech.field)]
    if typed.acoustic_gpt is not None:
        targets += [("acoustic_gpt", "n_codes", typed.acoustic_gpt.field),
                    ("acoustic_gpt", "spk_dim", SPEAKER_FIELD)]
    decided = {}
    for section, key, field in targets:
        if field not in sizes:
            continue
        node = model.setdefault(section, {})
        if key in node and int(node[key]) != sizes[field]:
            raise ValueError(f"model.{section}.{key}={node[key]} but the extracted {field} have "
                             f"size {sizes[field]} (their meta.json): drop the key from the config "
                             "to take it from the data, or extract with the matching model")
        node[key] = decided[f"model.{section}.{key}"] = sizes[field]
    return decided
