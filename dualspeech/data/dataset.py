"""Multi-task DualSpeechLM data: task manifests + token-bearing speech cuts -> model batches.

Inputs (layout and schema: ``dualspeech.data.tasks``), for every ``corpus:part`` source:

* ``<root>/tasks/<corpus>_<task>_<part>.jsonl.gz``: task examples (one lhotse cut each);
* ``<root>/cuts/<corpus>_cuts_<part>.jsonl.gz``: the speech cuts, carrying the custom fields
  written by the token extractors: ``<model.speech.field>`` (e.g. ``ustokens``),
  ``acoustic_tokens`` and ``speaker_embedding``.

Every speech role of an example (``primary`` and its ``links``) is resolved by cut id in the
speech cuts. Examples whose speech lacks the needed token fields, or that are longer than
``data.max_len`` LLM tokens / the AcousticGPT positions, are skipped and counted in the log.
For decoding (``inference=True``) only the inputs are measured: whether a test example is
decoded never depends on its ground truth (the target speech, its length, its tokens).

A batch (``dataset[[(task, i), ...]]``) holds, right padded: ``input_ids``, ``attention_mask``,
``labels`` (-100 = no loss), ``is_generation`` (B,), ``prompt_mask`` / ``target_mask`` (B, T:
prompt positions and target speech positions, for Chain-of-Condition), ``acoustic_index``
(rows of generation examples), ``acoustic_tokens`` / ``acoustic_mask`` (their AcousticGPT
targets), ``speaker_embedding`` (their speaker prompt), ``tasks`` and ``n_tokens``.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dualspeech.data.encoding import (collate_encoded, frames, length_checks, load_tokens, missing_field,
                                      pad_id, speaker_matrix)
from dualspeech.data.sampler import SamplerConfig
from dualspeech.data.tasks import (TASKS, TaskSchemaError, parse_set, speech_cut_ids,
                                   speech_manifest_name, task_manifest_name, validate_example)
from dualspeech.data.templates import TaskTemplates, prompt_batch
from dualspeech.data.token_layout import AcousticSpec

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """``data`` config section."""
    root: str = "data"                       # holds tasks/ and cuts/
    train: list[str] = field(default_factory=lambda: ["mini:train"])   # corpus:part sources
    valid: list[str] = field(default_factory=lambda: ["mini:dev"])
    max_len: int = 2048                      # longest LLM sequence kept (tokens)
    valid_max_examples: int = 32             # per task, for periodic validation
    valid_batch_size: int = 8
    sampler: SamplerConfig = field(default_factory=SamplerConfig)


@dataclass
class Example:
    task: str
    cut: object                              # the task-example cut (text fields in .custom)
    speech: dict                             # role -> speech cut (token fields in .custom)

    @property
    def fields(self) -> dict:
        return self.cut.custom

    @property
    def id(self) -> str:
        return self.cut.id


def load_examples(root: str | Path, sources: list[str], tasks=tuple(TASKS)) -> dict[str, list[Example]]:
    """Task examples of ``sources`` with their speech cuts resolved by id."""
    from lhotse import CutSet

    root = Path(root)
    out: dict[str, list[Example]] = {t: [] for t in tasks}
    skipped: Counter = Counter()
    for source in sources:
        corpus, part = parse_set(source)
        cuts_path = root / "cuts" / speech_manifest_name(corpus, part)
        if not cuts_path.exists():
            raise FileNotFoundError(f"speech cuts {cuts_path} not found (data preparation + "
                                    "token extraction write them; check data.root)")
        speech = {c.id: c for c in CutSet.from_file(cuts_path)}
        found = False
        for task in tasks:
            path = root / "tasks" / task_manifest_name(corpus, task, part)
            if not path.exists():
                continue
            found = True
            for cut in CutSet.from_file(path):
                try:
                    validate_example(cut)
                except TaskSchemaError as e:
                    log.warning("skipping: %s", e)
                    skipped[f"{task}: schema"] += 1
                    continue
                roles = speech_cut_ids(cut)
                missing = [cid for cid in roles.values() if cid not in speech]
                if missing:
                    skipped[f"{task}: linked cut not in {cuts_path.name}"] += 1
                    continue
                out[task].append(Example(task, cut, {r: speech[c] for r, c in roles.items()}))
        if not found:
            raise FileNotFoundError(f"no task manifests {root}/tasks/{corpus}_<task>_{part}"
                                    ".jsonl.gz for source {source!r}")
    for reason, n in sorted(skipped.items()):
        log.warning("skipped %d examples (%s)", n, reason)
    return out


class TaskDataset(torch.utils.data.Dataset):
    """Map-style dataset indexed by batches of ``(task, index)``; see the module docstring."""

    def __init__(self, examples: dict[str, list[Example]], templates: TaskTemplates,
                 cfg: DataConfig, acoustic: AcousticSpec | None = None, inference: bool = False):
        """``acoustic``: the model's ``AcousticSpec`` (``model.acoustic_spec()``), or None when
        the model has no AcousticGPT. ``inference``: prompts only (see the module docstring)."""
        self.templates, self.vocab, self.cfg, self.acoustic = (
            templates, templates.vocab, cfg, acoustic)
        self.inference = inference
        self.field = self.vocab.cfg.field
        self.examples: dict[str, list[Example]] = {}
        self.lengths: dict[str, list[int]] = {}
        skipped: Counter = Counter()
        for task, exs in examples.items():
            keep, lens = [], []
            for ex in exs:
                n, why = self._measure(ex)
                if why:
                    skipped[f"{task}: {why}"] += 1
                    continue
                keep.append(ex)
                lens.append(n)
            if keep:
                self.examples[task], self.lengths[task] = keep, lens
        for reason, n in sorted(skipped.items()):
            log.warning("skipped %d examples (%s)", n, reason)
        if not self.examples:
            raise ValueError("no usable examples: " + (", ".join(
                f"{n}x {r}" for r, n in skipped.items()) or "the manifests are empty"))

    # -- lengths and filtering ----------------------------------------------------------------
    def _roles(self, task: str) -> tuple[list[str], str | None]:
        spec = TASKS[task]
        return list(spec.input_speech), spec.output_speech

    def _measure(self, ex: Example) -> tuple[int, str | None]:
        """LLM token count of an example (its prompt when ``inference``), or a reason to skip
        it (the checks of ``dualspeech.data.encoding``, shared with the shards)."""
        ins, out = self._roles(ex.task)
        why = missing_field(ex.task, ex.speech, self.field,
                            self.acoustic.field if self.acoustic else None, not self.inference)
        if why:
            return 0, why
        if self.inference:       # the prompt only: never the target's length
            n = len(self.encode(ex, with_answer=False).input_ids)
            why = next((r for r, ok in length_checks(n, 0, self.cfg.max_len, None, False)
                        if not ok), None)
            return n, why and f"prompt {why}"
        lens = {r: frames(ex.speech[r], self.field) for r in ins}
        n = self.templates.length(ex.task, ex.fields, lens,
                                  frames(ex.speech[out], self.field) if out else 0)
        n_codes = frames(ex.speech[out], self.acoustic.field) if out and self.acoustic else 0
        why = next((r for r, ok in length_checks(n, n_codes, self.cfg.max_len, self.acoustic,
                                                 out is not None) if not ok), None)
        return n, why

    # -- batches ------------------------------------------------------------------------------
    def __getitem__(self, batch: list[tuple[str, int]]) -> dict:
        return self.collate([self.examples[t][i] for t, i in batch])

    def __len__(self) -> int:
        return sum(len(v) for v in self.examples.values())

    def encode(self, ex: Example, with_answer: bool = True):
        ins, out = self._roles(ex.task)
        speech = {r: load_tokens(ex.speech[r], self.field) for r in ins}
        target = load_tokens(ex.speech[out], self.field) if (out and with_answer) else None
        return self.templates.encode(ex.task, ex.fields, speech, target, with_answer)

    def collate(self, examples: list[Example]) -> dict:
        """Training batch (``dualspeech.data.encoding.collate_encoded``, as the shards give it)."""
        gen = [ex for ex in examples if TASKS[ex.task].kind == "generation"] if self.acoustic else []
        codes = [load_tokens(ex.speech[TASKS[ex.task].output_speech], self.acoustic.field) for ex in gen]
        return collate_encoded([self.encode(ex) for ex in examples], [ex.task for ex in examples],
                               pad_id(self.templates), self.acoustic, codes, self._speakers(gen))

    def _speakers(self, examples: list[Example]) -> list[np.ndarray]:
        """Speaker prompts of generation examples (their ``speaker_ref`` cut)."""
        return [ex.speech["speaker_ref"].load_custom("speaker_embedding") for ex in examples]

    def collate_prompts(self, examples: list[Example]) -> dict:
        """Inference batch: prompts only, left padded (generation prompts end with <boa>)."""
        enc = [self.encode(ex, with_answer=False) for ex in examples]
        batch = {**prompt_batch(enc, pad_id(self.templates)),
                 "tasks": [ex.task for ex in examples], "ids": [ex.id for ex in examples]}
        if self.acoustic and all(TASKS[ex.task].kind == "generation" for ex in examples):
            batch["speaker_embedding"] = speaker_matrix(self._speakers(examples), self.acoustic.spk_dim)
        return batch


def build_datasets(cfg: DataConfig, templates: TaskTemplates, acoustic: AcousticSpec | None,
                   splits=("train", "valid")) -> dict[str, TaskDataset]:
    """Train / valid datasets from a ``data`` config section."""
    out = {}
    for split in splits:
        examples = load_examples(cfg.root, getattr(cfg, split))
        out[split] = TaskDataset(examples, templates, cfg, acoustic)
        log.info("%s: %s", split, ", ".join(f"{t} {len(v)}" for t, v in out[split].examples.items()))
    return out
