"""Single-codebook vector quantizer with EMA updates, k-means init and dead-code restart.

Improvements over the reference code (which uses random-normal init, no restart, and under
DDP broadcasts rank 0's codebook, discarding the other ranks' statistics):

* k-means initialisation from the vectors of the first ``kmeans_init_batches`` training
  batches of all ranks (before that the quantizer passes its input through unchanged);
* EMA statistics (counts and sums) are all-reduced over ranks before the update, so every
  rank applies the same update computed from the global batch;
* a code unused for ``dead_code_steps`` training steps is moved onto a random vector of the
  current batch (chosen on rank 0 and broadcast, so codebooks stay identical).

All codebook state lives in buffers, so it is saved with the model and restored on resume.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator) -> torch.Tensor:
    """Lloyd's k-means with k-means++-style seeding by random distinct samples.

    With fewer vectors than codes, samples are repeated with a little noise; the extra codes
    are then picked up by dead-code restart.
    """
    n = x.shape[0]
    idx = torch.randperm(n, generator=generator)
    if n < k:
        idx = idx.repeat((k + n - 1) // n)
    centers = x[idx[:k].to(x.device)].clone()
    if n < k:
        centers[n:] += 1e-3 * x.std() * torch.randn(centers[n:].shape, generator=generator).to(x)
    for _ in range(iters):
        assign = torch.cdist(x, centers).argmin(1)
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        used = counts > 0
        centers[used] = sums[used] / counts[used, None]
    return centers


class EMAVectorQuantizer(nn.Module):
    def __init__(self, codebook_size: int, dim: int, decay: float = 0.8, eps: float = 1e-5,
                 kmeans_init_batches: int = 4, kmeans_iters: int = 20, dead_code_steps: int = 50):
        super().__init__()
        self.codebook_size, self.dim = codebook_size, dim
        self.decay, self.eps = decay, eps
        self.kmeans_init_batches, self.kmeans_iters = kmeans_init_batches, kmeans_iters
        self.dead_code_steps = dead_code_steps
        self.register_buffer("codebook", torch.randn(codebook_size, dim))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed_sum", torch.zeros(codebook_size, dim))
        self.register_buffer("unused_steps", torch.zeros(codebook_size, dtype=torch.long))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self._init_vectors: list[torch.Tensor] = []

    def codes(self, h: torch.Tensor) -> torch.Tensor:
        """Nearest codebook entry of each row of h [N, dim]."""
        cb = self.codebook
        dist2 = h.pow(2).sum(1, keepdim=True) - 2 * h @ cb.T + cb.pow(2).sum(1)[None]
        return dist2.argmin(1)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """h [N, dim] (valid frames only) -> (quantized with straight-through gradient, ids, stats).

        stats: ``commit`` (||h - sg(z)||^2, mean), ``perplexity`` and ``usage`` (fraction of
        codes used) of this batch over all ranks.
        """
        with torch.autocast(device_type=h.device.type, enabled=False):
            h = h.float()
            if self.training and not bool(self.initialized):
                self._collect_for_init(h.detach())
            if not bool(self.initialized):  # pass-through until the k-means init
                zero = h.new_zeros(())
                return h, torch.zeros(len(h), dtype=torch.long, device=h.device), {
                    "commit": zero, "perplexity": zero, "usage": zero}
            ids = self.codes(h.detach())
            z = self.codebook[ids]
            counts = torch.bincount(ids, minlength=self.codebook_size).float()
            if self.training:
                counts = self._ema_update(h.detach(), ids, counts)
            commit = F.mse_loss(h, z.detach())
            probs = counts / counts.sum().clamp(min=1)
            perplexity = torch.exp(-(probs * torch.log(probs.clamp(min=1e-10))).sum())
            usage = (counts > 0).float().mean()
            z = h + (z - h).detach()
        return z, ids, {"commit": commit, "perplexity": perplexity, "usage": usage}

    @torch.no_grad()
    def _collect_for_init(self, h: torch.Tensor) -> None:
        # (kept in memory only: a run resumed before the init collects its batches again)
        self._init_vectors.append(h.cpu())
        if len(self._init_vectors) < self.kmeans_init_batches:
            return
        x = torch.cat(self._init_vectors)
        if _distributed():
            gathered = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, x)
            x = torch.cat(gathered)
        centers = kmeans(x.to(h.device), self.codebook_size, self.kmeans_iters,
                         torch.Generator().manual_seed(0))
        if _distributed():
            dist.broadcast(centers, src=0)
        self.codebook.copy_(centers)
        self.embed_sum.copy_(centers)
        self.cluster_size.fill_(1.0)
        self.initialized.fill_(True)
        self._init_vectors = []

    @torch.no_grad()
    def _ema_update(self, h: torch.Tensor, ids: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        sums = torch.zeros_like(self.embed_sum).index_add_(0, ids, h)
        if _distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        self.unused_steps.add_(1).masked_fill_(counts > 0, 0)
        if self.dead_code_steps > 0:
            self._restart_dead(h)
        return counts

    @torch.no_grad()
    def _restart_dead(self, h: torch.Tensor) -> None:
        dead = (self.unused_steps >= self.dead_code_steps).nonzero().squeeze(1)
        if len(dead) == 0:
            return
        n = torch.tensor(min(len(dead), len(h)), device=h.device)
        if _distributed():  # the same number on every rank, whatever its batch size
            dist.all_reduce(n, op=dist.ReduceOp.MIN)
        dead = dead[: int(n)]
        # rank 0 picks the replacement vectors; every rank applies the same ones
        new = h[torch.randperm(len(h), device=h.device)[: len(dead)]].contiguous()
        if _distributed():
            dist.broadcast(new, src=0)
        self.codebook[dead] = new
        self.embed_sum[dead] = new
        self.cluster_size[dead] = 1.0
        self.unused_steps[dead] = 0
