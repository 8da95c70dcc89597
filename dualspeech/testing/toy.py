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


def toy_hifigan(out_dir: Path, channels: int = 32, seed: int = 0) -> Path:
    """A random HiFi-GAN generator of the published V1 layout (kernels, dilations, upsampling:
    the same receptive field and hop) with ``channels`` instead of 512; its ``config.json`` next
    to it. Vocodes noise, fast enough for tests."""
    import json

    from dualspeech.tokenizers.codecs.hifigan import (HiFiGANConfig, HiFiGANGenerator,
                                                      pip_vocoder_files)

    conf = json.loads(pip_vocoder_files()[1].read_text())
    conf["upsample_initial_channel"] = channels
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(conf))
    torch.manual_seed(seed)
    model = HiFiGANGenerator(HiFiGANConfig.from_dict(conf))
    with torch.no_grad():        # unit-norm filters: every layer passes its input on, so far
        for name, p in model.named_parameters():   # frames matter as in a trained vocoder
            if name.endswith("weight_g"):
                p.fill_(1.0)
    torch.save({"generator": model.state_dict()}, out_dir / "generator.pt")
    return out_dir / "generator.pt"


def toy_vqmel(path: Path, n_codes: int, seed: int = 0, vocoder: str | None = None) -> Path:
    """A random (untrained) tiny VQ-Mel checkpoint with ``n_codes`` codes: the real decoder
    path (code decoder + HiFi-GAN: ``vocoder``, default the published one), noise for speech."""
    import dataclasses

    from dualspeech.tokenizers.codecs.vqmel import DEFAULT_VOCODER, VQMelArch, VQMelModel
    from dualspeech.utils.io import atomic_torch_save

    torch.manual_seed(seed)
    arch = VQMelArch(channels=16, code_dim=8, codebook_size=n_codes, encoder_blocks=1,
                     decoder_blocks=1)
    atomic_torch_save({"arch": dataclasses.asdict(arch), "vocoder": vocoder or DEFAULT_VOCODER,
                       "mean": torch.full((arch.n_mels,), -5.0), "std": torch.full((arch.n_mels,), 2.0),
                       "model": VQMelModel(arch).state_dict()}, path)
    return Path(path)


def toy_ustokenizer(path: Path, codebook_size: int, seed: int = 0) -> Path:
    """A USTokenizer file (random tiny Whisper, random codebook) that tokenizes real audio."""
    from dualspeech.pretrained import load_whisper
    from dualspeech.tokenizers.ustokenizer.checkpoint import save_tokenizer
    from dualspeech.tokenizers.ustokenizer.config import USTokenizerConfig, VQConfig
    from dualspeech.tokenizers.ustokenizer.model import USTokenizer

    torch.manual_seed(seed)
    cfg = USTokenizerConfig(whisper="random:whisper-debug", pad_to_30s=False, channels=16,
                            vq=VQConfig(codebook_size=codebook_size, dim=8))
    tok = USTokenizer(cfg, load_whisper(cfg.whisper))
    tok.vq.initialized.fill_(True)
    state = {f"tokenizer.{k}": v for k, v in tok.state_dict().items()
             if not k.startswith("frontend.")}
    return save_tokenizer(path, cfg, state, {}, step=0)


TOY_DECODE = {"batch_size": 8, "text": {"strategy": "greedy", "max_new_tokens": 6},
              "speech": {"max_new_tokens": 8, "do_sample": False},
              "acoustic": {"max_len": 16, "top_k": 1}}


def toy_model_dir(root: Path, conf: str = "egs/mini/conf/dualspeechlm_debug.yaml",
                  n_codes: int = 64, decode: dict | None = None, codec: str = "melvq") -> Path:
    """A self-contained model dir (``inference.model_dir``) of a random debug model: USTokenizer,
    codec (``melvq``: tone-trained MelVQ; ``vqmel``: random VQ-Mel + HiFi-GAN) and Resemblyzer
    speaker encoder whose sizes fit it; short greedy decode defaults. What the inference, API
    and server tests and ``bench serve`` / ``bench stream`` load."""
    from dualspeech.inference.model_dir import write_parts
    from dualspeech.models.io import export_model

    root = Path(root)
    model, cfg = toy_model(conf, [f"model.acoustic_gpt.n_codes={n_codes}"])
    out = export_model(model, root / "model")
    if codec == "vqmel":
        section = {"name": "vqmel", "checkpoint": str(toy_vqmel(root / "vqmel.pt", n_codes))}
    elif codec == "melvq":
        toy_codec(root / "melvq.pt", n_codes, griffin_lim_iters=2)
        section = {"name": "melvq", "checkpoint": str(root / "melvq.pt"), "griffin_lim_iters": 2}
    else:
        raise ValueError(f"toy_model_dir: codec {codec!r}; use melvq or vqmel")
    write_parts(out, ustokenizer=toy_ustokenizer(root / "ustokenizer.pt",
                                                 cfg["model"]["speech"]["num_tokens"]),
                codec=section,
                speaker={"name": "resemblyzer"}, decode=decode or TOY_DECODE)
    return out


def toy_decode_runner(model, codec, **overrides):
    """The decode runner the inference tests share: short greedy caps a toy model ends within,
    ``overrides`` on top (``control=...`` gives that control's runner)."""
    from dualspeech.config import build
    from dualspeech.data.dataset import DataConfig
    from dualspeech.inference.config import DecodeConfig
    from dualspeech.inference.controls import make_runner

    cfg = build(DecodeConfig, {"batch_size": 4, "text": {"strategy": "greedy", "max_new_tokens": 6},
                               "speech": {"max_new_tokens": 8, "do_sample": False},
                               "acoustic": {"max_len": 12, "top_k": 1}, **overrides}, "decode")
    return make_runner(model, cfg, codec, DataConfig(max_len=1024))
