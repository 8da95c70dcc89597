"""Unit-Mel: the offline codec that carries voices it never heard. Its ids say what is spoken,
the speaker embedding says who speaks.

A mel codebook (``vqmel``) must spend its 10 bits a frame on content, pitch and timbre at once,
so a voice outside its training set falls between codes and comes back garbled. Here the ids are
k-means units of frozen Whisper encoder features (speaker-invariant by training: they are what
Whisper transcribes from), resampled onto the vocoder's grid (one id per two HiFi-GAN mel frames:
43.07 ids/s at 22.05 kHz, the grid of ``vqmel``). Decoding is conditioned on a speaker embedding
(Resemblyzer by default, the demo's AcousticGPT condition): a conv decoder maps the unit
centroids plus the embedding to normalised mel frames, and the HiFi-GAN vocoder makes the wave.
Without an embedding the decoder speaks with the mean voice of its training data.
Quality: ``python -m dualspeech.bin.bench codec_resynthesis``; recipe: ``egs/codec``.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dualspeech.config import ConfigError, build
from dualspeech.tokenizers.codecs.base import (CODEC_TRAINERS, CodecTrainer, LocalSynthesis,
                                              register_codec)
from dualspeech.tokenizers.codecs.layers import CheckpointError, load_strict, read_checkpoint
from dualspeech.tokenizers.codecs.hifigan import (HiFiGANConfig, MelFrontEnd, resolve_vocoder)
from dualspeech.tokenizers.codecs.vqmel import (DEFAULT_VOCODER, MelVocoderCodec, ResBlock,
                                                pad_frames, perturbed, vocoder_rate)
from dualspeech.tokenizers.kmeans import assign, fit_kmeans
from dualspeech.utils.io import atomic_torch_save, short_hash, state_hash

log = logging.getLogger(__name__)
WHISPER_SR = 16000


@dataclass
class UnitMelArch:
    """Network sizes and the unit source; stored in the checkpoint."""
    whisper: str = "whisper:tiny.en"   # whose encoder features the units cluster
    n_mels: int = 80
    stride: int = 2                    # mel frames per id
    codebook_size: int = 1024
    spk_dim: int = 256
    channels: int = 256
    pre_blocks: int = 4                # residual blocks at the id rate
    post_blocks: int = 4               # residual blocks at the mel rate
    kernel: int = 5


@dataclass
class UnitMelTrainConfig:
    """``unitmel_train`` section read by ``python -m dualspeech.bin.train_codec``."""
    arch: UnitMelArch = dataclasses.field(default_factory=UnitMelArch)
    vocoder: str = DEFAULT_VOCODER
    speaker: dict = dataclasses.field(default_factory=lambda: {"name": "resemblyzer"})
    steps: int = 3000
    batch_size: int = 16
    segment_frames: int = 128          # mel frames per training crop (a multiple of stride)
    lr: float = 2e-3
    max_utterances: int = 20000
    kmeans_frames: int = 200000        # unit frames the k-means sees
    speed_perturb: list[float] = dataclasses.field(default_factory=lambda: [1.0])
    log_every: int = 100
    threads: int = 0                   # torch threads while training (0: leave as is)
    seed: int = 0


class UnitMelDecoder(nn.Module):
    """ids [B, N] + speaker [B, spk_dim] -> normalised mel [B, n_mels, N * stride]. The unit
    centroids (standardised Whisper features) are its fixed input table, so units that sound
    alike start alike."""

    def __init__(self, arch: UnitMelArch, feature_dim: int):
        super().__init__()
        a, ch, k = arch, arch.channels, arch.kernel
        self.arch = arch
        self.register_buffer("centroids", torch.zeros(a.codebook_size, feature_dim))
        self.inp = nn.Conv1d(feature_dim, ch, k, padding=k // 2)
        self.spk_pre, self.spk_post = nn.Linear(a.spk_dim, ch), nn.Linear(a.spk_dim, ch)
        self.pre = nn.Sequential(*[ResBlock(ch, k, 2 ** (i % 4)) for i in range(a.pre_blocks)])
        self.up = nn.ConvTranspose1d(ch, ch, 2 * a.stride, stride=a.stride, padding=a.stride // 2)
        self.post = nn.Sequential(*[ResBlock(ch, k, 2 ** (i % 4)) for i in range(a.post_blocks)],
                                  nn.GroupNorm(1, ch), nn.GELU(), nn.Conv1d(ch, a.n_mels, k, padding=k // 2))

    def forward(self, ids: torch.Tensor, spk: torch.Tensor) -> torch.Tensor:
        n = ids.shape[-1]
        x = self.inp(self.centroids[ids].transpose(1, 2)) + self.spk_pre(spk)[..., None]
        x = self.up(self.pre(x))[..., : n * self.arch.stride] + self.spk_post(spk)[..., None]
        return self.post(x)


class WhisperUnits:
    """Frozen Whisper encoder features of 16 kHz waves, resampled onto the codec's id grid and
    standardised per dimension (``mean`` / ``std`` set after the first fit)."""

    def __init__(self, spec: str, device: str | torch.device = "cpu"):
        from dualspeech.pretrained import load_whisper
        from dualspeech.tokenizers.ustokenizer.frontend import WhisperFrontend

        model = load_whisper(spec, device=str(device))
        self.frontend = WhisperFrontend(model.encoder, model.dims.n_mels, pad_to_30s=False)
        self.dim = self.frontend.width
        self.identity = f"{spec}@{state_hash(model.encoder.state_dict())}"
        self.mean = self.std = None

    def to(self, device) -> "WhisperUnits":
        self.frontend.to(device)
        return self

    @torch.no_grad()
    def __call__(self, waves16k: list[np.ndarray], n_ids: list[int], batch: int = 8) -> list[torch.Tensor]:
        """[n_ids[i], dim] features per wave: the 50 Hz encoder frames linearly interpolated at
        the centres of the codec's frames."""
        from dualspeech.tokenizers.ustokenizer.frontend import MIN_SAMPLES

        device = next(self.frontend.encoder.parameters()).device
        out: list[torch.Tensor | None] = [None] * len(waves16k)
        order = sorted(range(len(waves16k)), key=lambda i: len(waves16k[i]))
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            ws = [torch.from_numpy(np.pad(waves16k[i], (0, max(0, MIN_SAMPLES - len(waves16k[i])))))
                  .float().to(device) for i in idx]
            feats, lengths = self.frontend(ws)
            for j, i in enumerate(idx):
                f = feats[j, : int(lengths[j])].T[None]
                f = F.interpolate(f, size=n_ids[i], mode="linear", align_corners=False)[0].T
                out[i] = f if self.mean is None else (f - self.mean) / self.std
        return out


def n_ids(num_samples: int, hop: int, stride: int) -> int:
    """Ids of a wave: one per ``stride`` mel frames, the last one padded (as ``vqmel``)."""
    return max(1, math.ceil((num_samples // hop) / stride))


def _speaker_encoder(cfg: dict, device="cpu"):
    from dualspeech.tokenizers.speaker import build_speaker_encoder

    return build_speaker_encoder(dict(cfg), str(device))


def train_unitmel(waves: list[np.ndarray], cfg: UnitMelTrainConfig, out_path: str | Path) -> Path:
    """Fit the units and train the decoder on ``waves`` (at the vocoder's rate); save atomically."""
    from dualspeech.audio import resample

    a = cfg.arch
    if cfg.segment_frames % a.stride:
        raise ConfigError(f"unitmel_train.segment_frames ({cfg.segment_frames}) must be a multiple "
                          f"of arch.stride ({a.stride})")
    if not waves:
        raise ValueError("unitmel training got no audio")
    voc_cfg = HiFiGANConfig.from_json(resolve_vocoder(cfg.vocoder)[1])
    if voc_cfg.in_dim != a.n_mels:
        raise ConfigError(f"unitmel: arch.n_mels {a.n_mels} != the vocoder's num_mels {voc_cfg.in_dim}")
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        t0 = time.perf_counter()
        sr, front = voc_cfg.sampling_rate, MelFrontEnd(voc_cfg)
        waves = list(perturbed(waves[: cfg.max_utterances], cfg.speed_perturb, sr))
        with torch.no_grad():
            mels = [front(torch.from_numpy(w)[None])[0] for w in waves]
        counts = [n_ids(len(w), voc_cfg.hop, a.stride) for w in waves]
        mels = [pad_frames(m, a.stride)[:, : n * a.stride] for m, n in zip(mels, counts)]
        allf = torch.cat(mels, 1)
        mean, std = allf.mean(1, keepdim=True), allf.std(1, keepdim=True) + 1e-5
        mels = [(m - mean) / std for m in mels]
        waves16 = [resample(w, sr, WHISPER_SR) for w in waves]
        log.info("unitmel: %d utterances (%.0f min), mel done (%.0f s)", len(waves),
                 sum(map(len, waves)) / sr / 60, time.perf_counter() - t0)
        units = WhisperUnits(a.whisper)
        feats = units(waves16, counts)
        flat = torch.cat(feats)
        units.mean, units.std = flat.mean(0), flat.std(0) + 1e-5
        feats = [(f - units.mean) / units.std for f in feats]
        log.info("unitmel: %d Whisper frames of dim %d (%.0f s)", len(flat), units.dim,
                 time.perf_counter() - t0)
        flat = torch.cat(feats)
        pick = torch.randperm(len(flat), generator=gen)[: cfg.kmeans_frames]
        centroids = torch.from_numpy(fit_kmeans(flat[pick].numpy(), a.codebook_size, seed=cfg.seed))
        ids = [torch.from_numpy(assign(f, centroids)) for f in feats]
        spk = _speaker_encoder(cfg.speaker)
        spks = torch.from_numpy(spk.embed(waves16))
        log.info("unitmel: k-means %d units, %d codes in use, speaker embeddings (%.0f s)",
                 a.codebook_size, int(torch.cat(ids).unique().numel()), time.perf_counter() - t0)
        model = UnitMelDecoder(a, units.dim)
        model.centroids.copy_(centroids)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * s / cfg.steps)))
        seg = cfg.segment_frames // a.stride
        lengths = torch.tensor([len(i) for i in ids])
        weights = lengths.float() / lengths.sum()
        model.train()
        for step in range(cfg.steps):
            pick = torch.multinomial(weights, cfg.batch_size, replacement=True, generator=gen).tolist()
            xb, yb = [], []
            for i in pick:
                n = int(lengths[i])
                start = int(torch.randint(max(1, n - seg + 1), (1,), generator=gen))
                x, y = ids[i][start:start + seg], mels[i][:, start * a.stride:(start + seg) * a.stride]
                if len(x) < seg:     # short clips: repeat the last id / frame
                    x = torch.cat([x, x[-1:].expand(seg - len(x))])
                    y = torch.cat([y, y[:, -1:].expand(-1, seg * a.stride - y.shape[1])], 1)
                xb.append(x)
                yb.append(y)
            x, y = torch.stack(xb), torch.stack(yb)
            recon = model(x, spks[pick])
            loss = F.l1_loss(recon, y) + F.mse_loss(recon, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            if step % cfg.log_every == 0 or step == cfg.steps - 1:
                log.info("unitmel step %d/%d: recon %.4f (%.0f s)", step, cfg.steps, loss.item(),
                         time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    state = {"arch": dataclasses.asdict(a), "vocoder": cfg.vocoder, "mean": mean[:, 0],
             "std": std[:, 0], "unit_mean": units.mean, "unit_std": units.std,
             "whisper": units.identity, "speaker": dict(cfg.speaker), "speaker_identity": spk.identity,
             "speaker_mean": F.normalize(spks.mean(0), dim=0), "model": model.state_dict()}
    atomic_torch_save(state, out_path)
    log.info("unitmel: %d steps in %.0f s -> %s", cfg.steps, time.perf_counter() - t0, out_path)
    return Path(out_path)


@dataclass
class UnitMelOptions:
    """``codec`` section options for ``name: unitmel``."""
    checkpoint: str
    vocoder: str | None = None       # default: the vocoder the codec was trained for


_STATE_KEYS = {"arch", "vocoder", "mean", "std", "unit_mean", "unit_std", "whisper", "speaker",
               "speaker_identity", "speaker_mean", "model"}


class UnitMelCodec(MelVocoderCodec):
    name = "unitmel"

    def __init__(self, checkpoint: str | Path, vocoder: str | None = None):
        from dualspeech.pretrained import resolve

        path = resolve(checkpoint)     # a path, or the shipped asset:codec_unitmel.pt (sha256 checked)
        if not path.is_file():
            raise FileNotFoundError(f"unitmel checkpoint {path} is not a file: train one with "
                                    "`python -m dualspeech.bin.train_codec` (egs/codec/run.sh)")
        state = read_checkpoint(path, False, "unitmel")
        missing = _STATE_KEYS - set(state) if isinstance(state, dict) else _STATE_KEYS
        if missing:
            raise CheckpointError(f"{path} is not a unitmel checkpoint (missing {sorted(missing)})")
        self.arch = UnitMelArch(**state["arch"])
        self.model = UnitMelDecoder(self.arch, state["unit_mean"].numel())
        load_strict(self.model, state["model"], str(path), "not a unitmel checkpoint of this "
                    "version: retrain it (egs/codec/run.sh)")
        self.model.eval()
        self.unit_mean, self.unit_std, self.whisper = state["unit_mean"], state["unit_std"], state["whisper"]
        self.speaker_config, self.speaker_identity = state["speaker"], state["speaker_identity"]
        self.speaker_mean = state["speaker_mean"]
        self._init_vocoder(state, vocoder, self.arch.stride)
        self.codebook_size = self.arch.codebook_size
        self._units: WhisperUnits | None = None
        self._identity = f"unitmel:{path.name}@{short_hash(path)}"

    @property
    def identity(self) -> str:
        return self._identity

    def to(self, device) -> "UnitMelCodec":
        super().to(device)
        if self._units is not None:
            self._units.to(self.device)
        return self

    def units(self) -> WhisperUnits:
        """The Whisper encoder, loaded on first encode (decoding does not need it); refused when
        its weights are not those the units were fitted on."""
        if self._units is None:
            units = WhisperUnits(self.arch.whisper, self.device)
            if units.identity != self.whisper:
                raise ValueError(f"{self.identity}: its units were fitted on {self.whisper}, but "
                                 f"{self.arch.whisper} resolves to {units.identity}")
            units.mean, units.std = self.unit_mean.to(self.device), self.unit_std.to(self.device)
            self._units = units
        return self._units

    @torch.inference_mode()
    def _encode(self, waves):
        from dualspeech.audio import resample

        counts = [n_ids(len(w), self.vocoder.cfg.hop, self.arch.stride) for w in waves]
        feats = self.units()([resample(w, self.sample_rate, WHISPER_SR) for w in waves], counts)
        return [assign(f, self.model.centroids) for f in feats]

    def _speaker(self, emb) -> torch.Tensor:
        e = self.speaker_mean if emb is None else torch.as_tensor(np.asarray(emb, dtype=np.float32))
        if e.shape != (self.arch.spk_dim,):
            raise ValueError(f"{self.identity}: speaker embeddings of {self.speaker_identity} have "
                             f"{self.arch.spk_dim} dims, got shape {tuple(e.shape)}")
        return e.to(self.device)[None]

    def _mel(self, seq: np.ndarray, emb) -> torch.Tensor:
        return self.model(torch.from_numpy(seq)[None].to(self.device), self._speaker(emb))

    @torch.inference_mode()
    def _decode(self, ids, speakers):
        return [self._vocode(self._mel(seq, emb)) for seq, emb in zip(ids, speakers)]

    def local_synthesis(self, speaker=None) -> LocalSynthesis:
        return self._local(lambda ids: self._mel(self.check_ids(ids), speaker))


@register_codec("unitmel")
def _build(options: dict) -> UnitMelCodec:
    opts = build(UnitMelOptions, options, where="codec")
    return UnitMelCodec(opts.checkpoint, opts.vocoder)


CODEC_TRAINERS["unitmel"] = CodecTrainer(
    "unitmel_train", UnitMelTrainConfig, max_utterances=lambda c: c.max_utterances,
    train=lambda w, c, d: {"checkpoint": str(train_unitmel(w, c, d / "unitmel.pt"))},
    sample_rate=vocoder_rate)
