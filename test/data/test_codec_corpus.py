"""The codec corpus keeps the demo's test speech unseen: no mini test voice, no test sentence;
the plan is seeded."""
from dualspeech.data.codec_corpus import HELD_OUT, VOICES, held_out_texts, plan


def test_plan_leaves_out_the_test_voices_and_sentences():
    utts = plan(20, seed=0)
    assert len(utts) == 20 * len(VOICES) and utts == plan(20, seed=0)
    assert not HELD_OUT & {(v.engine, v.name) for v in VOICES.values()}
    assert not {text for _, text, _, _ in utts} & held_out_texts()
    assert {emo for *_, emo in utts} == {"angry", "happy", "neutral", "sad"}
