"""A preparation stamp vouches for what was written (issue 27 item 6): it records the size and
sha256 of every output, so a truncated or corrupted manifest (or mini-corpus wav) is re-made on
the next run instead of being called up to date."""
from __future__ import annotations

import json

from dualspeech.data import mini
from dualspeech.data.corpora import librispeech
from fake_corpora import fake_librispeech
from fake_corpora import tree_hashes


def test_truncated_or_corrupted_manifest_is_remade(tmp_path):
    ls, out = fake_librispeech(tmp_path), tmp_path / "out"
    assert librispeech.prepare_librispeech(ls, out) is True
    before = tree_hashes(out)
    cuts = out / "cuts/librispeech_cuts_test-clean.jsonl.gz"
    good = cuts.read_bytes()
    cuts.write_bytes(good[: len(good) // 2])                      # truncated
    assert librispeech.prepare_librispeech(ls, out) is True
    assert cuts.read_bytes() == good
    task = out / "tasks/librispeech_asr_train-clean-100.jsonl.gz"
    data = bytearray(task.read_bytes())
    data[len(data) // 2] ^= 0xFF                                  # same size, one byte flipped
    task.write_bytes(bytes(data))
    assert librispeech.prepare_librispeech(ls, out) is True
    assert tree_hashes(out) == before
    assert librispeech.prepare_librispeech(ls, out) is False      # intact: up to date again


def test_stamp_lists_size_and_sha256_and_an_old_stamp_is_remade(tmp_path):
    ls, out = fake_librispeech(tmp_path), tmp_path / "out"
    librispeech.prepare_librispeech(ls, out, parts=["test-clean"])
    stamp_path = out / ".librispeech_stamp.json"
    stamp = json.loads(stamp_path.read_text())
    entry = stamp["outputs"]["cuts/librispeech_cuts_test-clean.jsonl.gz"]
    assert entry["size"] == (out / "cuts/librispeech_cuts_test-clean.jsonl.gz").stat().st_size
    assert len(entry["sha256"]) == 64
    stamp["outputs"] = sorted(stamp["outputs"])                   # the format without hashes
    stamp_path.write_text(json.dumps(stamp))
    assert librispeech.prepare_librispeech(ls, out, parts=["test-clean"]) is True


def test_mini_corpus_resynthesises_a_damaged_wav(tmp_path):
    out = tmp_path / "m"
    mini.make_mini_corpus(out, size="tiny", seed=1)
    before = tree_hashes(out)
    victim = sorted((out / "audio" / "train").glob("*.wav"))[2]
    data = bytearray(victim.read_bytes())
    data[-400:] = bytes(400)                                      # same size, samples zeroed
    victim.write_bytes(bytes(data))
    mini.make_mini_corpus(out, size="tiny", seed=1)
    assert tree_hashes(out) == before
