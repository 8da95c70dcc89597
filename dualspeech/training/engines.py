"""What the trainer does differently per engine: fp32 master weights, FSDP2 sharding, the
DeepSpeed batch / accumulation settings, and gathering full trainable state from shards.

* Engine choice: DeepSpeed comes from the launcher (``accelerate launch --config_file
  .../deepspeed_zero{2,3}.yaml``: accelerate's ``distributed_type: DEEPSPEED``); FSDP from
  ``trainer.engine: fsdp`` (or an accelerate FSDP launch config); everything else is DDP or a
  single process. FSDP is FSDP2 (``torch.distributed.fsdp.fully_shard``) applied here rather
  than by accelerate, because accelerate falls back to DDP on CPU (where the tests run it) and
  FSDP2 takes units of mixed dtype (a bf16 frozen backbone layer holding fp32 LoRA weights).
* Precision: every trainable parameter is kept in fp32 (``upcast_trainable``); a frozen
  backbone may stay bf16, and then the forward runs under bf16 autocast
  (``autocast_dtype``), so bf16 and fp32 tensors meet only inside autocast.
"""
from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

ENGINES = ("ddp", "fsdp", "deepspeed")
LOW_PRECISION = (torch.bfloat16, torch.float16)


def upcast_trainable(model: nn.Module) -> int:
    """Cast every trainable floating-point parameter to fp32 in place; returns how many.

    AdamW updates of ~1e-4 relative size round away in bf16 (its 8-bit mantissa), so a
    trainable norm of a bf16 backbone would never move."""
    n = 0
    for p in model.parameters():
        if p.requires_grad and p.is_floating_point() and p.dtype != torch.float32:
            p.data = p.data.float()
            n += 1
    return n


def autocast_dtype(model: nn.Module, mixed_precision: str) -> torch.dtype | None:
    """bf16 / fp16 when the model holds such parameters or bf16 mixed precision is asked for."""
    low = {p.dtype for p in model.parameters() if p.dtype in LOW_PRECISION}
    if len(low) > 1:
        raise ValueError(f"the model mixes {sorted(map(str, low))} parameters; use one low "
                         "precision dtype for the frozen backbone")
    if low:
        return low.pop()
    return torch.bfloat16 if mixed_precision == "bf16" else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# -- FSDP2 ----------------------------------------------------------------------------------
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


# -- DeepSpeed ------------------------------------------------------------------------------
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
