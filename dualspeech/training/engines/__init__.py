"""Training engines: one class per way of spreading a model over processes, all with the
interface of :class:`.base.Engine` (the trainer calls nothing else).

* ``ddp`` (:mod:`.ddp`): a single process or DDP, accelerate's default path.
* ``fsdp`` (:mod:`.fsdp`): FSDP2, from ``trainer.engine: fsdp`` or an accelerate FSDP launch
  config.
* ``deepspeed`` (:mod:`.deepspeed`): ZeRO-2/3, from the launcher (``accelerate launch
  --config_file .../deepspeed_zero{2,3}.yaml``: accelerate's ``distributed_type: DEEPSPEED``).

A new engine is a subclass of ``Engine`` in its own module, added to ``ENGINES`` and to
:func:`choose`.
"""
from __future__ import annotations

import logging

from accelerate import Accelerator
from accelerate.utils import DistributedType

from dualspeech.training.config import TrainerConfig
from dualspeech.training.engines.base import Engine
from dualspeech.training.engines.ddp import DDPEngine
from dualspeech.training.engines.deepspeed import DeepSpeedEngine
from dualspeech.training.engines.fsdp import FSDPEngine

log = logging.getLogger(__name__)

ENGINES: dict[str, type[Engine]] = {e.name: e for e in (DDPEngine, FSDPEngine, DeepSpeedEngine)}


def choose(accelerator: Accelerator, cfg: TrainerConfig) -> str:
    """The engine's name: DeepSpeed from the launcher, FSDP from the config or the launcher
    (in one process there is nothing to shard), DDP / one process otherwise."""
    kind = accelerator.distributed_type
    if kind == DistributedType.DEEPSPEED:
        return "deepspeed"
    if cfg.engine == "fsdp" or kind == DistributedType.FSDP:
        if accelerator.num_processes == 1:
            log.warning("trainer.engine=fsdp in a single process: nothing to shard, "
                        "training without FSDP")
            return "ddp"
        return "fsdp"
    return "ddp"


def create(accelerator: Accelerator, cfg: TrainerConfig) -> Engine:
    """This run's engine (the one :func:`choose` names)."""
    return ENGINES[choose(accelerator, cfg)](accelerator, cfg)


__all__ = ["ENGINES", "Engine", "choose", "create"]
