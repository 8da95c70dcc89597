"""Multi-task batch sampler: task mixing weights + token-length bucketing, resumable.

Batches are lists of ``(task, index)``. How one epoch is drawn:

* every task has a stream of its example indices (a fresh permutation each pass, so a task
  drawn more often than its size cycles through its data);
* ``per_task`` mode (paper: one task per batch): draw a task by its weight; if that task has no
  ready batch, pull examples worth ``buffer_batches * max_tokens`` tokens from its stream, sort
  them by length and cut them into batches of at most ``max_tokens`` padded tokens
  (``batch size * longest``), in random order; take one;
* ``mixed`` mode: the buffer is filled by drawing a task per example, so batches mix tasks;
* an epoch ends once as many examples were drawn as the training data holds;
* an optional ``curriculum`` (phases of ``{steps, weights}``) sets the task weights of the first
  optimizer steps, counted across epochs; after its last phase ``weights`` apply. A phase's
  weights name the tasks it trains (a task it does not name is off). Example: the understanding
  tasks alone first, so the model learns to listen before it learns to speak. In ``mixed``
  mode the sort buffer filled before a phase ends is used up first, so a boundary is soft by
  the rest of one buffer (about ``buffer_batches`` batches); in ``per_task`` mode it is exact.

Everything comes from ``numpy.random.default_rng([seed, epoch, ...])``: the same epoch always
gives the same batches. Batches are generated lazily (start-up does not build the epoch), and
``state_dict(batches_done)`` / ``load_state_dict`` resume exactly without re-iterating: the
state is the RNG state, two ints per task stream, the pending sort buffers and the number of
batch groups drawn before the epoch (where the curriculum stands). Under DDP,
rank r takes global batches r, r+W, r+2W, ... (an epoch is cut to a multiple of W), so W ranks
see the same batches as one process with W-step accumulation.
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
    curriculum: list = field(default_factory=list)   # [{steps: N, weights: {task: w}}, ...]

    def __post_init__(self):
        if self.mode not in ("per_task", "mixed"):
            raise ValueError(f"data.sampler.mode={self.mode!r}; use per_task or mixed")
        if self.max_tokens < 1 or self.max_batch_size < 1 or self.buffer_batches < 1:
            raise ValueError("data.sampler.max_tokens, max_batch_size, buffer_batches must be >= 1")
        _check_weights(self.weights, "data.sampler.weights")
        for k, phase in enumerate(self.curriculum):
            where = f"data.sampler.curriculum[{k}]"
            if not isinstance(phase, dict) or set(phase) != {"steps", "weights"}:
                raise ValueError(f"{where} must be {{steps: N, weights: {{task: w, ...}}}}, "
                                 f"got {phase!r}")
            if not isinstance(phase["steps"], int) or phase["steps"] < 1:
                raise ValueError(f"{where}.steps must be an integer >= 1, got {phase['steps']!r}")
            _check_weights(phase["weights"], f"{where}.weights")


def _check_weights(weights, where: str) -> None:
    if not isinstance(weights, dict):
        raise ValueError(f"{where} must be a mapping task -> weight, got {weights!r}")
    bad = {k: v for k, v in weights.items() if not isinstance(v, (int, float)) or v < 0}
    if bad:
        raise ValueError(f"{where} must be >= 0 numbers, got {bad}")


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
    """Endless shuffled passes over one task's examples, positioned by (pass, pos) so its state
    is two ints (restoring redraws the pass permutations: numpy work, no data). With ``groups``
    (the shard of every example) a pass visits the shards in random order, each shard's
    examples in that pass's random order: a sort buffer's batches come from one or two shards,
    so a reader keeps few shards open (see ``dualspeech.data.shards``)."""

    def __init__(self, n: int, groups: np.ndarray | None, key: list[int]):
        self.n, self.groups, self.key = n, groups, key
        self.pass_, self.pos = 0, 0
        self.reset()

    def reset(self) -> None:
        self.rng, self.perms_drawn, self.order = np.random.default_rng(self.key), 0, None

    def take(self) -> int:
        if self.pos >= self.n:
            self.pass_, self.pos, self.order = self.pass_ + 1, 0, None
        if self.order is None:
            while self.perms_drawn <= self.pass_:
                order = self.rng.permutation(self.n)
                self.perms_drawn += 1
            if self.groups is not None:
                shard_rank = np.random.default_rng([*self.key, self.pass_, 1]).permutation(
                    int(self.groups.max()) + 1)
                order = order[np.argsort(shard_rank[self.groups[order]], kind="stable")]
            self.order = order
        self.pos += 1
        return int(self.order[self.pos - 1])


class _Epoch:
    """Generator state of one epoch: everything a resumed run needs to continue exactly."""

    def __init__(self, sampler: "TaskBatchSampler", epoch: int):
        seed = sampler.cfg.seed
        self.epoch, self.group, self.drawn = epoch, 0, 0
        self.offset = sampler.epoch_offset(epoch)   # batch groups drawn before this epoch
        self.rng = np.random.default_rng([seed, epoch])
        self.streams = {t: _Stream(len(sampler.lengths[t]), sampler.groups.get(t),
                                   [seed, epoch, k + 1]) for k, t in enumerate(sampler.tasks)}
        self.pending: dict[str, list] = {}

    def snapshot(self) -> dict:
        return {"epoch": self.epoch, "group": self.group, "drawn": self.drawn,
                "offset": self.offset, "rng": self.rng.bit_generator.state,
                "streams": {t: [s.pass_, s.pos] for t, s in self.streams.items()},
                "pending": {k: list(v) for k, v in self.pending.items()}}

    def restore(self, snap: dict) -> None:
        self.epoch, self.group, self.drawn = snap["epoch"], snap["group"], snap["drawn"]
        self.offset = snap.get("offset", 0)     # states saved before curricula existed: 0
        self.rng.bit_generator.state = snap["rng"]
        for t, (p, pos) in snap["streams"].items():
            s = self.streams[t]
            s.pass_, s.pos = p, pos
            s.reset()
        self.pending = {k: [[tuple(x) for x in b] for b in v] for k, v in snap["pending"].items()}


class TaskBatchSampler:
    """Batch sampler over ``{task: token lengths}``; see the module docstring.

    Hand-written rather than lhotse's DynamicBucketingSampler + ``CutSet.mux``: those bucket by
    duration and mix cuts, while the paper draws one task per batch by weight under an
    LLM-token budget, and their resume fast-forwards through the epoch; here the state is a few
    ints plus the pending sort buffers, so ``load_state_dict`` continues without re-iterating.

    ``groups``: {task: shard of every example} (streamed shards: see ``_Stream``).
    ``batches_per_step``: batches per rank in one optimizer step (gradient accumulation), so
    that the curriculum's ``steps`` are optimizer steps."""

    SNAPSHOTS = 256   # batch positions whose state stays available (> DataLoader prefetch)

    def __init__(self, lengths: dict[str, list[int]], cfg: SamplerConfig,
                 rank: int | None = None, world_size: int | None = None,
                 groups: dict[str, np.ndarray] | None = None, batches_per_step: int = 1):
        self.cfg = cfg
        tasks = [t for t, ls in lengths.items() if len(ls)]
        self.lengths = {t: np.asarray(lengths[t], dtype=np.int64) for t in tasks}
        self.groups = {t: np.asarray(g) for t, g in (groups or {}).items() if t in tasks}
        unweighted = [t for t in tasks if t not in cfg.weights]
        if unweighted:
            raise ValueError(f"data.sampler.weights has no weight for task(s) {unweighted}; "
                             "add them (0 to leave a task out)")
        phases = [(p["steps"], p["weights"], f"data.sampler.curriculum[{k}].weights")
                  for k, p in enumerate(cfg.curriculum)]
        phases.append((0, cfg.weights, "data.sampler.weights"))      # 0: to the end
        self.tasks = [t for t in tasks if any(w.get(t, 0) > 0 for _, w, _ in phases)]
        self.phases = []     # (last global batch group + 1 of the phase, task probabilities)
        end = 0
        for steps, weights, where in phases:
            w = np.array([weights.get(t, 0) for t in self.tasks], dtype=np.float64)
            if w.sum() <= 0:
                raise ValueError(f"no training examples for any task with a weight > 0 in {where} "
                                 f"(data has {tasks}, weights {weights})")
            end = end + steps * batches_per_step if steps else np.inf
            self.phases.append((end, w / w.sum()))
        self.epoch_examples = sum(len(self.lengths[t]) for t in self.tasks)
        if rank is None or world_size is None:
            rank, world_size = _dist_rank_world()
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self._offsets = {0: 0}    # epoch -> batch groups drawn before it (known so far)
        self._resume: dict | None = None
        self._snapshots: dict[int, dict] = {}
        self._live: _Epoch | None = None

    def set_epoch(self, epoch: int) -> None:
        if self._resume is not None and self._resume["epoch"] != epoch:
            self._resume = None
        if epoch != self.epoch:
            self._snapshots, self._live = {}, None
        self.epoch = epoch

    # -- generation ---------------------------------------------------------------------------
    def probs_at(self, group: int) -> np.ndarray:
        """Task probabilities (over ``self.tasks``) of global batch group ``group``."""
        return next(p for end, p in self.phases if group < end)

    def epoch_offset(self, epoch: int) -> int:
        """Batch groups drawn in the epochs before ``epoch``. Known once an epoch was iterated to
        its end or restored from a state; else drawn again (index work only, no data). Without a
        curriculum nothing depends on it, and it is not drawn."""
        if len(self.phases) == 1:
            return 0
        known = max(e for e in self._offsets if e <= epoch)
        while known < epoch:
            st = _Epoch(self, known)
            while self._next_group(st) is not None:
                pass
            self._offsets[known + 1] = st.offset + st.group
            known += 1
        return self._offsets[epoch]

    def _next_group(self, st: _Epoch) -> list | None:
        """The next W global batches (one per rank), or None at the end of the epoch (an epoch
        ends once it drew as many examples as the data holds; a partial group is dropped)."""
        group, probs = [], self.probs_at(st.offset + st.group)
        for _ in range(self.world_size):
            if st.drawn >= self.epoch_examples:
                return None
            key = str(st.rng.choice(self.tasks, p=probs)) if self.cfg.mode == "per_task" else "*"
            if not st.pending.get(key):
                st.pending[key] = self._fill(key, st, probs)
            batch = st.pending[key].pop()
            group.append(batch)
            st.drawn += len(batch)
        st.group += 1
        return group

    def _groups(self, epoch: int, resume: dict | None = None):
        """(state before the group, group) for the groups of ``epoch``; ``self._live`` is the
        running state (what ``state_dict`` reads while the iterator is suspended)."""
        st = self._live = _Epoch(self, epoch)
        if resume is not None:
            st.restore(resume)
        while True:
            snap = st.snapshot()
            group = self._next_group(st)
            if group is None:
                self._offsets[epoch + 1] = st.offset + st.group
                st.group = -1     # exhausted: no position to report
                return
            yield snap, group

    def global_batches(self, epoch: int) -> list[list[tuple[str, int]]]:
        """All batches of one epoch, for every rank together (rank r owns every W-th)."""
        return [b for _, g in self._groups(epoch) for b in g]

    def _fill(self, key, st: _Epoch, probs: np.ndarray) -> list[list[tuple[str, int]]]:
        """Pull one buffer of examples, bucket it into batches in random order."""
        items, total = [], 0
        budget = self.cfg.buffer_batches * self.cfg.max_tokens
        while total < budget:
            task = key if key != "*" else str(st.rng.choice(self.tasks, p=probs))
            i = st.streams[task].take()
            items.append((task, i))
            total += int(self.lengths[task][i])
        flat_len = np.array([self.lengths[t][i] for t, i in items])
        batches = make_batches(list(range(len(items))), flat_len, self.cfg.max_tokens,
                               self.cfg.max_batch_size)
        batches = [[items[j] for j in b] for b in batches]
        st.rng.shuffle(batches)
        return batches

    def __iter__(self):
        resume, self._resume = self._resume, None
        self._snapshots = {}
        for snap, group in self._groups(self.epoch, resume):
            self._snapshots[snap["group"]] = snap
            self._snapshots.pop(snap["group"] - self.SNAPSHOTS, None)
            yield group[self.rank]

    def __len__(self) -> int:
        """Batches per rank in this epoch (generates the epoch's index lists: O(epoch))."""
        return sum(1 for _ in self._groups(self.epoch))

    # -- exact resume -------------------------------------------------------------------------
    def _signature(self) -> dict:
        sig = {"tasks": self.tasks, "examples": self.epoch_examples, "seed": self.cfg.seed,
               "mode": self.cfg.mode, "max_tokens": self.cfg.max_tokens,
               "world_size": self.world_size}
        if self.cfg.curriculum:      # absent without one: older states stay loadable
            sig["curriculum"] = [[float(end), p.tolist()] for end, p in self.phases[:-1]]
        return sig

    def state_dict(self, batches_done: int | None = None) -> dict:
        """Where to continue after this rank consumed ``batches_done`` batches of the current
        epoch (default: every batch iterated so far). The states of the last ``SNAPSHOTS``
        batches are kept, so batches a DataLoader prefetched but the trainer never used are
        drawn again after a resume."""
        live = self._live
        if batches_done is None:
            batches_done = (live.group if live is not None and live.group >= 0
                            else (self._resume or {}).get("group", 0))
        if live is not None and live.group == batches_done:
            snap = live.snapshot()
        elif batches_done in self._snapshots:
            snap = self._snapshots[batches_done]
        elif self._resume is not None and self._resume["group"] == batches_done:
            snap = self._resume
        elif batches_done == 0:
            snap = _Epoch(self, self.epoch).snapshot()
        else:
            raise ValueError(f"no sampler state at batch {batches_done} of epoch {self.epoch} "
                             f"(kept: {min(self._snapshots, default=None)}.."
                             f"{max(self._snapshots, default=None)})")
        return {"signature": self._signature(), **snap}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` at the next ``iter()`` (for its epoch)."""
        if state.get("signature") != self._signature():
            raise ValueError(f"sampler state was saved for other data or settings "
                             f"({state.get('signature')}) than these ({self._signature()})")
        self.epoch = state["epoch"]
        self._offsets[self.epoch] = state.get("offset", 0)
        self._resume = {k: v for k, v in state.items() if k != "signature"}


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
