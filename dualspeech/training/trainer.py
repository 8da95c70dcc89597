"""The shared training loop (accelerate): DDP by launcher, bf16, grad accumulation, AdamW with
warmup + cosine, periodic validation, TensorBoard + CSV logs, exact resume.

See the package docstring (``dualspeech.training``) and docs/training.md for the contract a
model, a dataset and a sampler must follow.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import logging
import os
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed

from dualspeech.training import checkpoint as ckpt
from dualspeech.training.config import TrainerConfig
from dualspeech.training.schedules import make_scheduler

log = logging.getLogger(__name__)

ValidFn = Callable[[torch.nn.Module, Accelerator], dict[str, float]]


class ResumableSampler(torch.utils.data.Sampler):
    """Wraps a batch sampler so a resumed run skips the batches it already trained on.

    The trainer counts the batches it *consumed* (not the ones a DataLoader prefetched), so
    the position is exact with any number of workers. Skipping re-iterates the inner sampler,
    which for lhotse samplers only touches cut metadata, never audio. The inner sampler must
    give the same order for the same epoch (lhotse samplers do: their RNG is seed + epoch).
    """

    def __init__(self, sampler: Iterable):
        self.sampler = sampler
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self):
        it = iter(self.sampler)
        skip, self.skip = self.skip, 0
        for _ in range(skip):
            if next(it, None) is None:
                return
        # not ``yield from it``: that calls iter() again, which restarts a lhotse sampler
        while (batch := next(it, None)) is not None:
            yield batch


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor inside nested dicts / lists / tuples; leave other objects alone."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters; weight decay on matrices / conv kernels only (not biases, norms)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters")
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


class MetricsLog:
    """TensorBoard + a long-format CSV (step, split, name, value), written by the main process."""

    def __init__(self, exp_dir: Path, enabled: bool):
        self.enabled = enabled
        self.csv_path = exp_dir / "log" / "metrics.csv"
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(exp_dir / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drop rows a killed run wrote after the step we start from (0 for a fresh start)."""
        if not (self.enabled and self.csv_path.exists()):
            return
        with open(self.csv_path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
        tmp = self.csv_path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, ["step", "split", "name", "value"])
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, self.csv_path)

    def write(self, step: int, split: str, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.csv_path.exists()
        with open(self.csv_path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["step", "split", "name", "value"])
            for name, value in values.items():
                w.writerow([step, split, name, f"{value:.6g}"])
                self.writer.add_scalar(f"{split}/{name}", value, step)
        self.writer.flush()
        log.info("%s step %d: %s", split, step,
                 " ".join(f"{k}={v:.4g}" for k, v in values.items()))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Trainer:
    """Create first (it sets up the process group and seeds), then build the model and the
    sampler, then call :meth:`fit`. See ``dualspeech.training`` for the full contract."""

    def __init__(self, cfg: TrainerConfig, exp_dir: str | os.PathLike):
        self.cfg = cfg
        self.exp_dir = Path(exp_dir)
        ddp = DistributedDataParallelKwargs(find_unused_parameters=cfg.find_unused_parameters)
        # cpu=True without CUDA makes accelerate pick gloo DDP when torchrun set WORLD_SIZE > 1
        self.accelerator = Accelerator(mixed_precision=cfg.mixed_precision, kwargs_handlers=[ddp],
                                       cpu=not torch.cuda.is_available())
        set_seed(cfg.seed)  # identical model init on every rank
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        self.step = 0
        self.epoch = 0
        self.batches_done = 0  # batches consumed in the current epoch

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def fit(self, model: torch.nn.Module, dataset: Any, sampler: Iterable,
            valid_fn: ValidFn | None = None) -> torch.nn.Module:
        """Train until ``max_steps``; returns the unwrapped model."""
        cfg, acc = self.cfg, self.accelerator
        if cfg.gradient_checkpointing:
            if not hasattr(model, "gradient_checkpointing_enable"):
                raise ValueError("trainer.gradient_checkpointing=true but the model has no "
                                 "gradient_checkpointing_enable() method")
            model.gradient_checkpointing_enable()
        model.to(self.device)
        optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr,
                                      betas=tuple(cfg.betas), eps=cfg.eps)
        scheduler = make_scheduler(optimizer, cfg.lr, cfg.max_steps, cfg.warmup_steps,
                                   cfg.warmup_init_lr, cfg.min_lr)
        model, optimizer = acc.prepare(model, optimizer)
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        metrics = MetricsLog(self.exp_dir, self.is_main)
        set_seed(cfg.seed + acc.process_index)  # different dropout masks per rank
        if cfg.resume and (last := ckpt.latest_checkpoint(self.exp_dir)) is not None:
            self._restore(last)
        metrics.truncate_after(self.step)  # rows of a killed run past where this one starts
        resumable = ResumableSampler(sampler)
        resumable.skip = self.batches_done
        loader = self._loader(dataset, resumable)
        batches = iter(loader)
        model.train()
        if self.step >= cfg.max_steps:
            log.info("already trained to step %d (max_steps=%d)", self.step, cfg.max_steps)
        sums: dict[str, float] = defaultdict(float)
        count, norm_sum, tic = 0, 0.0, time.time()
        while self.step < cfg.max_steps:
            for micro in range(cfg.grad_accum):
                batch, batches = self._next_batch(batches, loader, resumable)
                batch = to_device(batch, self.device)
                sync = micro == cfg.grad_accum - 1
                with contextlib.nullcontext() if sync else acc.no_sync(model):
                    with acc.autocast():
                        out = model(batch)
                    if not isinstance(out, dict) or "loss" not in out:
                        raise TypeError("model(batch) must return a dict with a 'loss' entry")
                    acc.backward(out["loss"] / cfg.grad_accum)
                for name, value in out.items():
                    if torch.is_tensor(value) and value.dim() == 0:
                        sums[name] += value.item()
                    elif isinstance(value, (int, float)):
                        sums[name] += float(value)
                count += 1
            if cfg.clip_grad > 0:
                norm_sum += float(acc.clip_grad_norm_(model.parameters(), cfg.clip_grad))
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            self.step += 1
            if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                n_steps = count // cfg.grad_accum
                values = {k: v / count for k, v in sums.items()}
                if cfg.clip_grad > 0:
                    values["grad_norm"] = norm_sum / n_steps
                values = self._reduce(values)
                values.update(lr=lr, steps_per_s=n_steps / max(time.time() - tic, 1e-9),
                              epoch=float(self.epoch))
                metrics.write(self.step, "train", values)
                sums, count, norm_sum, tic = defaultdict(float), 0, 0.0, time.time()
            if valid_fn is not None and (self.step == cfg.max_steps or
                                         (cfg.valid_every and self.step % cfg.valid_every == 0)):
                metrics.write(self.step, "valid", self._validate(valid_fn))
            if self.step == cfg.max_steps or (cfg.save_every and self.step % cfg.save_every == 0):
                self.save()
        metrics.close()
        acc.wait_for_everyone()
        return acc.unwrap_model(model)

    def _loader(self, dataset: Any, sampler: ResumableSampler) -> torch.utils.data.DataLoader:
        sampler.set_epoch(self.epoch)
        # A private generator: creating the loader iterator must not draw from the global RNG,
        # or a resumed run would diverge from an uninterrupted one.
        gen = torch.Generator().manual_seed(self.cfg.seed * 1000 + self.epoch)
        return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None,
                                           num_workers=self.cfg.num_workers, generator=gen,
                                           persistent_workers=False)

    def _next_batch(self, batches, loader, sampler):
        batch = next(batches, None)
        if batch is None:  # end of epoch
            self.epoch += 1
            self.batches_done = 0
            sampler.set_epoch(self.epoch)
            loader.generator.manual_seed(self.cfg.seed * 1000 + self.epoch)
            batches = iter(loader)
            batch = next(batches, None)
            if batch is None:
                raise RuntimeError("the training sampler yielded no batches (empty or filtered-out "
                                   "training data, or a batch limit smaller than every example: "
                                   "data.sampler.max_tokens for DualSpeechLM, data.max_duration "
                                   "for the USTokenizer)")
        self.batches_done += 1
        return batch, batches

    def _reduce(self, values: dict[str, float]) -> dict[str, float]:
        if self.accelerator.num_processes == 1:
            return values
        names = sorted(values)
        t = torch.tensor([values[n] for n in names], device=self.device, dtype=torch.float64)
        t = self.accelerator.reduce(t, reduction="mean")
        return dict(zip(names, t.tolist()))

    def _validate(self, valid_fn: ValidFn) -> dict[str, float]:
        model = self.accelerator.unwrap_model(self.model)
        model.eval()
        with torch.no_grad(), self.accelerator.autocast():
            values = valid_fn(model, self.accelerator)
        model.train()
        return {k: float(v) for k, v in values.items()}

    def save(self) -> Path:
        """Write ``checkpoints/step-N`` (all ranks must call this)."""
        acc = self.accelerator
        final = ckpt.checkpoint_dir(self.exp_dir, self.step)
        tmp = ckpt.temp_dir_for(final)
        if self.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        torch.save(ckpt.rng_state(), tmp / f"rng-rank{acc.process_index}.pt")
        if self.is_main:
            torch.save(ckpt.trainable_state_dict(acc.unwrap_model(self.model)), tmp / "model.pt")
            torch.save({"optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict(),
                        "step": self.step, "epoch": self.epoch, "batches_done": self.batches_done,
                        "num_processes": acc.num_processes,
                        "config": dataclasses.asdict(self.cfg)}, tmp / "trainer.pt")
        acc.wait_for_everyone()
        if self.is_main:
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            ckpt.prune(self.exp_dir, self.cfg.keep_last)
            log.info("saved %s", final)
        acc.wait_for_everyone()
        return final

    def _restore(self, path: Path) -> None:
        acc = self.accelerator
        ckpt.load_trainable_state_dict(acc.unwrap_model(self.model), ckpt.load(path, "model.pt"))
        state = ckpt.load(path, "trainer.pt")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch, self.batches_done = state["step"], state["epoch"], state["batches_done"]
        rng_file = path / f"rng-rank{acc.process_index}.pt"
        if state["num_processes"] == acc.num_processes and rng_file.exists():
            ckpt.set_rng_state(ckpt.load(path, rng_file.name))
        else:
            log.warning("resuming with %d processes from a %d-process checkpoint: data order and "
                        "RNG streams cannot match the original run", acc.num_processes,
                        state["num_processes"])
            set_seed(self.cfg.seed + acc.process_index + self.step)
        log.info("resumed from %s (step %d, epoch %d, %d batches into it)", path, self.step,
                 self.epoch, self.batches_done)
