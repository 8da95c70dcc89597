"""Unit-to-speech vocoder: a HiFi-GAN generator conditioned on discrete units, in the checkpoint
layout of fairseq's CodeHiFiGAN (the vocoder released for mHuBERT 1000-unit k-means and used by
SpeechGPT; the decode path of Baseline-Semantic).

Checkpoint: ``{"generator": state}`` with ``dict.weight`` (unit embedding table),
``conv_pre.*``, ``ups.N.*``, ``resblocks.N.convs1/2.M.*``, ``conv_post.*`` (weight norm as
``weight_g``/``weight_v``), optional ``dur_predictor.*`` (conv1.0, ln1, conv2.0, ln2, proj) and
``spkr.weight`` (multi-speaker); config.json with upsample_rates, num_embeddings,
embedding_dim, model_in_dim, dur_predictor_params, multispkr, sampling_rate. With a duration
predictor the vocoder takes deduplicated units and predicts how many frames each lasts
(``dur_prediction``); without one each unit is one frame of ``prod(upsample_rates)`` samples.

``train_unit_hifigan`` trains one on our own (units, waveform) pairs for the offline path and
tests: generator + embedding + duration predictor, with HiFi-GAN's mel L1 loss and a
multi-resolution STFT loss (no discriminators: a short regression, not a full GAN recipe).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dualspeech.config import ConfigError, build
from dualspeech.tokenizers.codecs.base import CODEC_TRAINERS, Codec, CodecTrainer, register_codec
from dualspeech.tokenizers.codecs.hifigan import HiFiGANConfig, HiFiGANGenerator, MelFrontEnd
from dualspeech.tokenizers.codecs.layers import CheckpointError, load_strict, read_checkpoint
from dualspeech.utils.io import atomic_torch_save, atomic_write_text, short_hash

log = logging.getLogger(__name__)


class DurationPredictor(nn.Module):
    """fairseq's VariancePredictor: two conv + LayerNorm layers, a linear to log(1 + frames)."""

    def __init__(self, in_dim: int, hidden: int, kernel: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv1d(in_dim, hidden, kernel, padding=(kernel - 1) // 2), nn.ReLU())
        self.ln1 = nn.LayerNorm(hidden)
        self.conv2 = nn.Sequential(nn.Conv1d(hidden, hidden, kernel, padding=1), nn.ReLU())
        self.ln2 = nn.LayerNorm(hidden)
        self.proj = nn.Linear(hidden, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N, C] -> [B, N] log(1 + duration)"""
        x = self.dropout(self.ln1(self.conv1(x.transpose(1, 2)).transpose(1, 2)))
        x = self.dropout(self.ln2(self.conv2(x.transpose(1, 2)).transpose(1, 2)))
        return self.proj(x).squeeze(-1)


class UnitHiFiGAN(HiFiGANGenerator):
    """Unit embedding (+ speaker embedding) -> HiFi-GAN generator; names as fairseq's
    CodeGenerator (a subclass of the generator, so generator keys stay at the top level)."""

    def __init__(self, cfg: HiFiGANConfig):
        super().__init__(cfg)
        x = cfg.extra
        try:
            self.dict = nn.Embedding(int(x["num_embeddings"]), int(x["embedding_dim"]))
        except KeyError as e:
            raise ConfigError(f"unit HiFi-GAN config needs num_embeddings and embedding_dim ({e})") from e
        if x.get("f0") or x.get("embedder_params"):
            raise ConfigError("unit HiFi-GAN: f0 and embedder_params conditioning are not supported")
        self.multispkr = bool(x.get("multispkr"))
        if self.multispkr:
            self.spkr = nn.Embedding(int(x.get("num_speakers", 200)), int(x["embedding_dim"]))
        want = int(x["embedding_dim"]) * (2 if self.multispkr else 1)
        if want != cfg.in_dim:
            raise ConfigError(f"unit HiFi-GAN: model_in_dim {cfg.in_dim} must equal embedding_dim "
                              f"(x2 with multispkr) = {want}")
        self.dur_predictor = None
        if x.get("dur_predictor_params"):
            p = x["dur_predictor_params"]
            self.dur_predictor = DurationPredictor(int(p["encoder_embed_dim"]), int(p["var_pred_hidden_dim"]),
                                                   int(p["var_pred_kernel_size"]), float(p["var_pred_dropout"]))

    @property
    def num_units(self) -> int:
        return self.dict.num_embeddings

    def frames(self, units: torch.Tensor, durations: torch.Tensor | None = None,
               speaker: torch.Tensor | None = None) -> torch.Tensor:
        """[1, N] units -> [1, C, F] generator input; ``durations`` [1, N] frames per unit
        (given, or predicted when there is a duration predictor, else 1 each)."""
        x = self.dict(units)
        if durations is None and self.dur_predictor is not None:
            if units.shape[0] != 1:
                raise ValueError("duration prediction works on one utterance at a time")
            log_d = self.dur_predictor(x)
            durations = torch.clamp(torch.round(torch.exp(log_d) - 1).long(), min=1)
        x = x.transpose(1, 2)
        if durations is not None:
            x = torch.repeat_interleave(x, durations.view(-1), dim=2)
        if self.multispkr:
            if speaker is None:
                raise ValueError("this unit vocoder is multi-speaker: pass a speaker id")
            x = torch.cat([x, self.spkr(speaker.view(1, 1)).transpose(1, 2).expand(-1, -1, x.shape[2])], 1)
        return x

    def synthesize(self, units: torch.Tensor, speaker: torch.Tensor | None = None) -> torch.Tensor:
        return self(self.frames(units, speaker=speaker))


def load_unit_hifigan(checkpoint: str | Path, config: str | Path,
                      allow_unsafe_pickle: bool = False) -> UnitHiFiGAN:
    """Strict load of a fairseq CodeHiFiGAN checkpoint (``{"generator": state}``) + config.json."""
    cfg = HiFiGANConfig.from_json(config)
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"unit HiFi-GAN checkpoint {path} not found (e.g. the fairseq "
                                "mHuBERT CodeHiFiGAN g_00500000, or train one with "
                                "`python -m dualspeech.bin.train_codec`)")
    obj = read_checkpoint(path, allow_unsafe_pickle, "unit HiFi-GAN")
    if not isinstance(obj, dict) or not isinstance(obj.get("generator"), dict):
        raise CheckpointError(f"{path}: expected a fairseq CodeHiFiGAN checkpoint with a "
                              "'generator' state dict")
    model = UnitHiFiGAN(cfg)
    load_strict(model, obj["generator"], f"{path} does not match {config}",
                "is this the CodeHiFiGAN checkpoint of this config.json?")
    return model.eval()


def dedup(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of equal units -> (unit per run, run lengths)."""
    units = np.asarray(units)
    starts = np.flatnonzero(np.r_[True, units[1:] != units[:-1]])
    return units[starts], np.diff(np.r_[starts, len(units)])


@dataclass
class UnitHiFiGANTrainConfig:
    """``unit_hifigan_train`` section: the architecture (written as a fairseq config.json) and
    a short regression training run."""
    num_embeddings: int = 500
    embedding_dim: int = 128
    sampling_rate: int = 16000
    upsample_rates: tuple[int, ...] = (5, 4, 4, 2, 2)   # product = samples per unit (50 Hz at 16 kHz)
    upsample_kernel_sizes: tuple[int, ...] = (11, 8, 8, 4, 4)
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    duration_prediction: bool = True
    steps: int = 1000
    batch_size: int = 4
    segment_units: int = 32
    lr: float = 2e-4
    max_utterances: int = 2000
    seed: int = 0

    def fairseq_config(self) -> dict:
        cfg = {"resblock": "1", "upsample_rates": list(self.upsample_rates),
               "upsample_kernel_sizes": list(self.upsample_kernel_sizes),
               "upsample_initial_channel": self.upsample_initial_channel,
               "resblock_kernel_sizes": list(self.resblock_kernel_sizes),
               "resblock_dilation_sizes": [list(d) for d in self.resblock_dilation_sizes],
               "num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
               "model_in_dim": self.embedding_dim, "sampling_rate": self.sampling_rate,
               "code_hop_size": int(np.prod(self.upsample_rates)), "f0": False, "multispkr": False,
               "n_fft": 1024, "hop_size": 256, "win_size": 1024, "num_mels": 80,
               "fmin": 0, "fmax": 8000}
        if self.duration_prediction:
            cfg["dur_predictor_params"] = {"encoder_embed_dim": self.embedding_dim,
                                           "var_pred_hidden_dim": self.embedding_dim,
                                           "var_pred_kernel_size": 3, "var_pred_dropout": 0.5}
        return cfg


def _stft_loss(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Multi-resolution spectral convergence + log-magnitude L1."""
    loss = 0.0
    for n_fft, hop in ((512, 128), (1024, 256), (256, 64)):
        win = torch.hann_window(n_fft, device=y.device)
        sy = torch.stft(y, n_fft, hop, window=win, return_complex=True).abs().clamp(min=1e-5)
        sx = torch.stft(x, n_fft, hop, window=win, return_complex=True).abs().clamp(min=1e-5)
        loss = loss + torch.norm(sx - sy) / torch.norm(sx).clamp(min=1e-5) + F.l1_loss(sy.log(), sx.log())
    return loss / 3


def train_unit_hifigan(pairs: list[tuple[np.ndarray, np.ndarray]], cfg: UnitHiFiGANTrainConfig,
                       out_dir: str | Path) -> tuple[Path, Path]:
    """Train on (units at sampling_rate / hop per second, wave at sampling_rate) pairs; writes
    ``out_dir/generator.pt`` ({"generator": state}, the fairseq layout) and ``config.json``."""
    out_dir = Path(out_dir)
    fcfg = cfg.fairseq_config()
    hcfg = HiFiGANConfig.from_dict(fcfg, "unit_hifigan_train")
    hop = hcfg.hop
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = []
    for units, wave in pairs:
        units = np.asarray(units, dtype=np.int64)
        if units.size and units.max() >= cfg.num_embeddings:
            raise ValueError(f"unit {units.max()} >= num_embeddings {cfg.num_embeddings}")
        n = min(len(units), len(wave) // hop)
        if n >= 2:
            data.append((torch.from_numpy(units[:n]), torch.from_numpy(np.asarray(wave[: n * hop], np.float32))))
    if not data:
        raise ValueError("unit HiFi-GAN training got no usable (units, wave) pairs")
    model = UnitHiFiGAN(hcfg).train()
    mel = MelFrontEnd(HiFiGANConfig.from_dict({**fcfg, "model_in_dim": 80}))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.8, 0.99))
    seg, t0 = cfg.segment_units, time.perf_counter()
    for step in range(cfg.steps):
        idx = torch.randint(len(data), (cfg.batch_size,), generator=gen).tolist()
        units, waves, dur_loss = [], [], 0.0
        for i in idx:
            u, w = data[i]
            s = int(torch.randint(max(1, len(u) - seg + 1), (1,), generator=gen))
            uu, ww = u[s:s + seg], w[s * hop:(s + seg) * hop]
            pad = seg - len(uu)   # short clips: repeat-pad the units, zero-pad the audio
            units.append(F.pad(uu, (0, pad), value=int(uu[-1])))
            waves.append(F.pad(ww, (0, pad * hop)))
            if model.dur_predictor is not None:   # durations of the deduplicated runs of the clip
                runs, lengths = dedup(u.numpy())
                pred = model.dur_predictor(model.dict(torch.from_numpy(runs)[None]))[0]
                dur_loss = dur_loss + F.mse_loss(pred, torch.log1p(torch.from_numpy(lengths).float()))
        x, y = torch.stack(waves), model(model.dict(torch.stack(units)).transpose(1, 2))
        loss = F.l1_loss(mel(y), mel(x)) + _stft_loss(y, x) + dur_loss / len(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        if step % 100 == 0 or step == cfg.steps - 1:
            log.info("unit_hifigan step %d/%d: loss %.4f (%.0f s)", step, cfg.steps, loss.item(),
                     time.perf_counter() - t0)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt, cfg_path = out_dir / "generator.pt", out_dir / "config.json"
    atomic_torch_save({"generator": model.state_dict()}, ckpt)
    atomic_write_text(cfg_path, json.dumps(fcfg, indent=2) + "\n")
    return ckpt, cfg_path


@dataclass
class UnitHiFiGANOptions:
    """``codec`` section options for ``name: unit_hifigan``."""
    checkpoint: str                  # fairseq CodeHiFiGAN generator checkpoint
    config: str                      # its config.json
    dur_prediction: bool = True      # the units are deduplicated: predict their durations
    speaker: int = 0                 # speaker id of a multi-speaker vocoder
    allow_unsafe_pickle: bool = False


class UnitHiFiGANCodec(Codec):
    """Decode-only codec: ids are discrete speech units (e.g. HuBERT k-means) made by the unit
    tokenizer, not by this class; ``encode`` is refused."""
    name = "unit_hifigan"
    units_from = "a unit tokenizer (e.g. `python -m dualspeech.bin.extract_hubert`)"

    def __init__(self, model: UnitHiFiGAN, identity: str, dur_prediction: bool = True, speaker: int = 0):
        self.model, self._identity = model.eval(), identity
        self.dur_prediction = dur_prediction and model.dur_predictor is not None
        self.speaker = speaker
        self.sample_rate = int(model.cfg.sampling_rate)
        self.frame_rate = self.sample_rate / model.cfg.hop
        self.codebook_size = model.num_units

    @property
    def identity(self) -> str:
        return self._identity

    @torch.inference_mode()
    def _decode(self, ids):
        out = []
        spk = torch.tensor([self.speaker], device=self.device) if self.model.multispkr else None
        for seq in ids:
            units = torch.from_numpy(dedup(seq)[0] if self.dur_prediction else seq)[None].to(self.device)
            durations = None if self.dur_prediction else torch.ones_like(units)
            x = self.model.frames(units, durations, spk)
            out.append(self.model(x)[0].cpu().numpy())
        return out


@register_codec("unit_hifigan")
def _build(options: dict) -> UnitHiFiGANCodec:
    opts = build(UnitHiFiGANOptions, options, where="codec")
    model = load_unit_hifigan(opts.checkpoint, opts.config, opts.allow_unsafe_pickle)
    identity = f"unit_hifigan:{Path(opts.checkpoint).name}@{short_hash(opts.checkpoint)}"
    return UnitHiFiGANCodec(model, identity, opts.dur_prediction, opts.speaker)



def _train_for_codec(pairs, cfg: UnitHiFiGANTrainConfig, out_dir: Path) -> dict:
    ckpt, config = train_unit_hifigan(pairs, cfg, out_dir)
    return {"checkpoint": str(ckpt), "config": str(config)}


# trained on the HuBERT k-means units that extract_hubert stores (50 Hz at 16 kHz = hop 320)
CODEC_TRAINERS["unit_hifigan"] = CodecTrainer(
    "unit_hifigan_train", UnitHiFiGANTrainConfig, sample_rate=lambda c: c.sampling_rate,
    max_utterances=lambda c: c.max_utterances, train=_train_for_codec, units_field="hubert_tokens")
