"""Do a token field's ids carry the words? A linear probe on the mini corpus, unseen voices.

For each content slot of the mini grammar (name, number, colour, noun), a logistic regression on
the bag of token ids (tf-idf of unigrams) of the training speech predicts which word the
utterance says; it is scored on the test speech, whose voices training never heard (bootstrap
95 % intervals, as in RESULTS.md). Next to it: the majority class (the control) and, with
``--field`` given twice, another token field (e.g. ``ustokens`` vs ``acoustic_tokens``). It
answers whether a model that fails to transcribe lacks information in its input or steps to learn to read it. Last line:
``probe_over_majority=<mean probe accuracy / mean majority accuracy>`` of the first field.

    python -m dualspeech.bin.bench token_content --cuts-dir dump/default/cuts \\
        --field ustokens --field acoustic_tokens
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dualspeech.bench import register
from dualspeech.data.mini_grammar import COLORS, NAMES, NOUNS, NUMBERS
from dualspeech.metrics.bootstrap import bootstrap, mean_metric

SLOTS = {"name": NAMES, "number": [n[0] for n in NUMBERS], "color": [c[0] for c in COLORS],
         "noun": [n[0] for n in NOUNS]}


def slot_labels(text: str) -> dict[str, str | None]:
    """The slot words an English mini sentence says (None: the slot is not in it)."""
    words = text.rstrip(".?!").replace(",", "").split()
    return {slot: next((w for w in words if w in vocab), None) for slot, vocab in SLOTS.items()}


def probe(train: list[tuple[np.ndarray, str]], test: list[tuple[np.ndarray, str]]) -> dict:
    """{slot: (probe correct, majority correct)}: per-utterance booleans over the test
    utterances that say the slot."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    as_doc = lambda ids: " ".join(f"t{int(i)}" for i in ids)   # noqa: E731
    out = {}
    for slot in SLOTS:
        tr = [(as_doc(ids), lab) for ids, text in train if (lab := slot_labels(text)[slot])]
        te = [(as_doc(ids), lab) for ids, text in test if (lab := slot_labels(text)[slot])]
        if len({lab for _, lab in tr}) < 2 or not te:
            continue
        vec = TfidfVectorizer(token_pattern=r"\S+", sublinear_tf=True)
        x_tr = vec.fit_transform([d for d, _ in tr])
        clf = LogisticRegression(C=10.0, max_iter=2000).fit(x_tr, [lab for _, lab in tr])
        pred = clf.predict(vec.transform([d for d, _ in te]))
        truth = np.array([lab for _, lab in te])
        labels, counts = np.unique([lab for _, lab in tr], return_counts=True)
        majority = labels[counts.argmax()]          # the training set's most frequent word
        out[slot] = (pred == truth, truth == majority)
    return out


def load_field(cuts_path: Path, field: str) -> list[tuple[np.ndarray, str]]:
    from lhotse import load_manifest_lazy

    from dualspeech.data.encoding import load_tokens

    pairs = [(load_tokens(c, field), c.supervisions[0].text)
             for c in load_manifest_lazy(cuts_path) if c.has_custom(field) and c.supervisions]
    if not pairs:
        raise SystemExit(f"{cuts_path}: no cut has a {field!r} field (run stages 3-4 first)")
    return pairs


@register("token_content", "linear probe: do speech tokens carry the mini words (unseen voices)")
def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m dualspeech.bin.bench token_content",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cuts-dir", type=Path, required=True,
                   help="dir with mini_cuts_train/test.jsonl.gz (stage 3-4 output)")
    p.add_argument("--field", action="append", default=None,
                   help="token field of the cuts (repeatable; default: ustokens)")
    p.add_argument("--train-part", default="train")
    p.add_argument("--test-part", default="test")
    args = p.parse_args(argv)
    fields = args.field or ["ustokens"]
    print(f"{'field':16s} {'slot':7s} {'n':>4s} {'probe acc [95% CI]':>22s} {'majority':>9s}")
    headline = None
    for field in fields:
        train, test = (load_field(args.cuts_dir / f"mini_cuts_{part}.jsonl.gz", field)
                       for part in (args.train_part, args.test_part))
        result = probe(train, test)
        if not result:
            raise SystemExit(f"{args.cuts_dir}: no test utterance says a mini slot word "
                             f"({', '.join(SLOTS)}); this probe reads the mini corpus only")
        for slot, (correct, majority) in result.items():
            acc = bootstrap(correct, mean_metric)      # the results table's intervals
            print(f"{field:16s} {slot:7s} {acc.n:4d} {acc.value:8.3f} "
                  f"[{acc.ci_low:.3f}, {acc.ci_high:.3f}] {majority.mean():9.3f}")
        if headline is None:
            headline = (np.mean([c.mean() for c, _ in result.values()])
                        / max(np.mean([m.mean() for _, m in result.values()]), 1e-9))
    print(f"probe_over_majority={headline:.3f}")
