"""FSDP2 (``torch.distributed.fsdp.fully_shard``), applied here rather than by accelerate:
accelerate falls back to DDP on CPU (where the tests run it), and FSDP2 takes units of mixed
dtype (a bf16 frozen backbone layer holding fp32 LoRA weights). Checkpoints hold full tensors
(gathered), so they load into any number of ranks."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch
from torch import nn

from dualspeech.training import checkpoint as ckpt
from dualspeech.training.engines.base import Engine

log = logging.getLogger(__name__)


def layer_classes(model: nn.Module) -> set[type]:
    """Classes to shard one instance at a time: those named in any sub-module's
    ``_no_split_modules`` (Hugging Face backbones declare their decoder layer there); only when
    there are none, the class of the repeated blocks of every ``nn.ModuleList``.

    Sub-modules that run on some batches only (AcousticGPT: batches with acoustic targets)
    must stay in the root unit: a unit all-gathers when it runs, and one rank running it while
    the other does not is a collective mismatch."""
    names = set()
    for m in model.modules():
        names.update(getattr(m, "_no_split_modules", None) or ())
    found = {type(m) for m in model.modules() if type(m).__name__ in names}
    if not found:
        for m in model.modules():
            if isinstance(m, nn.ModuleList) and len(m) > 1 and len({type(c) for c in m}) == 1:
                found.add(type(m[0]))
    return found


def fsdp_wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """Shard ``model`` over all ranks with FSDP2: every decoder layer is its own unit
    (all-gathered just before use), the rest (embeddings, speech rows, heads, AcousticGPT)
    forms the root unit. Parameters are sharded in place; module names do not change."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    classes = layer_classes(model)
    if not classes:
        raise ValueError("FSDP: found no decoder layer class to shard (no _no_split_modules and "
                         "no nn.ModuleList of repeated blocks in the model)")
    units = [m for m in model.modules() if type(m) in classes]
    # innermost first: a unit must not contain an already-wrapped unit of the same kind twice
    for m in reversed(units):
        fully_shard(m, mesh=mesh)
    fully_shard(model, mesh=mesh)
    log.info("FSDP2: %d units of %s over %d ranks", len(units),
             sorted(c.__name__ for c in classes), mesh.size())
    return model


def fsdp_units(model: nn.Module) -> list[nn.Module]:
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


@contextlib.contextmanager
def fsdp_full_params(model: nn.Module):
    """Every rank holds the full parameters inside the block (one all-gather per unit on entry),
    so code that runs a different number of forwards per rank (validation over a rank's share
    of examples) or reads parameters on one rank (export) needs no collectives."""
    units = fsdp_units(model)
    for m in units:
        m.set_reshard_after_forward(False)
        m.unshard()
    try:
        yield model
    finally:
        for m in units:
            m.reshard()
            m.set_reshard_after_forward(True)


def fsdp_release(model: nn.Module) -> nn.Module:
    """After training: replace every sharded parameter by a plain full tensor (an all-gather:
    all ranks call it) and remove FSDP's forward and state-dict hooks, so the returned model
    runs, saves (PEFT ``save_pretrained``) and exports like an unsharded one on every rank.
    Uses FSDP2's per-module state (``_get_fsdp_state``): torch has no public "unshard for
    good"."""
    from torch.distributed.tensor import DTensor

    full = {}
    for module in model.modules():
        for p in module._parameters.values():
            if isinstance(p, DTensor) and id(p) not in full:
                full[id(p)] = nn.Parameter(p.full_tensor().detach().clone(),
                                           requires_grad=p.requires_grad)
    for unit in fsdp_units(model):
        state = unit._get_fsdp_state()
        for handle in {state._pre_forward_hook_handle, state._post_forward_hook_handle}:
            if handle is not None:
                handle.remove()
        group = state._fsdp_param_group
        if group is not None:
            for handles in (group._module_to_pre_save_state_dict_hook_handle,
                            group._module_to_pre_load_state_dict_hook_handle):
                for handle in handles.values():
                    handle.remove()
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is not None and id(p) in full:
                module._parameters[name] = full[id(p)]   # tied weights stay tied
    return model


def full_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DTensor shards -> full CPU tensors (a collective: every rank calls it, same dict order)."""
    from torch.distributed.tensor import DTensor

    return {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().cpu().clone()
            for k, v in state.items()}


class FSDPEngine(Engine):
    """Shards in place (no accelerate wrapper), so the model the trainer holds is the module
    itself; gradients are DTensors, reduce-scattered on the last micro batch of a step."""

    name = "fsdp"

    def shard(self, model: nn.Module) -> nn.Module:
        return fsdp_wrap(model, self.accelerator.device)

    def wrap(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        return model, optimizer   # FSDP2 needs no wrapper: fully_shard works in place

    def accumulate(self, model: nn.Module, sync: bool):
        model.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()

    def clip(self, model: nn.Module) -> float:
        # DTensor grads: torch's clip computes the global norm
        params = [p for p in model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad)
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)

    def unwrap(self, model: nn.Module) -> nn.Module:
        return model

    def full_params(self, module: nn.Module):
        return fsdp_full_params(module)

    def release(self, model: nn.Module) -> nn.Module:
        return fsdp_release(model)

    def trainable_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return full_tensors(ckpt.trainable_state_dict(model))

    def optimizer_state(self, model: nn.Module, optimizer) -> dict:
        from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                             get_optimizer_state_dict)

        return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(
            full_state_dict=True, cpu_offload=True))

    def load_state(self, path: Path, model: nn.Module, optimizer, model_state: dict,
                   optimizer_state: dict | None) -> None:
        from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                             set_model_state_dict,
                                                             set_optimizer_state_dict)

        full = StateDictOptions(full_state_dict=True, strict=False)
        set_model_state_dict(model, model_state, options=full)
        set_optimizer_state_dict(model, optimizer, optimizer_state, options=full)
