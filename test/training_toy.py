"""A toy regression task on lhotse dummy cuts, shared by the training tests, and runnable under
a launcher for the multi-process ones::

    python training_toy.py EXP_DIR MAX_STEPS [model=mlp|lm] [dtype=float32|bfloat16] [valid=true]
                           [KEY=VALUE ...]

KEY=VALUE sets a ``trainer:`` field (e.g. ``engine=fsdp grad_accum=2``). Each rank writes
``final-rank<R>.pt`` (its full trainable parameters after training)."""
from __future__ import annotations

import sys
import zlib

import torch
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler
from lhotse.testing.dummies import dummy_cut

from dualspeech.training import Trainer, TrainerConfig

TRUE_W = torch.linspace(-1, 1, 8)


def toy_cuts(n: int = 24) -> CutSet:
    return CutSet.from_cuts(dummy_cut(i, duration=1.0 + (i % 5) * 0.5) for i in range(n))


class ToyDataset(torch.utils.data.Dataset):
    """CutSet -> features made from each cut's id (deterministic in every process: crc32, not
    the salted ``hash``) plus noise (global RNG)."""

    def __getitem__(self, cuts: CutSet) -> dict:
        x = torch.stack([torch.sin(torch.arange(8.0) * (zlib.crc32(c.id.encode()) % 97 + 1))
                         for c in cuts])
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


class ToyLM(torch.nn.Module):
    """The same regression through a tiny random Llama decoder (2 layers, hidden 32): a frozen
    backbone (optionally bf16) whose norms train, plus fp32 input / output projections. It has
    what the engines care about: ``_no_split_modules`` decoder layers and mixed dtypes."""

    def __init__(self, dtype: torch.dtype = torch.float32):
        super().__init__()
        from transformers import LlamaConfig, LlamaModel

        cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, vocab_size=16,
                          max_position_embeddings=16)
        self.backbone = LlamaModel(cfg).to(dtype)
        for name, p in self.backbone.named_parameters():
            p.requires_grad_("norm" in name)
        self.inp = torch.nn.Linear(8, 4 * 32)
        self.out = torch.nn.Linear(32, 1)

    def forward(self, batch):
        x = self.inp(batch["x"]).view(len(batch["x"]), 4, 32)
        dtype = self.backbone.embed_tokens.weight.dtype
        h = self.backbone(inputs_embeds=x.to(dtype)).last_hidden_state
        pred = self.out(h.mean(1).to(self.out.weight.dtype)).squeeze(-1)
        mse = torch.nn.functional.mse_loss(pred.float(), batch["y"])
        return {"loss": mse, "mse": mse.detach()}


def config(**kw) -> TrainerConfig:
    base = dict(max_steps=8, grad_accum=2, lr=3e-2, warmup_steps=2, warmup_init_lr=1e-3,
                min_lr=1e-3, log_every=2, save_every=4, keep_last=3, seed=3)
    base.update(kw)
    return TrainerConfig(**base)


def uneven_valid_fn(model, accelerator) -> dict[str, float]:
    """Rank r runs r + 1 forwards: sharded engines must hold full weights during validation
    (a per-layer all-gather inside forward would wait forever for the other rank)."""
    batch = ToyDataset()[toy_cuts(4)]
    mse = [float(model(batch)["mse"]) for _ in range(accelerator.process_index + 1)]
    return {"mse": mse[0]}


def train(exp_dir, cfg: TrainerConfig, crash_after: int | None = None, model: str = "mlp",
          dtype: torch.dtype = torch.float32, valid: bool = False) -> torch.nn.Module:
    trainer = Trainer(cfg, exp_dir)
    if trainer.engine.name == "deepspeed":  # ZeRO-3 keeps tensors under 1e5 elements whole: the
        ds = trainer.accelerator.state.deepspeed_plugin.deepspeed_config   # toy must partition
        ds["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    model = ToyModel(crash_after) if model == "mlp" else ToyLM(dtype)
    sampler = DynamicBucketingSampler(toy_cuts(), max_duration=6.0, shuffle=True, seed=1,
                                      num_buckets=2, buffer_size=100)
    return trainer.fit(model, ToyDataset(), sampler, uneven_valid_fn if valid else None)


def main(argv: list[str]) -> None:
    exp_dir, steps, kw = argv[0], int(argv[1]), dict(a.split("=", 1) for a in argv[2:])
    model_kind = kw.pop("model", "mlp")
    dtype = getattr(torch, kw.pop("dtype", "float32"))
    valid = kw.pop("valid", "false") == "true"
    fields = TrainerConfig.__dataclass_fields__
    cfg = config(max_steps=steps, **{k: type(getattr(TrainerConfig, k, ""))(v) if k in fields
                                     and not isinstance(getattr(TrainerConfig, k, None), bool)
                                     else v == "true" for k, v in kw.items()})
    model = train(exp_dir, cfg, model=model_kind, dtype=dtype, valid=valid)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    # through state_dict(), as an exporter (PEFT save_pretrained) reads the model
    torch.save({n: v.detach().float().cpu().clone() for n, v in model.state_dict().items()
                if n in trainable}, f"{exp_dir}/final-rank{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1:])
