"""Emotion labels from free-text LLM answers, accuracy and unweighted average recall (SER).

Parsing rule (documented in docs/metrics.md): the answer is lower-cased and split into words;
the label is the one whose keyword appears FIRST in the answer. Keywords are the label itself
plus common inflections (``happiness``, ``sadness``, ``anger``...). An answer without any keyword
is ``UNPARSED`` and counts as wrong (it is never dropped, so accuracy is over all utterances).
"""
from __future__ import annotations

import re

import numpy as np

from dualspeech.data.tasks import EMOTIONS

UNPARSED = "<unparsed>"
KEYWORDS: dict[str, tuple[str, ...]] = {
    "neutral": ("neutral", "neutrality", "calm"),
    "happy": ("happy", "happiness", "joy", "joyful", "excited", "excitement", "glad"),
    "sad": ("sad", "sadness", "unhappy", "sorrow", "sorrowful"),
    "angry": ("angry", "anger", "mad", "furious", "annoyed"),
}
_WORD_TO_LABEL = {w: label for label, words in KEYWORDS.items() for w in words}


def parse_emotion(answer: str) -> str:
    """The first emotion keyword in ``answer`` -> its label; ``UNPARSED`` if none."""
    for word in re.findall(r"[a-z]+", (answer or "").lower()):
        if word in _WORD_TO_LABEL:
            return _WORD_TO_LABEL[word]
    return UNPARSED


def accuracy(refs: list[str], preds: list[str]) -> float:
    """Percent of utterances whose predicted label equals the reference."""
    if not refs:
        raise ValueError("accuracy of an empty test set")
    return 100.0 * float(np.mean(correct_mask(refs, preds)))


def correct_mask(refs: list[str], preds: list[str]) -> np.ndarray:
    if len(refs) != len(preds):
        raise ValueError(f"{len(refs)} references but {len(preds)} predictions")
    return np.array([r == p for r, p in zip(refs, preds)], dtype=np.float64)


def recall_stats(refs: list[str], preds: list[str],
                 labels: tuple[str, ...] = EMOTIONS) -> np.ndarray:
    """Per-utterance rows for ``unweighted_average_recall``: column 0 is correct (0/1), then one
    membership indicator per class present in ``refs``. Rows, not a number, so the bootstrap
    can resample utterances. A reference label outside ``labels`` is an error: no answer can
    parse to it, so it would silently drag the mean down (data/tasks.py rejects it at prep)."""
    ok = correct_mask(refs, preds)
    unknown = sorted(set(refs) - set(labels))
    if unknown:
        raise ValueError(f"reference labels {unknown} are not in {labels}")
    refs_arr = np.asarray(refs)
    present = [lab for lab in labels if np.any(refs_arr == lab)]
    if not present:
        raise ValueError("unweighted average recall of an empty test set")
    return np.stack([ok] + [refs_arr == lab for lab in present], axis=1).astype(np.float64)


def unweighted_average_recall(stats: np.ndarray) -> float:
    """Mean over classes of that class's recall, in percent, from ``recall_stats`` rows (or a
    bootstrap resample of them: a class absent from the resample is skipped)."""
    ok, member = stats[:, 0], stats[:, 1:].astype(bool)
    return 100.0 * float(np.mean([ok[m].mean() for m in member.T if m.any()]))
