"""The shared training loop (accelerate): DDP, FSDP2 or DeepSpeed ZeRO-2/3, fp32 master weights
under bf16, grad accumulation, AdamW with warmup + cosine, periodic validation, TensorBoard +
CSV logs, exact resume (falling back past a damaged newest checkpoint).

See the package docstring (``dualspeech.training``) and docs/training.md for the contract a
model, a dataset and a sampler must follow.
"""
from __future__ import annotations

import csv
import dataclasses
import inspect
import logging
import os
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import InitProcessGroupKwargs, set_seed

from dualspeech.training import checkpoint as ckpt
from dualspeech.training import engines
from dualspeech.training.config import TrainerConfig
from dualspeech.training.schedules import make_scheduler

log = logging.getLogger(__name__)

ValidFn = Callable[[torch.nn.Module, Accelerator], dict[str, float]]


class ResumableSampler(torch.utils.data.Sampler):
    """Wraps a batch sampler so a resumed run skips the batches it already trained on, and
    numbers every batch (``(seed key, batch)`` pairs, see ``SeededDataset``).

    The trainer counts the batches it *consumed* (not the ones a DataLoader prefetched), so
    the position is exact with any number of workers. A sampler with ``state_dict(batches_done)``
    / ``load_state_dict`` (``dualspeech.data.sampler.TaskBatchSampler``) is restored from its
    state and not skipped; any other one is re-iterated to the position (lhotse samplers only
    touch cut metadata doing so) and must give the same order for the same epoch (lhotse
    samplers do: their RNG is seed + epoch).
    """

    def __init__(self, sampler: Iterable, seed: int = 0, rank: int = 0):
        self.sampler = sampler
        self.start = 0   # number of the first batch the next iter() yields
        self.skip = 0    # of which this many are drawn and dropped (samplers without state)
        self.seed, self.rank, self.epoch = seed, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self):
        it = iter(self.sampler)
        skip, index, self.skip, self.start = self.skip, self.start, 0, 0
        for _ in range(skip):
            if next(it, None) is None:
                return
        # not ``yield from it``: that calls iter() again, which restarts a lhotse sampler
        while (batch := next(it, None)) is not None:
            yield (self.seed, self.rank, self.epoch, index), batch
            index += 1


class SeededDataset(torch.utils.data.Dataset):
    """Inside a DataLoader worker, seeds python / numpy / torch from (seed, rank, epoch, batch
    number) before building each batch, so random choices made there (prompt paraphrases,
    augmentation) are the same in a resumed run as in an uninterrupted one. In the main process
    (num_workers=0) the global streams are used as they are (they are checkpointed)."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __getitem__(self, item):
        key, batch = item
        if torch.utils.data.get_worker_info() is not None:
            import random

            import numpy as np

            seed = int(np.random.SeedSequence(list(key)).generate_state(1)[0])
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
        return self.dataset[batch]


def stateful(sampler) -> bool:
    """A sampler that can say where it is after ``batches_done`` consumed batches (lhotse's
    ``state_dict()`` takes no position: it counts what a prefetching DataLoader drew)."""
    fn = getattr(sampler, "state_dict", None)
    return (callable(fn) and hasattr(sampler, "load_state_dict")
            and "batches_done" in inspect.signature(fn).parameters)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor inside nested dicts / lists / tuples; leave other objects alone."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def param_groups(model: torch.nn.Module, weight_decay: float,
                 no_decay: str = "ndim1", lr_scales: dict[str, float] | None = None,
                 lr: float = 1.0) -> list[dict]:
    """Trainable parameters grouped by weight decay and lr scale.

    ``no_decay``: ``ndim1`` leaves biases and norm weights (every 1-d tensor) undecayed; ``bias``
    only tensors named ``bias`` (the reference code: the HF Trainer exempts biases and
    ``nn.LayerNorm``, which its model does not use, so its norms are decayed).
    ``lr_scales`` (parameter-name prefix -> factor) gives a part its own peak lr, ``lr * factor``
    (the longest matching prefix wins); the schedule scales every group alike. Why: a fresh
    AcousticGPT and the LoRA / speech rows of a backbone learn best at different rates."""
    if no_decay not in ("ndim1", "bias"):
        raise ValueError(f"trainer.no_decay={no_decay!r}; use ndim1 or bias")
    scales = dict(lr_scales or {})
    groups: dict[tuple[float, bool], list] = {(1.0, True): [], (1.0, False): []}
    used = set()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exempt = p.dim() < 2 if no_decay == "ndim1" else "bias" in name.rsplit(".", 1)[-1]
        prefix = max((k for k in scales if name.startswith(k)), key=len, default=None)
        used.add(prefix)
        groups.setdefault((scales.get(prefix, 1.0), not exempt), []).append(p)
    if not any(groups.values()):
        raise ValueError("the model has no trainable parameters")
    unused = sorted(set(scales) - used)
    if unused:
        raise ValueError(f"trainer.lr_scales prefixes {unused} match no trainable parameter")
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0, "lr": lr * scale}
            for (scale, decay), params in sorted(groups.items(),   # the base groups first
                                                 key=lambda kv: (kv[0][0] != 1.0, kv[0][0], not kv[0][1]))]


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
        handlers = [DistributedDataParallelKwargs(find_unused_parameters=cfg.find_unused_parameters)]
        cuda = torch.cuda.is_available()
        deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
        if deepspeed and not cuda:
            # accelerate only starts DeepSpeed's process group on an accelerator device unless
            # it is given a backend: gloo lets the tests run ZeRO on CPU processes
            handlers.append(InitProcessGroupKwargs(backend="gloo"))
        # cpu=True without CUDA makes accelerate pick gloo DDP when torchrun set WORLD_SIZE > 1
        self.accelerator = Accelerator(mixed_precision=cfg.mixed_precision, kwargs_handlers=handlers,
                                       cpu=not cuda and not deepspeed)
        # the launcher's ACCELERATE_GRADIENT_ACCUMULATION_STEPS must not override the config
        self.accelerator.gradient_accumulation_steps = cfg.grad_accum
        self.engine = engines.create(self.accelerator, cfg)
        set_seed(cfg.seed)  # identical model init on every rank
        self.exp_dir.mkdir(parents=True, exist_ok=True)
        self.step = 0
        self.epoch = 0
        self.batches_done = 0  # batches consumed in the current epoch
        self.sampler = None

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def _build_optimizer(self, model: torch.nn.Module):
        """AdamW over the trainable parameter groups, and its warmup + cosine schedule."""
        cfg = self.cfg
        optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay, cfg.no_decay,
                                                   cfg.lr_scales, cfg.lr), lr=cfg.lr,
                                      betas=tuple(cfg.betas), eps=cfg.eps)
        scheduler = make_scheduler(optimizer, cfg.lr, cfg.max_steps, cfg.warmup_steps,
                                   cfg.warmup_init_lr, cfg.min_lr, cfg.lr_restarts)
        return optimizer, scheduler

    def fit(self, model: torch.nn.Module, dataset: Any, sampler: Iterable,
            valid_fn: ValidFn | None = None) -> torch.nn.Module:
        """Train until ``max_steps``; returns the unwrapped model (FSDP / ZeRO-3: with every
        parameter gathered into plain tensors on every rank, ready for validation and export)."""
        cfg, acc = self.cfg, self.accelerator
        if cfg.gradient_checkpointing:
            if not hasattr(model, "gradient_checkpointing_enable"):
                raise ValueError("trainer.gradient_checkpointing=true but the model has no "
                                 "gradient_checkpointing_enable() method")
            model.gradient_checkpointing_enable()
        model, optimizer, scheduler = self.engine.prepare(model, self._build_optimizer)
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.sampler = sampler
        metrics = MetricsLog(self.exp_dir, self.is_main)
        set_seed(cfg.seed + acc.process_index)  # different dropout masks per rank
        resumable = ResumableSampler(sampler, cfg.seed, acc.process_index)
        if cfg.resume:
            resumable.skip = self._resume()
            resumable.start = self.batches_done
        metrics.truncate_after(self.step)  # rows of a killed run past where this one starts
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
                with self.engine.accumulate(model, micro == cfg.grad_accum - 1):
                    with self.engine.autocast():
                        out = model(batch)
                    if not isinstance(out, dict) or "loss" not in out:
                        raise TypeError("model(batch) must return a dict with a 'loss' entry")
                    self.engine.backward(out["loss"])
                for name, value in out.items():
                    if torch.is_tensor(value) and value.dim() == 0:
                        sums[name] += value.item()
                    elif isinstance(value, (int, float)):
                        sums[name] += float(value)
                count += 1
            if cfg.clip_grad > 0:
                norm_sum += float(self.engine.clip(model))
            lr = scheduler.get_last_lr()[0]
            self.engine.step(optimizer, scheduler)
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
        return self.engine.release(model)

    def _loader(self, dataset: Any, sampler: ResumableSampler) -> torch.utils.data.DataLoader:
        sampler.set_epoch(self.epoch)
        # A private generator: creating the loader iterator must not draw from the global RNG,
        # or a resumed run would diverge from an uninterrupted one.
        gen = torch.Generator().manual_seed(self.cfg.seed * 1000 + self.epoch)
        return torch.utils.data.DataLoader(SeededDataset(dataset), sampler=sampler,
                                           batch_size=None, num_workers=self.cfg.num_workers,
                                           generator=gen, persistent_workers=False)

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
        model = self.engine.unwrap(self.model)
        model.eval()
        with torch.no_grad(), self.engine.full_params(model), self.engine.autocast():
            values = valid_fn(model, self.accelerator)
        model.train()
        return {k: float(v) for k, v in values.items()}

    # -- checkpoints ------------------------------------------------------------------------
    def save(self) -> Path:
        """Write ``checkpoints/step-N`` (all ranks must call this)."""
        acc = self.accelerator
        final = ckpt.checkpoint_dir(self.exp_dir, self.step)
        tmp = ckpt.temp_dir_for(final)
        if self.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        rank_state = {"rng": ckpt.rng_state()}
        if stateful(self.sampler):
            rank_state["sampler"] = self.sampler.state_dict(self.batches_done)
        torch.save(rank_state, tmp / f"rng-rank{acc.process_index}.pt")
        # full trainable tensors (gathered from FSDP shards / ZeRO-3 partitions; all ranks)
        model_state = self.engine.trainable_state(self.model)
        optim_state = self.engine.optimizer_state(self.model, self.optimizer)
        self.engine.save_state(tmp)
        if self.is_main:
            torch.save(model_state, tmp / "model.pt")
            torch.save({"optimizer": optim_state, "scheduler": self.scheduler.state_dict(),
                        "step": self.step, "epoch": self.epoch, "batches_done": self.batches_done,
                        "num_processes": acc.num_processes, "engine": self.engine.name,
                        "num_threads": torch.get_num_threads(),
                        "config": dataclasses.asdict(self.cfg)}, tmp / "trainer.pt")
        acc.wait_for_everyone()
        if self.is_main:
            ckpt.write_manifest(tmp)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            ckpt.prune(self.exp_dir, self.cfg.keep_last)
            log.info("saved %s", final)
        acc.wait_for_everyone()
        return final

    def _all_ranks_ok(self, ok: bool) -> bool:
        if self.accelerator.num_processes == 1:
            return ok
        t = torch.tensor([0.0 if ok else 1.0], device=self.device)
        return float(self.accelerator.reduce(t, reduction="sum")) == 0.0

    def _resume(self) -> int:
        """Restore the newest checkpoint that reads back whole; a damaged one is set aside with
        a warning and the previous one is tried. Returns the batches the sampler must skip."""
        acc = self.accelerator
        found = ckpt.list_checkpoints(self.exp_dir)
        for path in reversed(found):
            rank_file = f"rng-rank{acc.process_index}.pt"
            try:
                names = ["model.pt", "trainer.pt"]
                if (path / rank_file).exists():
                    names.append(rank_file)
                states, problem = ckpt.read(path, names), None
            except ckpt.CorruptCheckpoint as e:
                states, problem = None, str(e)
            if not self._all_ranks_ok(problem is None):
                log.warning("checkpoint %s is damaged (%s); falling back to the previous one",
                            path, problem or "on another rank")
                acc.wait_for_everyone()
                if self.is_main:
                    log.warning("moved the damaged checkpoint to %s", ckpt.set_aside(path))
                acc.wait_for_everyone()
                continue
            return self._restore(path, states, states.get(rank_file))
        if found:
            raise RuntimeError(f"every checkpoint in {self.exp_dir / 'checkpoints'} is damaged "
                               "(set aside as *.corrupt); remove them to start from scratch")
        return 0

    def _restore(self, path: Path, states: dict, rank_state: dict | None) -> int:
        acc = self.accelerator
        state = states["trainer.pt"]
        self.engine.check_written_by(path, state)
        self.engine.load_state(path, self.model, self.optimizer, states["model.pt"],
                               state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch, self.batches_done = state["step"], state["epoch"], state["batches_done"]
        skip = self.batches_done
        if state["num_processes"] == acc.num_processes and rank_state is not None:
            ckpt.set_rng_state(rank_state.get("rng", rank_state))  # (older files: RNG only)
            if "sampler" in rank_state and stateful(self.sampler):
                self.sampler.load_state_dict(rank_state["sampler"])
                skip = 0
        else:
            log.warning("resuming with %d processes from a %d-process checkpoint: data order and "
                        "RNG streams cannot match the original run", acc.num_processes,
                        state["num_processes"])
            set_seed(self.cfg.seed + acc.process_index + self.step)
        threads = state.get("num_threads", torch.get_num_threads())
        if threads != torch.get_num_threads():
            log.warning("the checkpoint was written with %d torch threads, this run has %d: CPU "
                        "matmul / conv reductions split by thread, so results differ from an "
                        "uninterrupted run in the last bits (set OMP_NUM_THREADS=%d to match)",
                        threads, torch.get_num_threads(), threads)
        log.info("resumed from %s (step %d, epoch %d, %d batches into it)", path, self.step,
                 self.epoch, self.batches_done)
        return skip
