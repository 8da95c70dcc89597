"""MelVQ: the fully offline codec used by the demo and CI (no neural codec weights exist offline).

Encoding: log-mel frames at ``frame_rate`` (hop = sample_rate / frame_rate), normalised per mel
bin, assigned to the nearest of ``codebook_size`` k-means centroids trained on corpus audio.
Decoding: each code owns the mean linear STFT magnitude of the training frames assigned to it
(a sharper spectrum than inverting the mel centroid); the magnitudes are turned into a waveform
with Griffin-Lim. Quality is measured by ``python -m dualspeech.bin.bench codec_resynthesis``.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dualspeech.config import ConfigError, build
from dualspeech.tokenizers.codecs.base import CODEC_TRAINERS, Codec, CodecTrainer, register_codec
from dualspeech.tokenizers.kmeans import assign, fit_kmeans
from dualspeech.utils.io import atomic_torch_save, short_hash

log = logging.getLogger(__name__)


@dataclass
class MelVQFeatures:
    """Analysis settings; stored inside the checkpoint so encode and decode always agree."""
    sample_rate: int = 16000
    frame_rate: int = 40
    n_mels: int = 80
    win_hops: int = 4          # analysis window = win_hops * hop (Griffin-Lim needs overlap)
    fmin: float = 0.0
    fmax: float | None = None

    @property
    def hop(self) -> int:
        return self.sample_rate // self.frame_rate

    @property
    def n_fft(self) -> int:
        return self.win_hops * self.hop

    def validate(self) -> None:
        if self.sample_rate % self.frame_rate:
            raise ConfigError(f"melvq: sample_rate {self.sample_rate} must be a multiple of "
                              f"frame_rate {self.frame_rate} (hop = sample_rate / frame_rate)")
        if self.win_hops < 2:
            raise ConfigError("melvq: win_hops must be >= 2 (Griffin-Lim needs overlapping frames)")


@dataclass
class MelVQTrainConfig:
    """``melvq_train`` config section read by ``python -m dualspeech.bin.train_codec``."""
    features: MelVQFeatures = dataclasses.field(default_factory=MelVQFeatures)
    codebook_size: int = 1024
    max_frames: int = 200000   # frames sampled from the corpus for k-means
    max_utterances: int = 2000
    kmeans_iters: int = 100
    seed: int = 0


@dataclass
class MelVQOptions:
    """``codec`` section options for ``name: melvq``."""
    checkpoint: str
    griffin_lim_iters: int = 32


def stft_magnitude(wave: np.ndarray, feats: MelVQFeatures) -> np.ndarray:
    """|STFT| [F, N] with N = ceil(T / hop): one frame per code."""
    import librosa

    n_frames = -(-len(wave) // feats.hop)
    spec = librosa.stft(wave, n_fft=feats.n_fft, hop_length=feats.hop, center=True,
                        window="hann")
    return np.abs(spec[:, :n_frames]).astype(np.float32)


def log_mel(magnitude: np.ndarray, mel_basis: np.ndarray) -> np.ndarray:
    """Frames [N, n_mels] of log mel power."""
    return np.log(mel_basis @ (magnitude ** 2) + 1e-6).T.astype(np.float32)


def mel_filterbank(feats: MelVQFeatures) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=feats.sample_rate, n_fft=feats.n_fft, n_mels=feats.n_mels,
                               fmin=feats.fmin, fmax=feats.fmax).astype(np.float32)


def train_melvq(waves: list[np.ndarray], cfg: MelVQTrainConfig, out_path: str | Path) -> Path:
    """Fit the codebook on ``waves`` (at ``cfg.features.sample_rate``) and save the checkpoint."""
    feats = cfg.features
    feats.validate()
    basis = mel_filterbank(feats)
    rng = np.random.default_rng(cfg.seed)
    mags, mels = [], []
    for wave in waves[: cfg.max_utterances]:
        mag = stft_magnitude(wave, feats)
        mags.append(mag.T)
        mels.append(log_mel(mag, basis))
    if not mels:
        raise ValueError("melvq training got no audio")
    mags, mels = np.concatenate(mags), np.concatenate(mels)
    if len(mels) > cfg.max_frames:
        keep = rng.choice(len(mels), cfg.max_frames, replace=False)
        mags, mels = mags[keep], mels[keep]
    mean, std = mels.mean(0), mels.std(0) + 1e-5
    normed = (mels - mean) / std
    centroids = fit_kmeans(normed, cfg.codebook_size, seed=cfg.seed, max_iter=cfg.kmeans_iters)
    ids = assign(normed, centroids)
    # decoder codebook: mean magnitude of each cluster's frames; empty clusters fall back to the
    # magnitude implied by their mel centroid (pseudo-inverse of the filterbank)
    counts = np.bincount(ids, minlength=cfg.codebook_size)
    sums = np.zeros((cfg.codebook_size, mags.shape[1]), dtype=np.float64)
    np.add.at(sums, ids, mags)
    magnitudes = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
    empty = counts == 0
    if empty.any():
        mel_power = np.exp(centroids[empty] * std + mean)
        magnitudes[empty] = np.sqrt(np.maximum(mel_power @ np.linalg.pinv(basis).T, 0.0))
        log.warning("melvq: %d of %d codes got no training frames", empty.sum(), cfg.codebook_size)
    state = {"features": dataclasses.asdict(feats), "mean": torch.from_numpy(mean),
             "std": torch.from_numpy(std), "centroids": torch.from_numpy(centroids),
             "magnitudes": torch.from_numpy(magnitudes), "counts": torch.from_numpy(counts)}
    atomic_torch_save(state, out_path)
    log.info("melvq: %d codes (%d used) from %d frames -> %s", cfg.codebook_size,
             int((counts > 0).sum()), len(mels), out_path)
    return Path(out_path)


class MelVQCodec(Codec):
    name = "melvq"

    def __init__(self, checkpoint: str | Path, griffin_lim_iters: int = 32):
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"melvq checkpoint {path} not found: train one with "
                                    "`python -m dualspeech.bin.train_codec`")
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing = {"features", "mean", "std", "centroids", "magnitudes"} - set(state)
        if missing:
            raise ValueError(f"{path} is not a melvq checkpoint (missing {sorted(missing)})")
        self.features = MelVQFeatures(**state["features"])
        self.mean, self.std = state["mean"].numpy(), state["std"].numpy()
        self.centroids = state["centroids"]
        self.magnitudes = state["magnitudes"].numpy()
        self.basis = mel_filterbank(self.features)
        self.griffin_lim_iters = griffin_lim_iters
        self.sample_rate = self.features.sample_rate
        self.frame_rate = float(self.features.frame_rate)
        self.codebook_size = int(self.centroids.shape[0])
        self._identity = f"melvq:{path.name}@{short_hash(path)}"

    @property
    def identity(self) -> str:
        return self._identity

    def frames(self, wave: np.ndarray) -> np.ndarray:
        """Normalised log-mel frames [N, n_mels] the codebook is matched against."""
        return (log_mel(stft_magnitude(wave, self.features), self.basis) - self.mean) / self.std

    def _encode(self, waves):
        return [assign(self.frames(w), self.centroids) for w in waves]

    def _decode(self, ids):
        import librosa

        f = self.features
        # a centred STFT of N * hop samples has N + 1 frames: repeat the last code's spectrum
        return [librosa.griffinlim(self.magnitudes[np.append(seq, seq[-1])].T,
                                   n_iter=self.griffin_lim_iters,
                                   hop_length=f.hop, win_length=f.n_fft, n_fft=f.n_fft,
                                   center=True, length=len(seq) * f.hop, random_state=0)
                for seq in ids]


@register_codec("melvq")
def _build(options: dict) -> MelVQCodec:
    opts = build(MelVQOptions, options, where="codec")
    return MelVQCodec(opts.checkpoint, opts.griffin_lim_iters)


CODEC_TRAINERS["melvq"] = CodecTrainer("melvq_train", MelVQTrainConfig,
                                       sample_rate=lambda c: c.features.sample_rate,
                                       max_utterances=lambda c: c.max_utterances,
                                       train=lambda w, c, d: {"checkpoint": str(train_melvq(w, c, d / "melvq.pt"))})
