"""Training data for the USTokenizer: ASR / SER / SQA task examples (schema:
``dualspeech.data.tasks``) -> batches of audio + prompt ids."""
from __future__ import annotations

import logging
import random
import zlib
from pathlib import Path

import torch
from lhotse import CutSet

from dualspeech.audio import load_cut_audio
from dualspeech.data.tasks import parse_set, task_manifest_name, validate_example
from dualspeech.tokenizers.ustokenizer.config import USTokenizerDataConfig
from dualspeech.tokenizers.ustokenizer.frontend import SAMPLE_RATE
from dualspeech.tokenizers.ustokenizer.prompts import PromptBuilder

log = logging.getLogger(__name__)


def task_manifests(data_dir: str | Path, sets: list[str], tasks: list[str]) -> list[Path]:
    """``corpus:part`` sets -> the existing ``<data_dir>/tasks/<corpus>_<task>_<part>.jsonl.gz``.

    A corpus without some task (LibriSpeech has no SER) is fine; no manifest at all is an error.
    """
    found, missing = [], []
    for s in sets:
        corpus, part = parse_set(s)
        for task in tasks:
            path = Path(data_dir) / "tasks" / task_manifest_name(corpus, task, part)
            (found if path.is_file() else missing).append(path)
    for path in missing:
        log.info("no task manifest %s (skipped)", path)
    if not found:
        raise FileNotFoundError(f"none of the task manifests exist: {[str(p) for p in missing]}; "
                                "prepare the data first (recipe stages 1-2)")
    return found


def load_understanding_cuts(paths: list[Path], cfg: USTokenizerDataConfig,
                            max_per_task: int | None = None) -> CutSet:
    """Task examples of ``cfg.tasks`` from ``paths``, ids prefixed with the task (ASR and SQA
    examples share their audio cut), too short / too long ones dropped with a logged count."""
    cuts, dropped = [], {"too_short": 0, "too_long": 0, "other_task": 0}
    for path in paths:
        kept = 0
        for cut in CutSet.from_file(path):
            spec = validate_example(cut)
            if spec.name not in cfg.tasks:
                dropped["other_task"] += 1
            elif cut.duration < cfg.min_cut_duration:
                dropped["too_short"] += 1
            elif cut.duration > cfg.max_cut_duration:
                dropped["too_long"] += 1
            elif max_per_task is None or kept < max_per_task:
                cuts.append(cut.with_id(f"{spec.name}-{cut.id}"))
                kept += 1
    if any(dropped.values()):
        log.warning("dropped examples: %s (durations must be within [%.2f, %.1f] s)", dropped,
                    cfg.min_cut_duration, cfg.max_cut_duration)
    if not cuts:
        raise ValueError(f"no usable examples in {[str(p) for p in paths]}")
    return CutSet.from_cuts(cuts)


class UnderstandingDataset(torch.utils.data.Dataset):
    """CutSet -> {"audio" [B, N], "audio_lens" [B], "prompts": [(prefix, suffix, answer) ids],
    "tasks": [str]}. Training draws the paraphrase at random (seeded, restored on resume);
    evaluation picks it from the cut id, so every paraphrase is used and results repeat.
    ``prompts=None`` (``loss.use_under: false``, no LLM loaded): batches carry no prompts.
    Waves shorter than ``min_seconds`` (``data.min_seconds``) get trailing zeros."""

    def __init__(self, prompts: PromptBuilder | None, train: bool, min_seconds: float = 0.0):
        self.prompts, self.train = prompts, train
        self.min_samples = round(min_seconds * SAMPLE_RATE)

    def __getitem__(self, cuts: CutSet) -> dict:
        waves, prompts, tasks = [], [], []
        for cut in cuts:
            wave = torch.from_numpy(load_cut_audio(cut, SAMPLE_RATE))
            waves.append(torch.nn.functional.pad(wave, (0, max(0, self.min_samples - len(wave)))))
            task = cut.custom["task"]
            tasks.append(task)
            if self.prompts is None:
                continue
            n = self.prompts.num_variants(task)
            variant = random.randrange(n) if self.train else zlib.crc32(cut.id.encode()) % n
            prompts.append(self.prompts.build(task, cut.custom, variant))
        lens = torch.tensor([len(w) for w in waves])
        audio = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
        out = {"audio": audio, "audio_lens": lens, "tasks": tasks}
        if self.prompts is not None:
            out["prompts"] = prompts
        return out
