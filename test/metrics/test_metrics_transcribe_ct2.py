"""Scoring's CTranslate2 engine on real Whisper tiny.en weights (the pip package's CTranslate2
files) and espeak-ng speech: it reads what openai-whisper reads, batched equals one at a time,
Whisper's temperature fallback runs seeded, the length cap holds, and bad model dirs, engines
and specs get errors that say what to do."""
import numpy as np
import pytest

from dualspeech import pretrained
from dualspeech.metrics.text import edit_counts
from dualspeech.metrics.transcribe import TEMPERATURES, WhisperTranscriber, build_transcriber

SENTENCES = ["please call stella and ask her to bring these things",
             "the weather is very nice today",
             "i would like a cup of coffee"]


@pytest.fixture(scope="module")
def ct2():
    from dualspeech.metrics.transcribe_ct2 import CT2Transcriber

    return CT2Transcriber("whisper:tiny.en", batch_size=2, compute_type="float32")


@pytest.fixture
def speech(make_speech):
    from dualspeech.audio import load_audio

    return [load_audio(make_speech(s, f"u{i}"), 16000)[0] for i, s in enumerate(SENTENCES)]


def test_ct2_reads_what_openai_whisper_reads(ct2, speech):
    """fp32 CTranslate2 and fp32 openai-whisper on the same weights: the same transcripts,
    batched or one at a time; int8 (the CPU default) stays close."""
    batched = ct2.transcribe_waves(speech)
    assert batched == [ct2.transcribe_waves([w])[0] for w in speech]
    assert batched == WhisperTranscriber("whisper:tiny.en", batch_size=3).transcribe_waves(speech)
    assert edit_counts(SENTENCES, batched).rate < 35.0
    int8 = build_transcriber("whisper:tiny.en", "ct2")
    assert (int8.engine, int8.precision) == ("ct2", "int8")
    assert edit_counts(SENTENCES, int8.transcribe_waves(speech)).rate < 35.0
    # a 31 s clip goes through faster-whisper's long-form transcription
    long_wave = np.concatenate([speech[0], np.zeros(16000 * 29, np.float32)])
    assert "stella" in ct2.transcribe_waves([long_wave])[0].lower()


def test_ct2_fallback_runs_every_temperature_seeded(make_speech):
    """Repetitive speech gives a repetitive transcript (gzip ratio > 2.4): decoded again at each
    temperature; a new transcriber samples the same again (CTranslate2 seeds once per model)."""
    from dualspeech.audio import load_audio
    from dualspeech.metrics.transcribe_ct2 import CT2Transcriber

    wave = load_audio(make_speech("hello " * 30, "loop"), 16000)[0]
    asr = CT2Transcriber("whisper:tiny.en", max_tokens_per_s=6.0)
    seen = []
    generate = asr._generate

    def recording(features, n, temperature, sample_len):
        seen.append((temperature, sample_len))
        return generate(features, n, temperature, sample_len)

    asr._generate = recording
    first = asr.transcribe_waves([wave])
    assert [t for t, _ in seen] == list(TEMPERATURES)
    assert {n for _, n in seen} == {asr.sample_len(len(wave) / 16000)} == {62}
    assert CT2Transcriber("whisper:tiny.en", max_tokens_per_s=6.0).transcribe_waves([wave]) == first


def test_ct2_length_cap(speech):
    capped = build_transcriber("whisper:tiny.en", "ct2", max_tokens_per_s=1.0)
    words = capped.transcribe_waves(speech[:1])[0].split()
    assert 0 < len(words) < len(SENTENCES[0].split()) / 2


def test_auto_engine_picks_by_spec(tmp_path):
    assert build_transcriber("whisper:tiny.en", "auto").engine == "ct2"
    assert build_transcriber("random:whisper-debug", "auto").engine == "openai"
    with pytest.raises(ValueError, match="expected one of"):
        build_transcriber("whisper:tiny.en", "onnx")


def test_missing_ct2_model_files_are_named(tmp_path, monkeypatch):
    from dualspeech.config import build
    from dualspeech.metrics.scoring import ScoreConfig

    model_dir = tmp_path / "my_ct2"
    model_dir.mkdir()
    (model_dir / "model.bin").write_bytes(b"\0")
    with pytest.raises(pretrained.PretrainedNotFound, match="config.json, tokenizer.json missing"):
        build_transcriber(str(model_dir), "ct2")
    checkpoint = tmp_path / "mine.pt"
    checkpoint.write_bytes(b"\0")
    with pytest.raises(pretrained.PretrainedNotFound, match="asr_engine: openai"):
        build_transcriber(str(checkpoint), "ct2")
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(pretrained.NETWORK_ENV, raising=False)
    with pytest.raises(pretrained.PretrainedNotFound, match="Systran/faster-whisper-large-v3"):
        pretrained.whisper_ct2_dir("whisper:large-v3")
    assert not (tmp_path / "cache" / "whisper-ct2").exists() or \
        not any((tmp_path / "cache" / "whisper-ct2").iterdir())   # no half-made dir left
    with pytest.raises(ValueError, match="asr_engine='fast'"):
        build(ScoreConfig, {"asr_engine": "fast"}, "score")
