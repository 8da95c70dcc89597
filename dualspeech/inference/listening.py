"""Does a trained DualSpeechLM use its input speech? The listening gap of each understanding task.

The gap is the answer CE (nats per answer token) when every example reads another example's
input speech, minus the CE when it reads its own. The shuffling is the ``shuffled_speech``
derangement of the decode control. A model that has learnt the answer forms, but not to listen,
scores well on the CE and has a gap of about 0. Greedy test metrics can hide this until they are
put beside their controls; the gap shows it on dev data in seconds, without decoding. The
shuffled speech also differs in length, so a model that reads only the length has a small gap
too.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from dualspeech.data.dataset import DataConfig, Example, TaskDataset
from dualspeech.data.tasks import UNDERSTANDING
from dualspeech.data.templates import IGNORE
from dualspeech.inference.controls import shuffle_input_speech


@dataclass
class ListeningGap:
    task: str
    n: int
    matched_ce: float
    shuffled_ce: float

    @property
    def gap(self) -> float:
        return self.shuffled_ce - self.matched_ce


def answer_ce(model, dataset: TaskDataset, examples: list[Example], batch_size: int) -> float:
    """Mean answer-token CE over ``examples``, weighting each batch by its answer tokens."""
    total, tokens = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            batch = dataset.collate(examples[i:i + batch_size])
            n = int((batch["labels"][:, 1:] != IGNORE).sum())
            total += float(model(batch)["text_ce"]) * n
            tokens += n
    return total / max(tokens, 1)


def listening_gaps(model, examples: dict[str, list[Example]], data_cfg: DataConfig,
                   max_examples: int = 24, batch_size: int = 8, seed: int = 0) -> list[ListeningGap]:
    """One :class:`ListeningGap` per understanding task in ``examples`` that has >= 2 examples
    (the first ``max_examples`` by id; generation tasks have no text answer and are left out)."""
    out = []
    for task in sorted(set(examples) & set(UNDERSTANDING)):
        first = sorted(examples[task], key=lambda ex: ex.id)[:max_examples]
        if not first:
            continue
        dataset = TaskDataset({task: first}, model.templates, data_cfg, model.acoustic_spec())
        chosen = dataset.examples[task]          # minus any over data.max_len (logged skips)
        if len(chosen) < 2:
            continue
        shuffled = shuffle_input_speech(chosen, seed)
        out.append(ListeningGap(task, len(chosen), answer_ce(model, dataset, chosen, batch_size),
                                answer_ce(model, dataset, shuffled, batch_size)))
    return out
