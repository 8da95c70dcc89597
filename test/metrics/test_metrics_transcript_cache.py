"""The set-level transcript cache: an unchanged set is read back with the same texts, a changed
file or setting transcribes again, a damaged entry is replaced, and scores match no cache."""
import json

import numpy as np
import pytest

from dualspeech.audio import save_wav
from dualspeech.metrics.transcribe import Transcriber
from dualspeech.metrics.transcript_cache import set_key, transcribe_files_cached


class Counting(Transcriber):
    """The shared Transcriber path (length-sorted batches, the cap) with a cheap decoder that
    writes each wave's length and energy, counting the files it transcribes; the real engines
    have their own tests (test_metrics_speech.py, test_metrics_transcribe_ct2.py)."""
    engine, precision = "test", "fp32"
    calls = 0

    def transcribe_files(self, paths):
        Counting.calls += len(paths)
        return super().transcribe_files(paths)

    def _decode_waves(self, waves, sample_len):
        return [f"{len(w)} {float(np.abs(w).sum()):.3f} {sample_len}" for w in waves]


@pytest.fixture()
def asr():
    return Counting("test:model", batch_size=2, language="en", max_tokens=8, max_tokens_per_s=None)


def _wavs(tmp_path, n=3):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = tmp_path / f"u{i}.wav"
        save_wav(p, (0.1 * rng.standard_normal(4000 + 800 * i)).astype(np.float32), 16000)
        paths.append(str(p))
    return paths


def test_unchanged_set_is_read_back_changed_one_is_transcribed(tmp_path, asr):
    paths, cache = _wavs(tmp_path), tmp_path / "cache"
    plain = asr.transcribe_files(paths)
    Counting.calls = 0
    first = transcribe_files_cached(asr, paths, cache)
    again = transcribe_files_cached(asr, paths, cache)
    assert first == again == plain and Counting.calls == 3          # the second run read the cache
    save_wav(paths[1], np.zeros(4800, np.float32), 16000)           # one file changed
    transcribe_files_cached(asr, paths, cache)
    assert Counting.calls == 6 and len(list(cache.glob("*.json"))) == 2


def test_settings_are_part_of_the_key(tmp_path, asr):
    paths = _wavs(tmp_path)
    capped = Counting("test:model", batch_size=2, language="en", max_tokens=8, max_tokens_per_s=3.0)
    assert set_key(asr, paths) != set_key(capped, paths)


def test_damaged_entry_is_replaced(tmp_path, asr, caplog):
    paths, cache = _wavs(tmp_path), tmp_path / "cache"
    good = transcribe_files_cached(asr, paths, cache)
    entry = next(cache.glob("*.json"))
    entry.write_text('{"texts": ["only one"]')                        # truncated JSON
    Counting.calls = 0
    assert transcribe_files_cached(asr, paths, cache) == good and Counting.calls == 3
    assert "unreadable" in caplog.text and json.loads(entry.read_text())["texts"] == good
