"""The codec interface every acoustic-token backend implements, and the registry behind
``build_codec(cfg)``.

A codec turns waveforms into integer id sequences at a fixed frame rate and back. DualSpeechLM's
AcousticGPT only sees ``codebook_size`` and ``frame_rate``; which network produced the ids
(WavTokenizer, a transformers codec, the offline MelVQ) is a config choice.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from dualspeech.config import ConfigError
from dualspeech.utils.registry import registrar

CODECS: dict[str, Callable[[dict], "Codec"]] = {}


# @register_codec(name): ``factory(options: dict) -> Codec`` under the config name ``codec.name``
register_codec = registrar(CODECS, "codec")


@dataclass(frozen=True)
class CodecTrainer:
    """How ``python -m dualspeech.bin.train_codec`` trains a backend: the config section with
    its settings, their dataclass, the sample rate it wants its training audio at, and
    ``train(examples, cfg, out_dir) -> codec options`` (e.g. ``{"checkpoint": ...}``) that
    replace those of the config's ``codec`` section. ``examples`` are waves, or (units, wave)
    pairs when ``units_field`` names the cut field holding the units (a unit vocoder)."""
    section: str
    config_cls: type
    sample_rate: Callable[[object], int]
    max_utterances: Callable[[object], int]
    train: Callable[[list, object, Path], dict]
    units_field: str | None = None


CODEC_TRAINERS: dict[str, CodecTrainer] = {}


def build_codec(cfg: dict) -> "Codec":
    """``cfg`` is the ``codec`` config section: ``{"name": <backend>, **backend options}``.
    Backends register when the ``dualspeech.tokenizers.codecs`` package is imported."""
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise ConfigError(f"codec: expected a mapping with a 'name' key, got {cfg!r}")
    options = dict(cfg)
    name = options.pop("name")
    if name not in CODECS:
        raise ConfigError(f"codec.name: unknown codec {name!r}; known: {sorted(CODECS)}")
    return CODECS[name](options)


def as_wave_list(waves, lengths: Sequence[int] | None = None) -> list[np.ndarray]:
    """Accept a list of 1-D waves, or a padded [B, T] array/tensor plus per-row lengths."""
    if isinstance(waves, torch.Tensor):
        waves = waves.detach().cpu().numpy()
    if isinstance(waves, np.ndarray):
        if waves.ndim == 1:
            waves = waves[None]
        if waves.ndim != 2:
            raise ValueError(f"expected a [B, T] padded batch, got shape {waves.shape}")
        if lengths is None:
            lengths = [waves.shape[1]] * waves.shape[0]
        if len(lengths) != waves.shape[0]:
            raise ValueError(f"{len(lengths)} lengths for a batch of {waves.shape[0]} waves")
        waves = [row[: int(n)] for row, n in zip(waves, lengths)]
    elif lengths is not None:
        raise ValueError("lengths only go with a padded [B, T] batch, not a list of waves")
    out = []
    for i, w in enumerate(waves):
        w = np.asarray(w, dtype=np.float32)
        if w.ndim != 1 or w.size == 0:
            raise ValueError(f"wave {i}: expected a non-empty 1-D mono signal, got shape {w.shape}")
        out.append(w)
    return out


@dataclass(frozen=True)
class LocalSynthesis:
    """A decoder split in two: ``features(ids) -> [1, C, F]`` sees the whole sequence (cheap),
    ``synthesize(features[..., a:b]) -> (b - a) * hop samples`` is local: a sample depends only
    on the ``context`` feature frames either side of its own (its receptive field), so windows
    with that much context give the samples of one-shot decoding."""
    features: Callable[[np.ndarray], torch.Tensor]
    synthesize: Callable[[torch.Tensor], np.ndarray]
    hop: int
    context: int


class DecodeOnlyCodecError(NotImplementedError):
    """``encode`` asked of a codec that by design only decodes (a vocoder of units that another
    tokenizer makes): a refusal with directions, not a missing implementation."""


class Codec(abc.ABC):
    """Waveform <-> integer ids. ``encode`` returns one int64 array per wave: shape [N] for a
    single codebook, [N, K] when ``num_codebooks`` K > 1; N = frames at ``frame_rate``."""

    name: str
    sample_rate: int
    frame_rate: float
    codebook_size: int
    num_codebooks: int = 1
    device = torch.device("cpu")
    units_from: str | None = None   # decode-only backends (vocoders): what makes their ids
    # speaker-conditioned decoders (their ids carry no voice): whose embeddings ``decode``
    # takes; None: the ids carry the voice and ``speakers`` is not needed
    speaker_identity: str | None = None
    speaker_config: dict | None = None

    def to(self, device) -> "Codec":
        """Run the codec's network (``self.model``, if it has one) on ``device``."""
        self.device = torch.device(device)
        if isinstance(getattr(self, "model", None), torch.nn.Module):
            self.model.to(self.device)
        return self

    def encode(self, waves, lengths: Sequence[int] | None = None) -> list[np.ndarray]:
        """Waves at ``sample_rate`` (list of 1-D arrays, or padded [B, T] batch + lengths).
        Encoding backends define ``_encode``; a decode-only one names ``units_from`` instead."""
        if self.units_from:
            raise DecodeOnlyCodecError(f"{self.identity} only decodes: its ids come from "
                                       f"{self.units_from}")
        return [np.asarray(ids, dtype=np.int64) for ids in self._encode(as_wave_list(waves, lengths))]

    def decode(self, ids: Sequence[np.ndarray], speakers=None) -> list[np.ndarray]:
        """One float32 waveform at ``sample_rate`` per id array. ``speakers``: one embedding
        per id array (made by ``speaker_identity``'s encoder, rows may be None) for a
        speaker-conditioned codec, which speaks with its training mean voice without them;
        codecs whose ids carry the voice ignore it."""
        checked = [self.check_ids(seq, i) for i, seq in enumerate(ids)]
        if self.speaker_identity is None:
            waves = self._decode(checked)
        else:
            waves = self._decode(checked, self.check_speakers(speakers, len(checked)))
        return [np.asarray(w, dtype=np.float32) for w in waves]

    def check_speakers(self, speakers, n: int) -> list:
        """``speakers`` as ``n`` embeddings (or Nones), or a ValueError saying what is wrong."""
        if speakers is None:
            return [None] * n
        rows = [None if s is None else np.asarray(s, dtype=np.float32) for s in speakers]
        if len(rows) != n:
            raise ValueError(f"{self.identity}: {len(rows)} speaker embeddings for {n} id arrays")
        for i, r in enumerate(rows):
            if r is not None and (r.ndim != 1 or not np.isfinite(r).all()):
                raise ValueError(f"speaker embedding {i}: expected a finite 1-D vector, got {r.shape}")
        return rows

    def check_ids(self, seq, i: int = 0) -> np.ndarray:
        """``seq`` as int64 ids this codec decodes, or a ValueError saying what is wrong."""
        seq = np.asarray(seq)
        want = 1 if self.num_codebooks == 1 else 2
        if seq.ndim != want or seq.shape[0] == 0 or not np.issubdtype(seq.dtype, np.integer):
            raise ValueError(f"ids {i}: expected a non-empty integer array with {want} dim(s), "
                             f"got {seq.dtype} {seq.shape}")
        if seq.min() < 0 or seq.max() >= self.codebook_size:
            raise ValueError(f"ids {i}: values must lie in [0, {self.codebook_size}), "
                             f"got [{seq.min()}, {seq.max()}]")
        return seq.astype(np.int64)

    def local_synthesis(self, speaker=None) -> "LocalSynthesis | None":
        """Where this codec's decoder becomes local, for exact chunked decoding (streaming);
        None: every sample may depend on every frame (decode whole utterances). ``speaker``:
        the embedding a speaker-conditioned codec decodes with (as in ``decode``)."""
        return None

    @abc.abstractmethod
    def _decode(self, ids: list[np.ndarray]) -> list[np.ndarray]:
        ...

    @property
    @abc.abstractmethod
    def identity(self) -> str:
        """``<backend>:<checkpoint name>@<content hash>``: recorded next to extracted tokens."""

    def describe(self) -> dict:
        return {"codec": self.identity, "sample_rate": self.sample_rate,
                "frame_rate": self.frame_rate, "codebook_size": self.codebook_size,
                "num_codebooks": self.num_codebooks}
