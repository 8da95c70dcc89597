"""Metrics of generated speech on real espeak-ng speech: Whisper tiny.en transcripts (batched
equals one at a time), WER of the transcripts, speaker similarity."""
import numpy as np
import pytest

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
