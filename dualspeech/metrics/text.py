"""Text metrics: WER/CER with Whisper's English normaliser, BLEU-4 with sacrebleu.

Every metric keeps per-utterance sufficient statistics (error and reference-word counts; BLEU
n-gram counts) so the corpus score, the bootstrap confidence interval and the per-utterance
table all come from the same numbers.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


@functools.lru_cache(maxsize=1)
def _english_normalizer():
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize_english(text: str) -> str:
    """Whisper's EnglishTextNormalizer (numbers, spellings, punctuation), whitespace-collapsed."""
    return " ".join(_english_normalizer()(text or "").split())


def normalize_basic(text: str) -> str:
    """Lower-case and collapse whitespace only: for non-English text (no English rewrites)."""
    return " ".join((text or "").lower().split())


NORMALIZERS = {"whisper_english": normalize_english, "basic": normalize_basic, "none": lambda t: t or ""}


@dataclass
class ErrorCounts:
    """Per-utterance edit counts: ``errors = sub + del + ins`` over ``ref_len`` units."""
    errors: np.ndarray
    ref_len: np.ndarray
    sub: int
    dele: int
    ins: int

    @property
    def rate(self) -> float:
        return error_rate(self.errors, self.ref_len)


def error_rate(errors: np.ndarray, ref_len: np.ndarray) -> float:
    """Corpus-level rate in percent: total errors / total reference units (not a mean of rates)."""
    total = float(np.sum(ref_len))
    if total == 0:
        return 0.0 if float(np.sum(errors)) == 0 else float("inf")
    return 100.0 * float(np.sum(errors)) / total


def edit_counts(refs: list[str], hyps: list[str], unit: str = "word",
                normalizer: str = "whisper_english") -> ErrorCounts:
    """Align every (ref, hyp) pair with jiwer after normalising both sides.

    ``unit`` is "word" (WER) or "char" (CER; jiwer counts spaces as characters). An empty
    reference contributes its hypothesis length as insertions and 0 reference units.
    """
    import jiwer

    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if unit not in ("word", "char"):
        raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")
    norm = NORMALIZERS[normalizer]
    process = jiwer.process_words if unit == "word" else jiwer.process_characters
    errors = np.zeros(len(refs), dtype=np.int64)
    ref_len = np.zeros(len(refs), dtype=np.int64)
    sub = dele = ins = 0
    for i, (ref, hyp) in enumerate(zip(refs, hyps)):
        r, h = norm(ref), norm(hyp)
        if not r:
            n_hyp = len(h.split()) if unit == "word" else len(h)
            errors[i], ins = n_hyp, ins + n_hyp
            continue
        out = process(r, h)
        errors[i] = out.substitutions + out.deletions + out.insertions
        ref_len[i] = out.substitutions + out.deletions + out.hits
        sub, dele, ins = sub + out.substitutions, dele + out.deletions, ins + out.insertions
    return ErrorCounts(errors, ref_len, sub, dele, ins)


@dataclass
class BleuStats:
    """Per-utterance sacrebleu statistics: rows of [hyp_len, ref_len, correct_1..4, total_1..4]."""
    stats: np.ndarray
    signature: str

    @property
    def score(self) -> float:
        return bleu_from_stats(self.stats.sum(axis=0))


@functools.lru_cache(maxsize=4)
def _bleu(tokenize: str):
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize=tokenize)


def bleu_stats(refs: list[str], hyps: list[str], tokenize: str = "13a") -> BleuStats:
    """sacrebleu's own segment statistics, so the corpus score equals ``corpus_score``."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    bleu = _bleu(tokenize)
    hyps = [h or "" for h in hyps]
    stats = np.asarray(bleu._extract_corpus_statistics(hyps, [[r or "" for r in refs]]),
                       dtype=np.int64).reshape(len(hyps), -1)
    return BleuStats(stats, str(bleu.get_signature()))


def bleu_from_stats(summed: np.ndarray) -> float:
    """Corpus BLEU (sacrebleu defaults: exp smoothing, 4-grams) from summed statistics."""
    return float(_bleu("13a")._compute_score_from_stats([int(x) for x in summed]).score)
