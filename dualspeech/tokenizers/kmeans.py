"""K-means fitting and nearest-centroid assignment shared by MelVQ and HuBERT tokens.

Fitting uses scikit-learn's MiniBatchKMeans (fast on CPU for tens of thousands of frames);
assignment is a chunked torch distance argmin so extraction does not depend on sklearn objects.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)


def fit_kmeans(frames: np.ndarray, k: int, seed: int = 0, max_iter: int = 100) -> np.ndarray:
    """Centroids [k, D] (float32) of ``frames`` [N, D]."""
    from sklearn.cluster import MiniBatchKMeans

    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 2:
        raise ValueError(f"k-means expects frames [N, D], got shape {frames.shape}")
    if frames.shape[0] < k:
        raise ValueError(f"k-means with {k} clusters needs at least {k} frames, got "
                         f"{frames.shape[0]}: use more audio or a smaller codebook size")
    log.info("fitting k-means: %d clusters on %d frames of dim %d", k, *frames.shape)
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, max_iter=max_iter, n_init=3,
                         batch_size=max(4096, 4 * k), reassignment_ratio=0.01)
    km.fit(frames)
    return km.cluster_centers_.astype(np.float32)


def assign(frames: np.ndarray | torch.Tensor, centroids: np.ndarray | torch.Tensor,
           chunk: int = 8192) -> np.ndarray:
    """Index of the nearest centroid (Euclidean) for each row of ``frames`` [N, D]."""
    x = torch.as_tensor(np.asarray(frames, dtype=np.float32) if not torch.is_tensor(frames) else frames).float()
    c = torch.as_tensor(centroids).float()
    c_sq = (c * c).sum(1)
    out = []
    for i in range(0, x.shape[0], chunk):
        part = x[i:i + chunk]
        # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; ||x||^2 does not change the argmin
        out.append((c_sq[None, :] - 2 * part @ c.T).argmin(dim=1))
    return torch.cat(out).numpy().astype(np.int64) if out else np.zeros(0, dtype=np.int64)
