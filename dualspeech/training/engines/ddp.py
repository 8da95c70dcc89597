"""DDP, and the single-process engine: accelerate's default path as :class:`.base.Engine`
implements it (``Accelerator.prepare`` wraps the model in DDP across processes, and leaves it
as it is in one process), under the name checkpoints record for both."""
from __future__ import annotations

from dualspeech.training.engines.base import Engine


class DDPEngine(Engine):
    name = "ddp"
