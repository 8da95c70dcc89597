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


def unweighted_average_recall(refs: list[str], preds: list[str],
                              labels: tuple[str, ...] = EMOTIONS) -> float:
    """Mean over the classes present in ``refs`` of that class's recall, in percent."""
    ok = correct_mask(refs, preds)
    refs_arr = np.asarray(refs)
    present = [lab for lab in labels if np.any(refs_arr == lab)]
    unknown = sorted(set(refs) - set(labels))
    if unknown:
        raise ValueError(f"reference labels {unknown} are not in {labels}")
    if not present:
        raise ValueError("unweighted average recall of an empty test set")
    return 100.0 * float(np.mean([ok[refs_arr == lab].mean() for lab in present]))
