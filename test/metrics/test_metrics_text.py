"""WER/CER, BLEU, SER labels and bootstrap checked by hand and against jiwer/sacrebleu directly."""
import jiwer
import numpy as np
import pytest
import sacrebleu

from dualspeech.metrics.bootstrap import bootstrap
from dualspeech.metrics.labels import (UNPARSED, accuracy, parse_emotion, recall_stats,
                                      unweighted_average_recall)
from dualspeech.metrics.text import bleu_from_stats, bleu_stats, edit_counts, normalize_english


def test_wer_hand_computed():
    # ref 1: "the cat sat" vs "the bat sat down": 1 sub + 1 ins; ref 2: "hello world" vs "hello": 1 del
    c = edit_counts(["The cat sat.", "Hello, world!"], ["the bat sat down", "hello"])
    assert list(c.errors) == [2, 1] and list(c.ref_len) == [3, 2]
    assert (c.sub, c.dele, c.ins) == (1, 1, 1)
    assert c.rate == pytest.approx(100 * 3 / 5)   # corpus level, not mean of 66.7% and 50%


def test_wer_matches_jiwer_after_normalisation():
    refs = ["It's twenty-one degrees, Mr. Smith.", "colour of the sea", "a b c d e"]
    hyps = ["it is 21 degrees mister smith", "color of sea", "a x c e f g"]
    c = edit_counts(refs, hyps)
    direct = jiwer.wer([normalize_english(r) for r in refs], [normalize_english(h) for h in hyps])
    assert c.rate == pytest.approx(100 * direct)
    assert list(c.errors)[:2] == [0, 1]   # normaliser maps numbers and spellings


def test_cer_and_empty_reference():
    c = edit_counts(["abc"], ["abd"], unit="char", normalizer="basic")
    assert c.rate == pytest.approx(100 / 3)
    assert c.rate == pytest.approx(100 * jiwer.cer("abc", "abd"))
    e = edit_counts(["", "a b"], ["x y", "a b"])
    assert list(e.errors) == [2, 0] and list(e.ref_len) == [0, 2] and e.rate == 100.0
    with pytest.raises(ValueError, match="2 references but 1"):
        edit_counts(["a", "b"], ["a"])


def test_bleu_equals_sacrebleu_corpus_score():
    refs = ["Die Katze sitzt auf der Matte.", "Ich habe heute keine Zeit.", "Guten Morgen!"]
    hyps = ["Die Katze sitzt auf einer Matte.", "Heute habe ich keine Zeit.", ""]
    bs = bleu_stats(refs, hyps)
    direct = sacrebleu.corpus_bleu(hyps, [refs])
    assert bs.score == pytest.approx(direct.score, abs=1e-9)
    assert bs.stats.shape == (3, 10) and bs.stats[2, 0] == 0
    assert "tok:13a" in bs.signature and "smooth:exp" in bs.signature
    # perfect hypothesis -> 100; summing per-utterance stats reproduces the corpus score
    assert bleu_stats(refs, refs).score == pytest.approx(100.0)
    assert bleu_from_stats(bs.stats.sum(0)) == pytest.approx(direct.score)


def test_emotion_parsing_and_scores():
    assert parse_emotion("Happy") == "happy"
    assert parse_emotion("The speaker sounds sad, not angry.") == "sad"   # first keyword wins
    assert parse_emotion("I sense anger here") == "angry"
    assert parse_emotion("unhappy") == "sad"
    assert parse_emotion("It is hard to say.") == UNPARSED
    refs = ["happy", "happy", "happy", "sad", "angry", "neutral"]
    preds = ["happy", "happy", "sad", "sad", "neutral", UNPARSED]
    assert accuracy(refs, preds) == pytest.approx(100 * 3 / 6)
    # recalls: happy 2/3, sad 1, angry 0, neutral 0 -> mean 41.67
    assert unweighted_average_recall(recall_stats(refs, preds)) == pytest.approx(100 * (2 / 3 + 1) / 4)
    with pytest.raises(ValueError, match="not in"):
        recall_stats(["bored"], ["happy"])
    # a bootstrap resample without some classes: their columns are empty and skipped
    assert unweighted_average_recall(recall_stats(refs, preds)[:3]) == pytest.approx(100 * 2 / 3)


def test_bootstrap_interval_is_seeded_and_brackets_the_value():
    rng = np.random.default_rng(1)
    x = rng.normal(5.0, 1.0, size=200)
    a = bootstrap(x, np.mean, n_boot=500, seed=3)
    b = bootstrap(x, np.mean, n_boot=500, seed=3)
    assert a == b
    assert a.ci_low < a.value < a.ci_high
    # the percentile CI of a mean is about +-1.96 standard errors
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert a.ci_high - a.ci_low == pytest.approx(2 * 1.96 * se, rel=0.2)
    const = bootstrap(np.ones(10), np.mean, n_boot=50)
    assert const.ci_low == const.ci_high == 1.0
    with pytest.raises(ValueError, match="empty"):
        bootstrap(np.zeros(0), np.mean)
