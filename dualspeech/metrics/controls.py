"""The controls beside each metric: what luck, or a model that learnt nothing, would score.

Two sources (docs/metrics.md: controls):

* computed while scoring, no decode needed: SER chance (1 / number of emotion classes) and the
  majority-class accuracy of the test set; SIM of the output to another speaker's prompt
  (TTS / VC: the output should be closer to its own prompt than to a stranger's);
* control decodes (``decode.control``, dualspeech/inference/controls.py) scored like the model's
  decode: ``shuffled_speech``, ``untrained``, ``resynth`` and ``ground_truth``, attached to the
  model's results by test-set name.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from dualspeech.data.tasks import EMOTIONS
from dualspeech.inference.config import CONTROLS, GROUND_TRUTH
from dualspeech.metrics.bootstrap import Estimate, bootstrap

# control name -> what the report calls it (table cells and footnote): the control decodes
# (inference/config.py CONTROLS) but ground truth, and the controls computed while scoring
CONTROL_LABELS = {
    "shuffled_speech": ("shuffled", "the trained model with each test example's input speech "
                        "replaced by another test example's (seeded derangement)"),
    "chance": ("chance", "1 / number of emotion classes"),
    "majority": ("majority", "always answering the test set's most frequent emotion"),
    "untrained": ("untrained", "the same model at initialisation (same config and seed, "
                  "no training step)"),
    "resynth": ("resynth", "the reference speech's own codec ids decoded by the codec"),
    "other_speaker": ("other spk", "SIM of the output to the prompt of another test speaker"),
}
DECODE_CONTROLS = tuple(c for c in CONTROLS if c != GROUND_TRUTH)   # attached beside the numbers


def _constant(value: float, n: int) -> Estimate:
    return Estimate(value, value, value, n)


def ser_controls(refs: list[str], n_boot: int, seed: int) -> dict[str, dict[str, Estimate]]:
    """Chance and majority-class accuracy (%) of an emotion test set; chance UAR."""
    chance = _constant(100.0 / len(EMOTIONS), len(refs))
    majority_label, _ = Counter(refs).most_common(1)[0]
    hit = (np.asarray(refs) == majority_label).astype(float)
    majority = bootstrap(hit, lambda s: 100.0 * s.mean(), n_boot, seed)
    return {"accuracy": {"chance": chance, "majority": majority}, "uar": {"chance": chance}}


def other_speaker_partners(speakers: list[str | None], seed: int) -> list[int | None]:
    """For each item, the index of an item with a different known speaker (seeded), or None."""
    order = np.random.default_rng(seed).permutation(len(speakers))
    partners: list[int | None] = []
    for i, spk in enumerate(speakers):
        if spk is None:
            partners.append(None)
            continue
        start = int(np.flatnonzero(order == i)[0])
        rotated = np.concatenate([order[start + 1:], order[:start]])
        partners.append(next((int(j) for j in rotated
                              if speakers[j] is not None and speakers[j] != spk), None))
    return partners


def attach_controls(results: dict, control_results: dict[str, dict]) -> None:
    """Copy each control decode's metrics into ``results[name]["controls"]`` (ground truth into
    ``results[name]["ground_truth"]``), matching test sets by name."""
    for control, by_name in control_results.items():
        for name, res in by_name.items():
            if name not in results:
                continue
            results[name].setdefault("control_counts", {})[control] = res["counts"]
            if "asr_model" in res["meta"]:
                results[name]["meta"].setdefault("asr_model", res["meta"]["asr_model"])
            if control == GROUND_TRUTH:
                results[name]["ground_truth"] = dict(res["metrics"])
                continue
            ctl = results[name].setdefault("controls", {})
            for metric, est in res["metrics"].items():
                if metric in results[name]["metrics"]:
                    ctl.setdefault(metric, {})[control] = est
