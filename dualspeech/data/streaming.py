"""Training batches read from the stage-5 shards (``dualspeech.data.shards``).

Start-up reads only each set's ``index.json`` and ``lengths.npz`` (five int32 per example),
checks the shard files and the encoding fingerprint, and drops examples longer than
``data.max_len`` / the AcousticGPT context from those arrays (counted in the log). Examples are
read when a batch is asked for, already rendered and tokenized, so memory and start-up stay flat
in corpus size and a DataLoader worker holds at most ``max_open`` shards (a few files each) open.

``dataset[[(task, i), ...]]`` gives the same batch dict as ``TaskDataset.collate`` (see
``dualspeech.data.dataset``); ``lengths`` and ``groups`` (shard of each example) feed
``TaskBatchSampler``.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from dualspeech.data.encoding import length_checks
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

    def _pad_id(self) -> int:
        tok = self.templates.vocab.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else self.templates.eos_id

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
        return collate_encoded(encs, tasks, self._pad_id(), self.acoustic, codes, speakers)


def collate_encoded(enc: list[Encoded], tasks: list[str], pad_id: int, acoustic=None,
                    codes: list | None = None, speakers: list | None = None) -> dict:
    """Training batch of encoded examples (right padded; ids as lists or numpy arrays);
    ``codes`` / ``speakers``: AcousticGPT targets and speaker embeddings of the generation
    examples, in order."""
    input_ids = pad_right([e.input_ids for e in enc], pad_id)
    labels = pad_right([e.labels for e in enc], IGNORE)
    pos = torch.arange(input_ids.shape[1])[None, :]
    attention_mask = (pos < torch.tensor([len(e.input_ids) for e in enc])[:, None]).long()
    prompt_len = torch.tensor([e.prompt_len for e in enc])[:, None]
    spans = torch.tensor([e.target_span or (0, 0) for e in enc])
    batch = {
        "input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
        "is_generation": torch.tensor([TASKS[t].kind == "generation" for t in tasks]),
        "prompt_mask": pos < prompt_len,
        "target_mask": (pos >= spans[:, :1]) & (pos < spans[:, 1:]),
        "tasks": list(tasks),
        "n_tokens": int(attention_mask.sum()),
    }
    if acoustic is not None:
        idx = [i for i, t in enumerate(tasks) if TASKS[t].kind == "generation"]
        batch["acoustic_index"] = torch.tensor(idx, dtype=torch.long)
        if idx:
            batch["acoustic_tokens"], batch["acoustic_mask"] = acoustic.layout.targets(codes)
            batch["speaker_embedding"] = speaker_matrix(speakers, acoustic.spk_dim)
    return batch


def pad_right(seqs: list, pad: int) -> torch.Tensor:
    """(B, T) LongTensor of id sequences padded on the right (numpy: one copy per row)."""
    out = np.full((len(seqs), max(len(s) for s in seqs)), pad, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return torch.from_numpy(out)


def speaker_matrix(rows: list, dim: int) -> torch.Tensor:
    """(B, dim) float32 speaker prompts; a wrong size names the config entry to fix."""
    rows = [np.asarray(r, dtype=np.float32).reshape(-1) for r in rows]
    bad = {r.shape[0] for r in rows} - {dim}
    if bad:
        raise ValueError(f"speaker embeddings have {sorted(bad)} dims, acoustic_gpt.spk_dim is {dim}")
    return torch.from_numpy(np.stack(rows))
