"""Multi-task batch sampler: task mixing weights + token-length bucketing, resumable.

Batches are lists of ``(task, index)``. How one epoch is drawn:

* every task has a stream of its example indices (a fresh permutation each pass, so a task
  drawn more often than its size cycles through its data);
* ``per_task`` mode (paper: one task per batch): draw a task by its weight; if that task has no
  ready batch, pull examples worth ``buffer_batches * max_tokens`` tokens from its stream, sort
  them by length and cut them into batches of at most ``max_tokens`` padded tokens
  (``batch size * longest``), in random order; take one;
* ``mixed`` mode: the buffer is filled by drawing a task per example, so batches mix tasks;
* an epoch ends once as many examples were drawn as the training data holds.

Everything comes from ``numpy.random.default_rng([seed, epoch, ...])``: the same epoch always
gives the same batches, which is what exact resume needs (the trainer re-iterates and skips the
batches it consumed). Under DDP, rank r takes global batches r, r+W, r+2W, ... (an epoch is cut
to a multiple of W), so W ranks see the same batches as one process with W-step accumulation.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PAPER_TASK_WEIGHTS = {"asr": 0.2, "tts": 0.2, "vc": 0.2, "t2st": 0.2, "sc": 0.1, "sqa": 0.2,
                      "s2tt": 0.2, "ser": 0.1}


@dataclass
class SamplerConfig:
    """``data.sampler`` config section."""
    weights: dict = field(default_factory=lambda: dict(PAPER_TASK_WEIGHTS))
    mode: str = "per_task"            # per_task | mixed
    max_tokens: int = 4096            # padded LLM tokens per batch (batch size * longest)
    max_batch_size: int = 64
    buffer_batches: int = 16          # sort buffer, in batches (bigger: less padding)
    seed: int = 0

    def __post_init__(self):
        if self.mode not in ("per_task", "mixed"):
            raise ValueError(f"data.sampler.mode={self.mode!r}; use per_task or mixed")
        if self.max_tokens < 1 or self.max_batch_size < 1 or self.buffer_batches < 1:
            raise ValueError("data.sampler.max_tokens, max_batch_size, buffer_batches must be >= 1")
        bad = {k: v for k, v in self.weights.items() if not isinstance(v, (int, float)) or v < 0}
        if bad:
            raise ValueError(f"data.sampler.weights must be >= 0 numbers, got {bad}")


def make_batches(indices: list[int], lengths: np.ndarray, max_tokens: int,
                 max_batch_size: int) -> list[list[int]]:
    """Greedy length-sorted batching under a padded-token budget."""
    order = sorted(indices, key=lambda i: lengths[i])
    batches, cur, longest = [], [], 0
    for i in order:
        new_longest = max(longest, int(lengths[i]))
        if cur and ((len(cur) + 1) * new_longest > max_tokens or len(cur) >= max_batch_size):
            batches.append(cur)
            cur, new_longest = [], int(lengths[i])
        cur.append(i)
        longest = new_longest
    if cur:
        batches.append(cur)
    return batches


class _Stream:
    """Endless shuffled passes over one task's examples."""

    def __init__(self, n: int, rng: np.random.Generator):
        self.n, self.rng, self.order, self.pos = n, rng, np.empty(0, dtype=np.int64), 0

    def take(self) -> int:
        if self.pos >= len(self.order):
            self.order, self.pos = self.rng.permutation(self.n), 0
        self.pos += 1
        return int(self.order[self.pos - 1])


class TaskBatchSampler:
    """Batch sampler over ``{task: token lengths}``; see the module docstring."""

    def __init__(self, lengths: dict[str, list[int]], cfg: SamplerConfig,
                 rank: int | None = None, world_size: int | None = None):
        self.cfg = cfg
        tasks = [t for t, ls in lengths.items() if len(ls)]
        self.lengths = {t: np.asarray(lengths[t], dtype=np.int64) for t in tasks}
        unweighted = [t for t in tasks if t not in cfg.weights]
        if unweighted:
            raise ValueError(f"data.sampler.weights has no weight for task(s) {unweighted}; "
                             "add them (0 to leave a task out)")
        self.tasks = [t for t in tasks if cfg.weights[t] > 0]
        if not self.tasks:
            raise ValueError(f"no training examples for any task with a weight > 0 "
                             f"(data has {tasks}, weights {cfg.weights})")
        w = np.array([cfg.weights[t] for t in self.tasks], dtype=np.float64)
        self.probs = w / w.sum()
        self.epoch_examples = sum(len(self.lengths[t]) for t in self.tasks)
        if rank is None or world_size is None:
            rank, world_size = _dist_rank_world()
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self, epoch: int) -> list[list[tuple[str, int]]]:
        """All batches of one epoch, for every rank together."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, epoch])
        streams = {t: _Stream(len(self.lengths[t]), np.random.default_rng([cfg.seed, epoch, k + 1]))
                   for k, t in enumerate(self.tasks)}
        budget = cfg.buffer_batches * cfg.max_tokens
        pending: dict[str, list] = {}
        out, drawn = [], 0
        while drawn < self.epoch_examples:
            key = str(rng.choice(self.tasks, p=self.probs)) if cfg.mode == "per_task" else "*"
            if not pending.get(key):
                pending[key] = self._fill(key, streams, rng, budget)
            batch = pending[key].pop()
            out.append(batch)
            drawn += len(batch)
        return out[: len(out) - len(out) % self.world_size]

    def _fill(self, key, streams, rng, budget) -> list[list[tuple[str, int]]]:
        """Pull one buffer of examples, bucket it into batches in random order."""
        items, total = [], 0
        while total < budget:
            task = key if key != "*" else str(rng.choice(self.tasks, p=self.probs))
            i = streams[task].take()
            items.append((task, i))
            total += int(self.lengths[task][i])
        flat_len = np.array([self.lengths[t][i] for t, i in items])
        batches = make_batches(list(range(len(items))), flat_len, self.cfg.max_tokens,
                               self.cfg.max_batch_size)
        batches = [[items[j] for j in b] for b in batches]
        rng.shuffle(batches)
        return batches

    def __iter__(self):
        batches = self.global_batches(self.epoch)
        return iter(batches[self.rank::self.world_size])

    def __len__(self) -> int:
        return len(self.global_batches(self.epoch)) // self.world_size


def _dist_rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def padding_efficiency(batches, lengths: dict[str, np.ndarray]) -> float:
    """Real tokens / padded batch tokens over a list of batches."""
    real = padded = 0
    for b in batches:
        ls = [int(lengths[t][i]) for t, i in b]
        real += sum(ls)
        padded += len(ls) * max(ls)
    return real / max(padded, 1)
