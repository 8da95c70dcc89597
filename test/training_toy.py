"""A toy regression task on lhotse dummy cuts, shared by the training tests (and runnable under
``accelerate launch`` for the DDP test): ``python training_toy.py EXP_DIR MAX_STEPS``."""
from __future__ import annotations

import sys

import torch
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler
from lhotse.testing.dummies import dummy_cut

from dualspeech.training import Trainer, TrainerConfig

TRUE_W = torch.linspace(-1, 1, 8)


def toy_cuts(n: int = 24) -> CutSet:
    return CutSet.from_cuts(dummy_cut(i, duration=1.0 + (i % 5) * 0.5) for i in range(n))


class ToyDataset(torch.utils.data.Dataset):
    """CutSet -> features made from each cut's id (deterministic) plus noise (global RNG)."""

    def __getitem__(self, cuts: CutSet) -> dict:
        x = torch.stack([torch.sin(torch.arange(8.0) * (hash(c.id) % 97 + 1)) for c in cuts])
        y = x @ TRUE_W + 0.01 * torch.randn(len(cuts))
        return {"x": x, "y": y}


class ToyModel(torch.nn.Module):
    def __init__(self, crash_after: int | None = None):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.1),
                                       torch.nn.Linear(16, 1))
        self.frozen = torch.nn.Linear(8, 8)
        self.frozen.requires_grad_(False)
        self.calls, self.crash_after = 0, crash_after

    def forward(self, batch):
        self.calls += 1
        if self.crash_after is not None and self.calls > self.crash_after:
            raise KeyboardInterrupt("simulated crash")
        pred = self.net(batch["x"]).squeeze(-1)
        mse = torch.nn.functional.mse_loss(pred, batch["y"])
        return {"loss": mse, "mse": mse.detach(), "batch_size": float(len(batch["y"]))}


def config(**kw) -> TrainerConfig:
    base = dict(max_steps=8, grad_accum=2, lr=3e-2, warmup_steps=2, warmup_init_lr=1e-3,
                min_lr=1e-3, log_every=2, save_every=4, keep_last=3, seed=3)
    base.update(kw)
    return TrainerConfig(**base)


def train(exp_dir, cfg: TrainerConfig, crash_after: int | None = None) -> ToyModel:
    trainer = Trainer(cfg, exp_dir)
    model = ToyModel(crash_after)
    sampler = DynamicBucketingSampler(toy_cuts(), max_duration=6.0, shuffle=True, seed=1,
                                      num_buckets=2, buffer_size=100)
    return trainer.fit(model, ToyDataset(), sampler)


if __name__ == "__main__":
    model = train(sys.argv[1], config(max_steps=int(sys.argv[2])))
    torch.save({k: v for k, v in model.state_dict().items()},
               f"{sys.argv[1]}/final-rank{torch.distributed.get_rank()}.pt")
