"""Shared training loop for every DualSpeech model (USTokenizer, DualSpeechLM, ...).

Contract
--------
* Config: the ``trainer:`` YAML section -> :class:`TrainerConfig` via
  ``dualspeech.config.build(TrainerConfig, cfg["trainer"], "trainer")``.
* Order: ``trainer = Trainer(cfg, exp_dir)`` first (sets up the process group under
  ``accelerate launch`` and seeds every rank identically), then build the model and the
  sampler (given ``accelerator.process_index`` / ``num_processes``; lhotse samplers find them
  from the process group), then
  ``trainer.fit(model, dataset, sampler, valid_fn)``.
* Model: an ``nn.Module`` whose ``forward(batch)`` returns a dict of named 0-dim tensors with
  the total in ``"loss"``; every other scalar in the dict is averaged and logged. Return the
  same keys on every rank. Frozen parts: set ``requires_grad=False`` (and keep them in eval mode
  by overriding ``train()`` if they have dropout). Optionally ``trainable_state_dict()`` to
  choose what checkpoints store, and ``gradient_checkpointing_enable()``.
* Data: ``dataset[batch_indices] -> batch`` and a batch sampler that splits batches across
  ranks itself: DualSpeechLM uses ``dualspeech.data.sampler.TaskBatchSampler`` (one task per
  batch, at most ``data.sampler.max_tokens`` padded tokens), the USTokenizer lhotse's
  ``DynamicBucketingSampler`` over a ``CutSet`` (``max_duration`` seconds per batch). The
  trainer wraps it in a DataLoader with ``batch_size=None``; tensors in the batch are moved to
  the device.
* Validation: ``valid_fn(model, accelerator) -> {name: float}``, called on every rank (reduce
  across ranks inside it if needed) under ``torch.no_grad()`` and eval mode, every
  ``valid_every`` steps and at the end.
* Outputs in ``exp_dir``: ``checkpoints/step-N/`` (see :mod:`.checkpoint`), ``log/metrics.csv``
  (step, split, name, value), ``tensorboard/``.
* Sampler: iterable of batches with ``set_epoch(epoch)``; optionally ``state_dict(batches_done)``
  (where to continue after this rank consumed ``batches_done`` batches of the current epoch)
  and ``load_state_dict(state)``: then a resume restores that state, otherwise it re-iterates
  the epoch to the position (the sampler must give the same order for the same epoch).
* Resume: automatic from the newest checkpoint that reads back whole (``trainer.resume``; a
  damaged one is set aside with a warning and the previous one used); model, optimizer,
  scheduler, every rank's RNG states and the data position are restored, and DataLoader
  workers are seeded per batch, so a resumed run matches an uninterrupted one (with the same
  torch thread count: CPU reductions split by thread).
* Parallelism: ``accelerate launch --num_processes N -m dualspeech.bin.<train script>`` gives
  DDP (NCCL on GPUs, gloo on CPU); ``trainer.engine: fsdp`` FSDP2; a DeepSpeed launch config
  ZeRO-2/3 (see :mod:`.engines`). Trainable weights are fp32 whatever the backbone dtype.
  Checkpoints assume a file system shared by all ranks.
"""
from dualspeech.training.checkpoint import latest_checkpoint, trainable_state_dict
from dualspeech.training.config import TrainerConfig
from dualspeech.training.schedules import make_scheduler, warmup_cosine_lr
from dualspeech.training.trainer import ResumableSampler, Trainer, to_device

__all__ = ["TrainerConfig", "Trainer", "ResumableSampler", "to_device", "make_scheduler",
           "warmup_cosine_lr", "latest_checkpoint", "trainable_state_dict"]
