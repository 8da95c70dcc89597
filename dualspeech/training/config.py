"""The ``trainer:`` section of an experiment config."""
from __future__ import annotations

from dataclasses import dataclass, field

from dualspeech.config import ConfigError
from dualspeech.training.schedules import check_restarts


@dataclass
class TrainerConfig:
    max_steps: int = 1000            # optimizer steps (one step = grad_accum micro-batches)
    grad_accum: int = 1              # micro-batches per optimizer step
    lr: float = 3e-5                 # peak learning rate (reached after warmup)
    lr_scales: dict = field(default_factory=dict)   # parameter-name prefix -> factor on lr, e.g.
                                     # {acoustic_gpt.: 0.3}; the longest matching prefix wins
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.05
    no_decay: str = "ndim1"          # undecayed: ndim1 = biases + norms | bias (reference code)
    warmup_steps: int = 0            # linear warmup from warmup_init_lr to lr
    warmup_init_lr: float = 0.0
    min_lr: float = 0.0              # cosine decay from lr to min_lr at max_steps
    lr_restarts: list = field(default_factory=list)  # steps where warmup + cosine begin again
                                     # (e.g. a curriculum phase boundary)
    clip_grad: float = 1.0           # max global grad norm; 0 disables clipping
    log_every: int = 10
    valid_every: int = 0             # 0: validate only at the end
    save_every: int = 0              # 0: save only at the end
    keep_last: int = 2               # checkpoints kept on disk (older ones are deleted)
    mixed_precision: str = "no"      # "no" | "bf16" autocast (trainable weights stay fp32)
    engine: str = "ddp"              # "ddp" | "fsdp" (FSDP2); DeepSpeed comes from the launcher
    seed: int = 0
    gradient_checkpointing: bool = False   # calls model.gradient_checkpointing_enable()
    find_unused_parameters: bool = False   # DDP: needed when a loss term leaves params unused
    num_workers: int = 0             # DataLoader worker processes
    resume: bool = True              # continue from the newest checkpoint in exp_dir

    def __post_init__(self):
        if self.mixed_precision not in ("no", "bf16"):
            raise ConfigError(f"trainer.mixed_precision={self.mixed_precision!r}: use 'no' or 'bf16'")
        if self.engine not in ("ddp", "fsdp"):
            raise ConfigError(f"trainer.engine={self.engine!r}: use 'ddp' or 'fsdp' (DeepSpeed is "
                              "chosen by the launcher: accelerate launch --config_file "
                              "conf/launch/deepspeed_zero2.yaml)")
        bad = {k: v for k, v in self.lr_scales.items()
               if not isinstance(k, str) or not isinstance(v, (int, float)) or v <= 0}
        if bad:
            raise ConfigError(f"trainer.lr_scales must map parameter-name prefixes to factors > 0, "
                              f"got {bad}")
        if self.max_steps < 1 or self.grad_accum < 1 or self.log_every < 1 or self.keep_last < 1:
            raise ConfigError("trainer.max_steps, grad_accum, log_every and keep_last must be >= 1")
        try:   # at load time, not after the model is built
            check_restarts(self.lr_restarts, self.max_steps)
        except ValueError as e:
            raise ConfigError(f"trainer.lr_restarts: {e}") from None
