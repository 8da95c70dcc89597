"""Training batches read from the stage-5 shards (``dualspeech.data.shards``).

Start-up reads only each set's ``index.json`` and ``lengths.npz`` (five int32 per example),
checks the shard files and the encoding fingerprint, and drops examples longer than
``data.max_len`` / the AcousticGPT context from those arrays (counted in the log). Examples are
read when a batch is asked for, already rendered and tokenized, so memory and start-up stay flat
in corpus size and a DataLoader worker holds at most ``max_open`` shards (a few files each) open.

``dataset[[(task, i), ...]]`` gives the batch dict of ``encoding.collate_encoded``, as ``TaskDataset`` (see
``dualspeech.data.dataset``); ``lengths`` and ``groups`` (shard of each example) feed
``TaskBatchSampler``.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from dualspeech.data.encoding import collate_encoded, length_checks, pad_id
from dualspeech.data.shards import ShardReader, ShardSet, encoding_fingerprint, set_dir
from dualspeech.data.tasks import TASKS, parse_set
from dualspeech.data.templates import IGNORE, Encoded

log = logging.getLogger(__name__)
SHARD_ID_STRIDE = 1 << 20      # group id = set number * stride + shard number


def shard_root(data_root: str | Path) -> Path:
    """Where stage 5 writes the training shards: ``<data.root>/shards``."""
    return Path(data_root) / "shards"


class ShardDataset(torch.utils.data.Dataset):
    """Map-style dataset indexed by batches of ``(task, index)`` over the shards of ``sources``."""

    def __init__(self, root: str | Path, sources: list[str], templates, max_len: int,
                 acoustic=None, max_open: int = 12):
        """``acoustic``: the model's ``AcousticSpec`` or None (no AcousticGPT)."""
        self.templates, self.acoustic = templates, acoustic
        self.reader = ShardReader(max_open)
        fingerprint = encoding_fingerprint(templates)
        self.sets: list[ShardSet] = []
        for source in sources:
            shards = ShardSet(set_dir(shard_root(root), *parse_set(source)))
            shards.check_encoding(fingerprint)
            shards.check_files()
            self.sets.append(shards)
        self.lengths: dict[str, np.ndarray] = {}
        self.groups: dict[str, np.ndarray] = {}
        self._where: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        skipped: Counter = Counter()
        for task in TASKS:
            parts = []
            for s, shards in enumerate(self.sets):
                if task not in shards.tasks:
                    continue
                n = shards.array(task, "len")
                generation = TASKS[task].kind == "generation"
                keep = np.ones(len(n), dtype=bool)
                for reason, fits in length_checks(n, shards.array(task, "agpt") if generation
                                                  else 0, max_len, acoustic, generation):
                    skipped[f"{task}: {reason}"] += int((keep & ~fits).sum())
                    keep &= fits
                local = np.flatnonzero(keep).astype(np.int32)
                parts.append((np.full(len(local), s, dtype=np.int32), local, n[local],
                              s * SHARD_ID_STRIDE + local // shards.shard_size))
            if parts and sum(len(p[1]) for p in parts):
                cat = [np.concatenate(x) for x in zip(*parts)]
                self._where[task] = (cat[0], cat[1])
                self.lengths[task], self.groups[task] = cat[2], cat[3]
        for reason, n in sorted(skipped.items()):
            if n:
                log.warning("skipped %d examples (%s)", n, reason)
        if not self.lengths:
            raise ValueError(f"no usable training examples in the shards of {sources}")

    def __len__(self) -> int:
        return sum(len(v) for v in self.lengths.values())

    def __getitem__(self, batch: list[tuple[str, int]]) -> dict:
        encs, codes, speakers, tasks = [], [], [], []
        for task, i in batch:
            s, j = (int(a[i]) for a in self._where[task])
            shards = self.sets[s]
            arrays = self.reader.read(shards, task, j)
            ids = arrays["input_ids"]
            prompt = int(shards.array(task, "prompt")[j])
            span = tuple(int(x) for x in shards.array(task, "span")[j])
            labels = ids.astype(np.int64)
            labels[:prompt] = IGNORE
            encs.append(Encoded(ids, labels, prompt, span if span != (0, 0) else None))
            tasks.append(task)
            if TASKS[task].kind == "generation":
                codes.append(arrays["acoustic_tokens"])
                speakers.append(arrays["speaker_embedding"])
        return collate_encoded(encs, tasks, pad_id(self.templates), self.acoustic, codes, speakers)
