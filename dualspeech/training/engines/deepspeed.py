"""DeepSpeed ZeRO-2 / ZeRO-3 through accelerate (chosen by the launch config:
``accelerate launch --config_file .../deepspeed_zero{2,3}.yaml``). DeepSpeed is imported only
where a ZeRO-3 run needs it, so this module loads where deepspeed is not installed.

Checkpoints: ``engine/`` holds every rank's partition (``accelerator.save_state``) and
``model.pt`` the gathered trainable weights; the optimizer is not in ``trainer.pt``."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch
from torch import nn

from dualspeech.training import checkpoint as ckpt
from dualspeech.training.engines.base import Engine

log = logging.getLogger(__name__)


def configure_deepspeed(ds_config: dict, grad_accum: int, clip_grad: float,
                        num_processes: int) -> dict:
    """Set the batch settings accelerate cannot infer (our DataLoader has ``batch_size=None``:
    batches are token-budgeted). One "micro batch" is one sampler batch, so
    ``train_micro_batch_size_per_gpu = 1`` and ``train_batch_size = grad_accum x ranks``;
    DeepSpeed uses them for its accounting, to scale the loss by 1 / grad_accum and to step
    the optimizer once per ``grad_accum`` micro batches. The trainer config is the one source:
    a launch config value that differs is overridden with a warning."""
    want = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": grad_accum,
            "train_batch_size": grad_accum * num_processes,
            "gradient_clipping": float(clip_grad)}
    for key, value in want.items():
        have = ds_config.get(key, "auto")
        if have not in ("auto", None, value):
            log.warning("DeepSpeed config %s=%r replaced by %r (from trainer.grad_accum / "
                        "trainer.clip_grad)", key, have, value)
        ds_config[key] = value
    return ds_config


def deepspeed_zero_stage(ds_config: dict) -> int:
    return int(ds_config.get("zero_optimization", {}).get("stage", 0))


@contextlib.contextmanager
def deepspeed_gathered(model: nn.Module, zero_stage: int, trainable_only: bool = True):
    """ZeRO-3 partitions parameters: gather them on every rank inside the block (all ranks
    must enter it); other stages: no-op."""
    if zero_stage < 3:
        yield
        return
    import deepspeed

    params = [p for p in model.parameters() if p.requires_grad or not trainable_only]
    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        yield


def zero3_release(engine, model: nn.Module) -> nn.Module:
    """After ZeRO-3 training: gather every parameter into a plain full tensor on every rank and
    remove DeepSpeed's fetch / release hooks, so the returned model runs and exports like an
    ordinary module (tied weights stay tied)."""
    import deepspeed

    params = list(model.parameters())
    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        full = {id(p): nn.Parameter(p.data.detach().clone(), requires_grad=p.requires_grad)
                for p in params}
    engine.destroy()
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is not None and id(p) in full:
                module._parameters[name] = full[id(p)]
    return model


class DeepSpeedEngine(Engine):
    """accelerate's DeepSpeed path: the trainer config sets the batch settings, ZeRO-3
    partitions are gathered wherever full weights are read."""

    name = "deepspeed"
    zero_stage = 0   # read from the launch config in ``wrap``

    def wrap(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        ds = self.accelerator.state.deepspeed_plugin.deepspeed_config
        configure_deepspeed(ds, self.cfg.grad_accum, self.cfg.clip_grad,
                            self.accelerator.num_processes)
        self.zero_stage = deepspeed_zero_stage(ds)
        return super().wrap(model, optimizer)

    def full_params(self, module: nn.Module):
        # ZeRO-3: ranks may run different numbers of forwards
        return deepspeed_gathered(module, self.zero_stage, trainable_only=False)

    def release(self, model: nn.Module) -> nn.Module:
        if self.zero_stage >= 3:
            return zero3_release(model, self.accelerator.unwrap_model(model))
        return super().release(model)

    def trainable_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        model = self.accelerator.unwrap_model(model)
        with deepspeed_gathered(model, self.zero_stage):
            return {k: v.float() for k, v in ckpt.trainable_state_dict(model).items()}

    def optimizer_state(self, model: nn.Module, optimizer) -> None:
        return None   # in engine/, one file per rank

    def save_state(self, directory: Path) -> None:
        self.accelerator.save_state(str(directory / "engine"))

    def load_state(self, path: Path, model: nn.Module, optimizer, model_state: dict,
                   optimizer_state: dict | None) -> None:
        self.accelerator.load_state(str(path / "engine"))
