"""HuBERT k-means tokens: the semantic tokens of the paper's baselines (DualSpeechLM-HuBERT and
Baseline-Semantic). Hidden states of one layer of a transformers ``HubertModel`` (loaded from a
local directory) are assigned to the nearest of ``num_clusters`` k-means centroids trained on a
corpus subset. The frame rate follows the model's convolutional strides (50 Hz for 16 kHz
HuBERT) and is stored with the centroids.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dualspeech.config import ConfigError
from dualspeech.tokenizers.kmeans import assign, fit_kmeans
from dualspeech.utils.io import atomic_torch_save, short_hash

log = logging.getLogger(__name__)


@dataclass
class HubertConfig:
    """``hubert`` config section."""
    model: str                 # local directory of a transformers HubertModel (save_pretrained)
    kmeans: str                # centroids file (written by extract_hubert --train-cuts)
    layer: int = 6             # hidden_states index: 0 = CNN features after projection, L = last
    num_clusters: int = 500
    max_utterances: int = 1000  # k-means training subset
    max_frames: int = 200000
    seed: int = 0


def _weights_file(model_dir: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / name).is_file():
            return model_dir / name
    raise FileNotFoundError(f"{model_dir}: no model.safetensors / pytorch_model.bin; expected a "
                            "transformers HubertModel directory (e.g. facebook/hubert-base-ls960 "
                            "saved with save_pretrained)")


class HubertFeatures:
    """Layer-``layer`` hidden states of a local HubertModel, one utterance at a time."""

    def __init__(self, model_dir: str | Path, layer: int, device: str = "cpu"):
        from transformers import HubertModel

        model_dir = Path(model_dir)
        weights = _weights_file(model_dir)
        self.model = HubertModel.from_pretrained(model_dir, local_files_only=True).eval().to(device)
        n_layers = self.model.config.num_hidden_layers
        if not 0 <= layer <= n_layers:
            raise ConfigError(f"hubert.layer must be in 0..{n_layers} for {model_dir}, got {layer}")
        self.layer, self.device = layer, device
        self.sample_rate = 16000
        self.frame_rate = self.sample_rate / math.prod(self.model.config.conv_stride)
        self.identity = f"hubert:{model_dir.name}@{short_hash(weights)}:L{layer}"
        self.min_samples = math.prod(self.model.config.conv_stride) * 2

    @torch.inference_mode()
    def __call__(self, wave: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None].to(self.device)
        if self.model.config.feat_extract_norm == "layer":       # large/xlarge expect normalised input
            x = (x - x.mean()) / (x.std() + 1e-7)
        out = self.model(x, output_hidden_states=True)
        return out.hidden_states[self.layer][0].float().cpu().numpy()


class HubertTokenizer:
    """Waves (16 kHz) -> k-means ids at ``frame_rate``."""

    def __init__(self, cfg: HubertConfig, device: str = "cpu"):
        self.features = HubertFeatures(cfg.model, cfg.layer, device)
        path = Path(cfg.kmeans)
        if not path.is_file():
            raise FileNotFoundError(f"HuBERT k-means file {path} not found: train it with "
                                    "`python -m dualspeech.bin.extract_hubert --train-cuts ...`")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("features") != self.features.identity:
            raise ValueError(f"{path} was trained on {state.get('features')!r}, but the config "
                             f"gives {self.features.identity!r}: retrain the k-means")
        self.centroids = state["centroids"]
        self.codebook_size = int(self.centroids.shape[0])
        self.frame_rate = self.features.frame_rate
        self.identity = f"{self.features.identity}+kmeans{self.codebook_size}@{short_hash(path)}"

    def tokenize(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        return [assign(self.features(w), self.centroids) for w in waves]


def train_hubert_kmeans(cfg: HubertConfig, waves: list[np.ndarray], device: str = "cpu") -> Path:
    feats = HubertFeatures(cfg.model, cfg.layer, device)
    frames = np.concatenate([feats(w) for w in waves[: cfg.max_utterances]])
    if len(frames) > cfg.max_frames:
        frames = frames[np.random.default_rng(cfg.seed).choice(len(frames), cfg.max_frames, replace=False)]
    centroids = fit_kmeans(frames, cfg.num_clusters, seed=cfg.seed)
    atomic_torch_save({"centroids": torch.from_numpy(centroids), "features": feats.identity,
                       "frame_rate": feats.frame_rate, "layer": cfg.layer}, cfg.kmeans)
    log.info("HuBERT k-means: %d clusters on %d frames of %s -> %s", cfg.num_clusters,
             len(frames), feats.identity, cfg.kmeans)
    return Path(cfg.kmeans)
