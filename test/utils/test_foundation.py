"""Foundation pieces: atomic writes, audio I/O, the task schema, the benchmark CLI."""
from __future__ import annotations

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest
from lhotse import Recording, SupervisionSegment
from lhotse.cut import MonoCut

from dualspeech.audio import AudioError, load_audio, save_wav
from dualspeech.data.tasks import TASKS, TaskSchemaError, speech_cut_ids, validate_example
from dualspeech.utils.io import atomic_path, atomic_write_text, short_hash


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out" / "cuts.jsonl.gz"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.name.endswith(".jsonl.gz") and tmp != target
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists() and list(target.parent.iterdir()) == []
    atomic_write_text(target, "done")
    assert target.read_text() == "done" and short_hash(target) == short_hash(target)


def test_atomic_gzip_size_does_not_depend_on_the_pid(tmp_path, monkeypatch):
    """gzip stores the (temp) file name in its header: the same content written by processes
    with pids of different lengths must give files of the same size (stamps record sizes)."""
    sizes = []
    for pid in (7, 1234567):
        monkeypatch.setattr(os, "getpid", lambda pid=pid: pid)
        out = tmp_path / f"p{len(sizes)}" / "cuts.jsonl.gz"
        with atomic_path(out) as tmp:
            with gzip.open(tmp, "wt") as f:
                f.write("same content\n")
        sizes.append(out.stat().st_size)
    assert sizes[0] == sizes[1]


def test_audio_roundtrip_resample_and_errors(tmp_path):
    sr = 24000
    t = np.arange(sr) / sr
    save_wav(tmp_path / "a.wav", 0.5 * np.sin(2 * np.pi * 440 * t), sr)
    wave, out_sr = load_audio(tmp_path / "a.wav", 16000)
    assert out_sr == 16000 and abs(len(wave) - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * 16000 / len(wave) - 440) < 2
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    with pytest.raises(AudioError, match="cannot read audio"):
        load_audio(tmp_path / "bad.wav")


def _cut(cut_id: str, **custom) -> MonoCut:
    rec = Recording(id=cut_id, sources=[], sampling_rate=16000, num_samples=16000, duration=1.0)
    sup = SupervisionSegment(id=cut_id, recording_id=cut_id, start=0, duration=1.0)
    return MonoCut(id=cut_id, start=0, duration=1.0, channel=0, recording=rec,
                   supervisions=[sup], custom=custom)


def test_task_schema_accepts_valid_and_names_what_is_missing():
    assert len(TASKS) == 8
    ok = _cut("u1", task="vc", text="hello", links={"target": "u2", "speaker_ref": "u3"})
    assert validate_example(ok).output_speech == "target"
    assert speech_cut_ids(ok) == {"primary": "u1", "target": "u2", "speaker_ref": "u3"}
    with pytest.raises(TaskSchemaError, match=r"links.speaker_ref"):
        validate_example(_cut("u1", task="tts", text="hi", links={}))
    with pytest.raises(TaskSchemaError, match="another utterance"):
        validate_example(_cut("u1", task="tts", text="hi", links={"speaker_ref": "u1"}))
    with pytest.raises(TaskSchemaError, match="emotion"):
        validate_example(_cut("u1", task="ser", emotion="bored"))
    with pytest.raises(TaskSchemaError, match="expected one of"):
        validate_example(_cut("u1", task="karaoke"))


def test_bench_cli_lists_registered_benchmarks():
    out = subprocess.run([sys.executable, "-m", "dualspeech.bin.bench", "--list"],
                         capture_output=True, text=True, check=True).stdout
    from dualspeech.bench import discover

    assert all(name in out for name in discover())


def test_bench_name_help_reaches_the_benchmark(capsys):
    from dualspeech.bin.bench import main

    with pytest.raises(SystemExit) as exit_info:
        main(["padding", "--help"])
    assert exit_info.value.code == 0 and "bench padding" in capsys.readouterr().out
