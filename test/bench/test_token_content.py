"""The token-content probe finds words that the ids carry, and not ones they do not."""
import random

import numpy as np

from dualspeech.bench.token_content import probe, slot_labels
from dualspeech.data.mini_grammar import COLORS, NAMES, NOUNS, NUMBERS
from dualspeech.metrics.bootstrap import bootstrap, mean_metric


LEXICON = {w: i for i, w in enumerate(
    [*NAMES, "bought", *(n[0] for n in NUMBERS), *(c[0] for c in COLORS), *(n[0] for n in NOUNS)])}


def corpus(n: int, seed: int, informative: bool):
    """Mini sentences whose ids spell their words (one id per word + noise) or are pure noise."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        text = (f"{rng.choice(NAMES)} bought {rng.choice(NUMBERS)[0]} {rng.choice(COLORS)[0]} "
                f"{rng.choice(NOUNS)[0]}.")
        noise = [rng.randrange(500, 1000) for _ in range(20)]
        ids = [LEXICON[w] for w in text.rstrip(".").split()] if informative else []
        out.append((np.array(ids + noise), text))
    return out


def test_probe_reads_informative_ids_and_not_noise():
    good = probe(corpus(400, 0, True), corpus(100, 1, True))
    noise = probe(corpus(400, 0, False), corpus(100, 1, False))
    assert set(good) == {"name", "number", "color", "noun"}
    assert all(correct.mean() > 0.9 for correct, _ in good.values())
    assert all(correct.mean() < 0.35 for correct, _ in noise.values())


def test_slot_labels_and_interval():
    assert slot_labels("Tom bought three red apples at the market.") == {
        "name": "Tom", "number": "three", "color": "red", "noun": "apples"}
    assert slot_labels("Who bought the apples?")["name"] is None
    est = bootstrap(np.array([True] * 45 + [False] * 5), mean_metric)   # the probe's interval
    lo, hi = est.ci_low, est.ci_high
    assert lo < 0.9 < hi and 0 <= lo and hi <= 1
