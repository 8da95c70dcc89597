"""Metrics of generated speech on real espeak-ng speech: Whisper tiny.en transcripts (batched
equals one at a time, the length cap), WER of the transcripts, speaker similarity."""
import numpy as np
import pytest
import soundfile as sf
import torch

from dualspeech.audio import load_audio
from dualspeech.metrics.text import edit_counts

SENTENCES = ["please call stella and ask her to bring these things",
             "the weather is very nice today",
             "i would like a cup of coffee"]


@pytest.fixture(scope="module")
def transcriber():
    from dualspeech.metrics.transcribe import WhisperTranscriber

    return WhisperTranscriber("whisper:tiny.en", batch_size=2)


def test_whisper_transcripts_batched_equal_single(transcriber, make_speech):
    paths = [str(make_speech(s, f"u{i}")) for i, s in enumerate(SENTENCES)]
    batched = transcriber.transcribe_files(paths)
    single = [transcriber.transcribe_files([p])[0] for p in paths]
    assert batched == single
    assert edit_counts(SENTENCES, batched).rate < 35.0   # real weights on espeak speech
    # a 31 s clip goes through the long-form path and still transcribes
    wave = np.concatenate([load_audio(paths[0], 16000)[0], np.zeros(16000 * 29, np.float32)])
    long_text = transcriber.transcribe_waves([wave])[0]
    assert "stella" in long_text.lower()


def test_tokens_per_second_cap_bounds_the_transcript(transcriber, make_speech):
    """The cap follows the audio length (at least 2 s worth) and truncates what is decoded,
    while a generous cap leaves real speech's transcript as it was."""
    from dualspeech.metrics.transcribe import WhisperTranscriber

    path = str(make_speech(SENTENCES[0], "cap"))
    capped = WhisperTranscriber("whisper:tiny.en", max_tokens_per_s=1.0)
    assert capped.sample_len(0.5) == 2 and capped.sample_len(3.2) == 4
    assert capped.sample_len(1000.0) == 224
    short = capped.transcribe_files([path])[0]
    assert 0 < len(short.split()) < len(SENTENCES[0].split()) / 2
    generous = WhisperTranscriber("whisper:tiny.en", max_tokens_per_s=12.0)
    assert generous.transcribe_files([path]) == transcriber.transcribe_files([path])
    with pytest.raises(ValueError, match="max_tokens_per_s"):
        WhisperTranscriber("whisper:tiny.en", max_tokens_per_s=0)


def test_resemblyzer_sim_separates_voices(make_speech, tmp_path):
    from dualspeech.config import ConfigError
    from dualspeech.metrics.speaker_sim import SpeakerSimilarity

    sim = SpeakerSimilarity({"name": "resemblyzer"})
    a1 = str(make_speech("the weather is very nice today", "a1", voice="en-us+m1", pitch=40))
    a2 = str(make_speech("i would like a cup of coffee", "a2", voice="en-us+m1", pitch=40))
    b1 = str(make_speech("i would like a cup of coffee", "b1", voice="en-gb-scotland+f1", pitch=70))
    same, diff = sim.similarity_files([a1, a1], [a2, b1])
    assert same > diff and same > 0.7
    assert sim.similarity_files([a1], [a1])[0] == pytest.approx(1.0, abs=1e-5)
    # a generated clip too short to embed gets no score instead of failing the test set
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(800, np.float32), 16000)
    assert sim.similarity_files([a1], [str(short)]) == [None]
    with pytest.raises(ConfigError, match="unknown speaker encoder"):
        SpeakerSimilarity({"name": "ecapa"})


def test_wavlm_sv_backend_on_a_random_checkpoint(tmp_path, make_speech):
    """The paper's SIM model class, loaded from a local dir (random tiny weights here)."""
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    from dualspeech.metrics.speaker_sim import SpeakerSimilarity

    cfg = WavLMConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, conv_dim=(32, 32), conv_stride=(5, 4),
                      conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                      num_conv_pos_embedding_groups=2, tdnn_dim=(32, 32), tdnn_kernel=(3, 1),
                      tdnn_dilation=(1, 1), xvector_output_dim=24)
    torch.manual_seed(0)
    WavLMForXVector(cfg).save_pretrained(tmp_path / "sv")
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(tmp_path / "sv")
    sim = SpeakerSimilarity({"name": "wavlm_sv", "model": str(tmp_path / "sv")})
    a = str(make_speech("hello there", "a"))
    b = str(make_speech("good morning", "b", voice="en-gb-scotland+f1"))
    assert sim.embed_files([a, b]).shape == (2, 24)
    s = sim.similarity_files([a, a], [a, b])
    assert s[0] == pytest.approx(1.0, abs=1e-5) and -1.0 <= s[1] < 1.0
    with pytest.raises(ValueError, match="local dir"):   # ConfigError is a ValueError
        SpeakerSimilarity({"name": "wavlm_sv"})


def test_score_tts_records_on_real_speech(make_speech, tmp_path):
    """TTS scoring end to end: Whisper WER of the output, SIM to the prompt, DNSMOS; a record
    without a wav is kept (all deletions) and counted as skipped for SIM/DNSMOS."""
    import shutil

    from dualspeech.config import build
    from dualspeech.metrics.scoring import Resources, ScoreConfig, score_records

    (tmp_path / "wav").mkdir()
    (tmp_path / "prompt").mkdir()
    texts = ["please call stella and ask her to bring these things", "the weather is very nice today"]
    recs = []
    for i, text in enumerate(texts):
        shutil.copy(make_speech(text, f"o{i}", voice="en-us+m1"), tmp_path / "wav" / f"u{i}.wav")
        shutil.copy(make_speech("i would like a cup of coffee", f"p{i}", voice="en-us+m1"),
                    tmp_path / "prompt" / f"u{i}.wav")
        recs.append({"id": f"u{i}", "task": "tts", "status": "ok", "wav": f"wav/u{i}.wav",
                     "prompt_wav": f"prompt/u{i}.wav", "ref": {"text": text},
                     "duration": 2.0 + i, "ref_duration": 2.0})
    recs.append({"id": "u2", "task": "tts", "status": "empty", "ref": {"text": "good morning"},
                 "ref_duration": 1.0})
    cfg = build(ScoreConfig, {"n_bootstrap": 50}, "score")
    res = score_records(recs, tmp_path, cfg, Resources(cfg))
    m = res["metrics"]
    assert set(m) == {"wer", "sim", "dnsmos_ovrl", "dnsmos_p808", "eoa", "length_ratio"}
    # 2 of 3 ended by themselves; generated / reference length 1.0 and 1.5 (no wav: no ratio)
    assert m["eoa"]["value"] == pytest.approx(200 / 3) and m["eoa"]["n"] == 3
    assert m["length_ratio"]["value"] == pytest.approx(1.25) and m["length_ratio"]["n"] == 2
    assert [r.get("length_ratio") for r in res["per_utt"]] == [1.0, 1.5, None]
    # ok outputs are near-perfect; the missing one adds 2 deletions to the 19 reference words
    assert m["wer"]["value"] < 40 and res["per_utt"][2]["wer_errors"] == 2
    assert m["sim"]["value"] > 0.7 and m["sim"]["n"] == 2
    assert 1.0 < m["dnsmos_ovrl"]["value"] < 5.0 and m["dnsmos_p808"]["n"] == 2
    # no record names its prompt's speaker: the other-speaker SIM control is skipped, counted
    assert res["counts"] == {"n": 3, "failed": 1, "missing_wav": 1, "sim_skipped": 1,
                             "dnsmos_skipped": 1, "other_speaker_skipped": 3}
    assert "sim" not in res["controls"]
