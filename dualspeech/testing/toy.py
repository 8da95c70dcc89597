"""Untrained model, toy token corpus and a tone-trained MelVQ codec whose sizes agree.

Why: decoding tests and the ``decode_batching`` benchmark must run without a trained model or
extracted tokens. The model is built from a real model config (random new parts), the corpus
is ``dualspeech.testing.toy_corpus`` in the real on-disk layout, and the codec has exactly the
AcousticGPT's ``n_codes`` entries, all sized from that one config.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def toy_model(conf: str, overrides: list[str] | None = None, seed: int = 0):
    """(model in eval mode, its config dict) from a DualSpeechLM config file. Its speech rows
    start as ``mean_noise`` (a toy has no trained USTokenizer to initialise them from)."""
    from dualspeech.config import load_config
    from dualspeech.models.dualspeechlm import DualSpeechLM

    cfg = load_config(conf, ["+model.speech_init.method=mean_noise", *(overrides or [])])
    torch.manual_seed(seed)
    return DualSpeechLM.from_config(cfg).eval(), cfg


def toy_data(root: Path, cfg: dict, n_per_task: int, part: str = "test") -> Path:
    """Toy corpus ``toy:<part>`` whose token ranges and speaker dims fit the model config."""
    from dualspeech.testing.toy_corpus import write_toy_corpus

    agpt = cfg["model"]["acoustic_gpt"]
    return write_toy_corpus(root, part=part, n_per_task=n_per_task, spk_dim=agpt["spk_dim"],
                            num_speech_tokens=cfg["model"]["speech"]["num_tokens"],
                            n_codes=agpt["n_codes"])


def toy_codec(path: Path, n_codes: int, griffin_lim_iters: int = 32):
    """A MelVQ codec with ``n_codes`` entries fitted on synthetic tones (1.2 frames per code)."""
    from dualspeech.tokenizers.codecs.melvq import MelVQCodec, MelVQTrainConfig, train_melvq

    t = np.arange(16000) / 16000
    waves = [(0.3 * np.sin(2 * np.pi * (100 + 37 * i) * t)).astype(np.float32)
             for i in range(int(np.ceil(1.2 * n_codes / 40)))]
    train_melvq(waves, MelVQTrainConfig(codebook_size=n_codes, kmeans_iters=5), path)
    return MelVQCodec(path, griffin_lim_iters=griffin_lim_iters)
